# Speed and memory of every pruned model against the dense one, measured in the same job with the
# whole machine (threads = all cores, so no other job runs beside it).


def pruned_checkpoints(wc):
    return {f"{name}/{ratio}": f"results/{wc.model}/{name}/{ratio}/model" for name in METHODS for ratio in RATIOS}


rule efficiency:
    input:
        unpack(pruned_checkpoints),
        dense=lambda wc: model_dir(wc.model),
    output:
        "results/{model}/efficiency.csv",
    params:
        settings={k: v for k, v in config["benchmark"].items() if k != "enabled"},
        device=config["device"],
    threads: workflow.cores
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
        gpus=lambda wc: model_resources(wc, "gpus", 0),
    log:
        "results/logs/efficiency/{model}.log",
    script:
        "../scripts/efficiency.py"

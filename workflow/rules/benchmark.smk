# Speed and memory of every pruned model against the dense one, measured in the same job with the
# whole machine: locally threads = all cores, so no other job runs beside it. On a cluster `--cores`
# is unset and the job gets its own allocation of the config's threads (the same number inside the
# job, where Snakemake runs again and must ask srun for what sbatch granted).


def pruned_checkpoints(wc):
    return {f"{name}/{ratio}": f"{paths.result_dir(wc.model, name, ratio)}/model"
            for name, ratios in model_plan(config, wc.model)["none"].items() for ratio in ratios}


rule efficiency:
    input:
        unpack(pruned_checkpoints),
        dense=dense_dir,
    output:
        paths.EFFICIENCY,
    params:
        settings={k: v for k, v in config["benchmark"].items() if k != "enabled"},
        device=config["device"],
    threads: (workflow.resource_settings.cores or THREADS) if workflow.is_main_process else THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
        gpu=lambda wc: model_resources(wc, "gpus", 0),
    log:
        "results/logs/efficiency/{model}.log",
    benchmark:
        "results/benchmarks/efficiency/{model}.tsv"
    script:
        "../scripts/efficiency.py"

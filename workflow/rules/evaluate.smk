# Every model, dense, pruned or recovered, is evaluated by the same rule and script.


rule evaluate:
    input:
        model=checkpoint_of,
        data=eval_data(),
    output:
        "results/{model}/{method}/{ratio}/metrics.json",
    params:
        evaluation=config["evaluation"],
        tune="none",
        config_files=workflow.configfiles,
        device=config["device"],
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 60),
        gpu=lambda wc: model_resources(wc, "gpus", 0),
    log:
        "results/logs/evaluate/{model}/{method}/{ratio}.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{method}/{ratio}.tsv"
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_reference with:
    input:
        model=lambda wc: model_dir(wc.model),
        data=eval_data("reference_evaluation"),
    output:
        "results/{model}/dense/0/reference/metrics.json",
    params:
        evaluation=config.get("reference_evaluation"),
        tune="none",
        config_files=workflow.configfiles,
        device=config["device"],
    log:
        "results/logs/evaluate/{model}/dense/0.reference.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/dense/0.reference.tsv"

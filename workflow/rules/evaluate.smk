# Every model, dense, pruned or recovered, is evaluated by the same rule and script.


rule evaluate:
    input:
        model=checkpoint_of,
        dense=dense_dir,
        data=eval_data(),
    output:
        f"{paths.RESULT}/metrics.json",
    params:
        evaluation=config["evaluation"],
        bos=model_bos,
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


# The dense model: also every window of each test set (the papers' protocol), and first in the
# queue, its evaluation being the longest job of the suite.
use rule evaluate as evaluate_dense with:
    input:
        model=dense_dir,
        dense=dense_dir,
        data=eval_data(),
    output:
        paths.result_dir("{model}", "dense", "0") + "/metrics.json",
    params:
        evaluation=config["evaluation"],
        bos=model_bos,
        tune="none",
        full_perplexity=config["evaluation"]["perplexity"]["full_for_dense"],
        config_files=workflow.configfiles,
        device=config["device"],
    priority: 50
    log:
        "results/logs/evaluate/{model}/dense/0.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/dense/0.tsv"


ruleorder: evaluate_dense > evaluate

# Every model, dense, pruned or recovered, is evaluated by the same rule and script; a model
# bit-identical to one evaluated before it (content hash) cites that evaluation instead.


rule evaluate:
    input:
        unpack(evaluation_inputs("none")),
    output:
        metrics=f"{paths.RESULT}/{paths.METRICS}",
        per_item=f"{paths.RESULT}/{paths.ITEMS}",
    params:
        evaluation=MODEL_EVALUATION,
        bos=model_bos,
        tune="none",
        seed=lambda wc: seed_of(wc.method),
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


# The dense model: also every window of each test set and every document of each task where
# configured (the papers' protocol), and first in the queue, its evaluation being the longest job.
use rule evaluate as evaluate_dense with:
    input:
        model=dense_dir,
        dense=dense_dir,
        data=eval_data(),
    output:
        metrics=paths.result_dir("{model}", "dense", "0") + f"/{paths.METRICS}",
        per_item=paths.result_dir("{model}", "dense", "0") + f"/{paths.ITEMS}",
    params:
        evaluation=MODEL_EVALUATION,
        bos=model_bos,
        tune="none",
        seed=None,
        full_perplexity=lambda wc: full_for_dense(config, wc.model, "perplexity"),
        full_zeroshot=lambda wc: full_for_dense(config, wc.model, "zeroshot"),
        device=config["device"],
    priority: 50
    log:
        "results/logs/evaluate/{model}/dense/0.log",
    benchmark:
        "results/benchmarks/evaluate_dense/{model}.tsv"


ruleorder: evaluate_dense > evaluate

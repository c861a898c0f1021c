# LoRA recovery ("w/ tune") of any pruned checkpoint; its evaluation is the ordinary evaluate rule.
# A checkpoint: its evaluation asks whether the recovered model is bit-identical to another's.


checkpoint recover:
    input:
        model=f"{paths.RESULT}/model",
        data=paths.data_dir(config["recovery"]["dataset"]),
    output:
        directory(f"{paths.RESULT}/lora/model"),
    params:
        recovery=config["recovery"],
        seed=config["seed"],
        device=config["device"],
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 60),
        gpu=lambda wc: model_resources(wc, "gpus", 0),
    log:
        "results/logs/recover/{model}/{method}/{ratio}.log",
    benchmark:
        "results/benchmarks/recover/{model}/{method}/{ratio}.tsv"
    script:
        "../scripts/recover.py"


use rule evaluate as evaluate_tuned with:
    input:
        unpack(evaluation_inputs("lora")),
    output:
        metrics=f"{paths.RESULT}/lora/{paths.METRICS}",
        per_item=f"{paths.RESULT}/lora/{paths.ITEMS}",
    params:
        evaluation=MODEL_EVALUATION,
        bos=model_bos,
        tune="lora",
        seed=lambda wc: seed_of(wc.method),
        device=config["device"],
    log:
        "results/logs/evaluate/{model}/{method}/{ratio}.lora.log",
    benchmark:
        "results/benchmarks/evaluate_tuned/{model}/{method}/{ratio}.tsv"


# The recovery curve (`recovery_curve`, config/extended.yaml): a pruned model recovered with other
# step counts, each point a recovery of its own from the pruned model, evaluated on its own.
CURVE_RESULT = f"{paths.RESULT}/lora-{{steps}}"


use rule recover as recover_curve with:
    output:
        directory(f"{CURVE_RESULT}/model"),
    params:
        recovery=lambda wc: curve_recovery(config["recovery"], int(wc.steps)),
        seed=config["seed"],
        device=config["device"],
    log:
        "results/logs/recover/{model}/{method}/{ratio}.lora-{steps}.log",
    benchmark:
        "results/benchmarks/recover_curve/{model}/{method}/{ratio}.lora-{steps}.tsv"


use rule evaluate as evaluate_curve with:
    input:
        model=f"{CURVE_RESULT}/model",
        dense=dense_dir,
        data=eval_data(),
    output:
        metrics=f"{CURVE_RESULT}/{paths.METRICS}",
        per_item=f"{CURVE_RESULT}/{paths.ITEMS}",
    params:
        evaluation=MODEL_EVALUATION,
        bos=model_bos,
        tune=lambda wc: curve_tune(int(wc.steps)),
        seed=lambda wc: seed_of(wc.method),
        device=config["device"],
    log:
        "results/logs/evaluate/{model}/{method}/{ratio}.lora-{steps}.log",
    benchmark:
        "results/benchmarks/evaluate_curve/{model}/{method}/{ratio}.lora-{steps}.tsv"

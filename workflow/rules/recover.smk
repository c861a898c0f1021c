# LoRA recovery ("w/ tune") of any pruned checkpoint; its evaluation is the ordinary evaluate rule.


rule recover:
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
        model=f"{paths.RESULT}/lora/model",
        dense=dense_dir,
        data=eval_data(),
    output:
        f"{paths.RESULT}/lora/metrics.json",
    params:
        evaluation=config["evaluation"],
        bos=model_bos,
        tune="lora",
        config_files=workflow.configfiles,
        device=config["device"],
    log:
        "results/logs/evaluate/{model}/{method}/{ratio}.lora.log",
    benchmark:
        "results/benchmarks/evaluate/{model}/{method}/{ratio}.lora.tsv"

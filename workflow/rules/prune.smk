# calibrate -> score -> choose structure -> remove.


rule calibration_windows:
    input:
        model=dense_dir,
        data=lambda wc: paths.data_dir(CORPORA[CalibrationSpec.from_id(wc.calib).corpus].dataset),
    output:
        f"{paths.CALIBRATION}/tokens.safetensors",
    params:
        bos=model_bos,
    priority: 10  # calibration and pruning first: every evaluation waits on them
    log:
        "results/logs/calibration_windows/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/calibration_windows/{model}/{calib}.tsv"
    script:
        "../scripts/calibration_windows.py"


rule activation_stats:
    input:
        model=dense_dir,
        tokens=f"{paths.CALIBRATION}/tokens.safetensors",
    output:
        f"{paths.CALIBRATION}/activations.safetensors",
    params:
        device=config["device"],
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
        gpu=lambda wc: model_resources(wc, "gpus", 0),
    priority: 10
    log:
        "results/logs/activation_stats/{model}/{calib}.log",
    benchmark:
        "results/benchmarks/activation_stats/{model}/{calib}.tsv"
    script:
        "../scripts/activation_stats.py"


def prune_inputs(wc):
    inputs = {"model": dense_dir(wc)}
    needs = method_module(method_of(wc.method)["module"]).NEEDS
    if needs:
        inputs[needs] = f"{method_calibration_dir(wc.model, wc.method)}/{needs}.safetensors"
    return inputs


# A checkpoint: its evaluation asks whether the pruned model is bit-identical to another's.
checkpoint prune:
    input:
        unpack(prune_inputs),
    output:
        directory(f"{paths.RESULT}/model"),
    params:
        method=lambda wc: run_entry(config, wc.method),
        params=lambda wc: method_params(config, wc.model, paths.split_run(wc.method)[0]),
        seed=lambda wc: seed_of(wc.method),
        device=config["device"],
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
        gpu=lambda wc: model_resources(wc, "gpus", 0),
    priority: 10
    log:
        "results/logs/prune/{model}/{method}/{ratio}.log",
    benchmark:
        "results/benchmarks/prune/{model}/{method}/{ratio}.tsv"
    script:
        "../scripts/prune.py"

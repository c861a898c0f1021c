# Deployable formats (config `export`): every exported row's checkpoint, and the dense model, as GGUF
# for llama.cpp (f16, then Q8_0 / Q4_K_M by llama.cpp's own quantizer) and, where a standard config
# holds the structure, a standard Hugging Face folder; llama.cpp's perplexity of each GGUF on the
# suite's windows; each exported structure's speed in llama.cpp against the dense GGUF of its format.
# {row} is a row's folder under results/{model}: "<run>/<ratio>", "<run>/<ratio>/lora" or "dense/0".

EXPORT = config["export"]
EXPORT_ROW = f"({paths.RUN_PATTERN})/[0-9][0-9.]*(/lora)?"


def exported_rows(model):
    """The row folders a model exports: its dense model first, then `export_runs`."""
    runs = export_runs(config, model)
    rows = [paths.result_dir(model, run, ratio, tune) for run, ratio, tune in runs]
    return [paths.result_dir(model, "dense", "0")] * bool(runs) + rows


def row_checkpoint(wc):
    """The checkpoint of a row folder: the dense model's, or the pruned / recovered model beside it."""
    if wc.row == "dense/0":
        return dense_dir(wc)
    run, ratio, *tune = wc.row.split("/")
    made_by = checkpoints.prune if not tune else checkpoints.recover
    return made_by.get(model=wc.model, method=run, ratio=ratio).output[0]


rule export:
    input:
        model=row_checkpoint,
    output:
        directory(f"results/{{model}}/{{row}}/{paths.EXPORT}"),
    params:
        formats=EXPORT["formats"],
        source=lambda wc: config["models"][wc.model]["source"],
    wildcard_constraints:
        row=f"dense/0|{EXPORT_ROW}",
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
    log:
        "results/logs/export/{model}/{row}.log",
    benchmark:
        "results/benchmarks/export/{model}/{row}.tsv"
    script:
        "../scripts/export.py"


rule evaluate_llamacpp:
    input:
        export=f"results/{{model}}/{{row}}/{paths.EXPORT}",
        model=row_checkpoint,  # its tokenizer: the same windows as PyTorch's
        data=lambda wc: [paths.data_dir(n) for n in EXPORT["perplexity"]],
    output:
        metrics=f"results/{{model}}/{{row}}/{paths.LLAMACPP}/{paths.METRICS}",
        per_item=f"results/{{model}}/{{row}}/{paths.LLAMACPP}/{paths.ITEMS}",
    params:
        perplexity=lambda wc: {**config["evaluation"]["perplexity"], "datasets": EXPORT["perplexity"]},
        # a recovered row in f16, the equality check; what quantization costs is measured on the pruned
        # rows and the dense model (each format is a full pass over the windows: 70-100 CPU-s for three)
        formats=lambda wc: ["f16"] if wc.row.endswith("/lora") else EXPORT["formats"],
        bos=model_bos,
    wildcard_constraints:
        row=f"dense/0|{EXPORT_ROW}",
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
    log:
        "results/logs/evaluate_llamacpp/{model}/{row}.log",
    benchmark:
        "results/benchmarks/evaluate_llamacpp/{model}/{row}.tsv"
    script:
        "../scripts/evaluate_llamacpp.py"


def exported_structures(wc):
    """The exports the llama.cpp benchmark times: every exported run w/o tune (recovery changes
    values, not shapes), with the pruned checkpoint beside it, whose shapes it groups by."""
    rows = [r for r in exported_rows(wc.model)[1:] if not r.endswith("/lora")]
    return {"/".join(r.split("/")[2:]): f"{r}/{paths.EXPORT}" for r in rows}


# Like the PyTorch benchmark, with the whole machine (benchmark.smk), after it.
rule efficiency_llamacpp:
    input:
        unpack(exported_structures),
        dense=f"{paths.result_dir('{model}', 'dense', '0')}/{paths.EXPORT}",
        pytorch=lambda wc: paths.efficiency_csv(wc.model) if config["benchmark"]["enabled"] else [],
    output:
        paths.EFFICIENCY_LLAMACPP,
    params:
        settings={k: v for k, v in config["benchmark"].items() if k != "enabled"},
        formats=EXPORT["formats"],
    threads: (workflow.resource_settings.cores or THREADS) if workflow.is_main_process else THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
    log:
        "results/logs/efficiency_llamacpp/{model}.log",
    benchmark:
        "results/benchmarks/efficiency_llamacpp/{model}.tsv"
    script:
        "../scripts/efficiency_llamacpp.py"


def export_targets():
    """llama.cpp's metrics of every exported row (which need the exports) and the benchmarks."""
    out = []
    for model in MODELS:
        rows = exported_rows(model)
        out += [f"{row}/{paths.LLAMACPP}/{paths.METRICS}" for row in rows]
        if rows and EXPORT["benchmark"]:
            out.append(paths.EFFICIENCY_LLAMACPP.format(model=model))
    return out

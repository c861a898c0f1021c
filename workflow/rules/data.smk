# Inputs that every later rule reads: the verified data and the materialised models.

# Verifying and copying a few files is cheaper than a cluster job's queueing.
localrules:
    data,


rule data:
    output:
        directory(paths.DATA),
    params:
        source=config["data_dir"],
    log:
        "results/logs/data/{dataset}.log",
    script:
        "../scripts/install_data.py"


rule model:
    output:
        directory(paths.MODEL),
    params:
        source=lambda wc: config["models"][wc.model]["source"],
        dtype=config["dtype"],
    threads: THREADS
    resources:
        mem_mb=lambda wc: model_resources(wc, "mem_mb", 4000),
        runtime=lambda wc: model_resources(wc, "runtime", 30),
    log:
        "results/logs/model/{model}.log",
    benchmark:
        "results/benchmarks/model/{model}.tsv"
    script:
        "../scripts/materialise_model.py"

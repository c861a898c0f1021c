# All metrics.json -> results/summary.csv (one row per model, method, ratio, tune).


rule collate:
    input:
        metrics_targets(),
    output:
        "results/summary.csv",
    log:
        "results/logs/collate.log",
    script:
        "../scripts/collate.py"

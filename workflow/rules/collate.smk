# All metrics.json -> results/summary.csv (one row per model, method, ratio, tune).

# Reading JSON into a table is cheaper than a cluster job's queueing.
localrules:
    collate,


rule collate:
    input:
        metrics_targets(),
    output:
        paths.SUMMARY,
    log:
        "results/logs/collate.log",
    script:
        "../scripts/collate.py"

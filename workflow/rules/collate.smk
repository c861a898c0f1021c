# All metrics.json (and the items beside them) -> results/summary.csv (one row per model, method,
# ratio, tune; the mean of several seeds), results/seeds.csv (each seed's row) and
# results/comparisons.csv (paired differences with bootstrap intervals) and results/correlations.csv
# (the methods' rank correlation between models, prunebench.reporting.transfer). Results of earlier runs
# that this config does not produce (the extended suite's rows, say) are merged when they were
# evaluated under the same settings: the report shows what exists.

# Reading JSON and CSV into tables is cheaper than a cluster job's queueing.
localrules:
    collate,


rule collate:
    input:
        metrics=metrics_targets(),
        per_item=items_of(metrics_targets()),
    output:
        summary=paths.SUMMARY,
        seeds=paths.SEEDS,
        comparisons=paths.COMPARISONS,
        correlations=paths.CORRELATIONS,
    params:
        earlier=EARLIER,
    log:
        "results/logs/collate.log",
    script:
        "../scripts/collate.py"

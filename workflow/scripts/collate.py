import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.io import atomic_path  # noqa: E402
from prunebench.reporting.comparisons import compare, pair_columns, row_items, run_items  # noqa: E402
from prunebench.reporting.results import METRIC_COLUMNS, collate  # noqa: E402
from prunebench.reporting.seeds import over_seeds, seed_rows  # noqa: E402
from prunebench.reporting.transfer import rank_correlations  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
metrics = [*sm.input.metrics, *sm.params.earlier]  # earlier runs' extra rows (collate.smk)
runs = collate(metrics)
items = run_items(metrics)
summary = over_seeds(runs, row_items(items))
print(summary.to_string())
for table, path in ((summary, sm.output.summary), (seed_rows(runs), sm.output.seeds),
                    (compare(summary, items, METRIC_COLUMNS), sm.output.comparisons),
                    (rank_correlations(summary, items, pair_columns(METRIC_COLUMNS)), sm.output.correlations)):
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)

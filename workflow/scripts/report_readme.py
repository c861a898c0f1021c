import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.reporting.readme import write_readme  # noqa: E402
from prunebench.reporting.results import load_results  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
results = load_results(sm.input.summary, sm.input.metrics, sm.input.efficiency, sm.config)
write_readme(sm.output[0], results, sm.input.tables, sm.input.figures)

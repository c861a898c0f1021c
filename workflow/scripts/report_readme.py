import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import report_results, start_job  # noqa: E402

from prunebench.reporting.readme import write_readme  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
results = report_results(sm)
write_readme(sm.output[0], results, sm.input.tables, sm.input.figures)

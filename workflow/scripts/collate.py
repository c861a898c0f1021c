import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.io import atomic_path  # noqa: E402
from prunebench.reporting.results import collate  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
table = collate(sm.input)
print(table.to_string())
with atomic_path(sm.output[0]) as tmp:
    table.to_csv(tmp, index=False)

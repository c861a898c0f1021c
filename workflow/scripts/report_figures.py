import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import report_results, start_job  # noqa: E402

from prunebench.reporting.plots import build_figure, save  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
results = report_results(sm)
for stem in dict.fromkeys(Path(p).with_suffix("") for p in sm.output):
    print(f"wrote {save(build_figure(stem.name, results), stem)}")

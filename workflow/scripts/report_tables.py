import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import report_results, start_job  # noqa: E402

from prunebench.io import atomic_path  # noqa: E402
from prunebench.reporting.tables import build_table, render  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
results = report_results(sm)
outputs = [Path(p) for p in sm.output]
for name in dict.fromkeys(p.stem for p in outputs):
    table = build_table(name, results, sm.input.reference)
    for path in (p for p in outputs if p.stem == name):
        with atomic_path(path) as tmp:
            tmp.write_text(render(table, path.suffix[1:]))
        print(f"wrote {path}")

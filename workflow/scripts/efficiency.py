import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402
import pandas as pd  # noqa: E402

from methods.efficiency import compare, measure_checkpoint  # noqa: E402
from methods.io import atomic_path  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
measure = lambda path: measure_checkpoint(path, sm.threads, sm.params.device, **sm.params.settings)  # noqa: E731
dense = measure(sm.input.dense)
rows = [{"model": sm.wildcards.model, "method": "dense", "ratio": 0.0, **compare(dense, dense)}]
for key, path in sm.input.items():
    if key != "dense":
        method, ratio = key.split("/")
        rows.append({"model": sm.wildcards.model, "method": method, "ratio": float(ratio),
                     **compare(measure(path), dense)})
        print(rows[-1])
with atomic_path(sm.output[0]) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)

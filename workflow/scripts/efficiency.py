import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
import pandas as pd  # noqa: E402
from common import start_job  # noqa: E402

from prunebench.evaluation.efficiency import measure_pair, pair_row  # noqa: E402
from prunebench.io import atomic_path, read_json  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
measure = lambda path: pair_row(measure_pair(path, sm.input.dense, sm.threads, sm.params.device,  # noqa: E731
                                             **sm.params.settings))


# The dense model against itself (an A/A pair): its interval shows the noise floor and must hold 1.
rows = [{"model": sm.wildcards.model, "method": "dense", "ratio": 0.0, **measure(sm.input.dense), "measured_on": "dense"}]
print(rows[-1])
# Speed and memory depend on the layer shapes alone (weights are dense fp32 matrices whatever their
# values): checkpoints of the same shapes (uniform methods at one ratio, LLM-Pruner's importances,
# depth methods removing as many layers) are timed once, and the row says which checkpoint was. The
# hidden size is part of the shapes (Minitron's hidden axis narrows every layer alike).
by_shapes = {}
for key, path in sm.input.items():
    if key == "dense":
        continue
    method, ratio = key.split("/")
    hidden = read_json(Path(path) / "config.json")["hidden_size"]
    shapes = repr((read_json(Path(path) / "pruning.json")["layers"], hidden))
    if shapes not in by_shapes:
        by_shapes[shapes] = (key, measure(path))
    measured_on, measured = by_shapes[shapes]
    rows.append({"model": sm.wildcards.model, "method": method, "ratio": float(ratio), **measured,
                 "measured_on": measured_on})
    print(rows[-1])
with atomic_path(sm.output[0]) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)

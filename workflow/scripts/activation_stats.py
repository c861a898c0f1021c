import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.calibration.activations import collect_activation_stats  # noqa: E402
from prunebench.io import load_tensors  # noqa: E402
from prunebench.provenance import Stopwatch, peak_memory_mb  # noqa: E402
from prunebench.pruning.checkpoint import load_pruned  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
watch = Stopwatch()
model = load_pruned(sm.input.model, device=sm.params.device)
tokens, meta = load_tensors(sm.input.tokens)
with watch("activation_stats"):
    stats = collect_activation_stats(model, tokens["input_ids"])
stats.save(sm.output[0], dict(meta, wall_s=watch.times, peak_memory_mb=peak_memory_mb()))
print(f"{stats.tokens} tokens, {watch.times}, peak {peak_memory_mb():.0f} MiB")

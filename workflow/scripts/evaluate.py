import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import data_root, start_job  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from prunebench.evaluation.evaluate import evaluate  # noqa: E402
from prunebench.io import read_json, write_json  # noqa: E402
from prunebench.provenance import Stopwatch, environment, peak_memory_mb  # noqa: E402
from prunebench.pruning.checkpoint import load_pruned, verify_checkpoint  # noqa: E402
from prunebench.sources.datasets import DATASETS  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
wc, watch = sm.wildcards, Stopwatch()
with watch("load"):
    info = verify_checkpoint(sm.input.model)
    model = load_pruned(sm.input.model, device=sm.params.device, verify=False)
    tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
dense = read_json(Path(sm.input.dense) / "manifest.json")
results = evaluate(model, tokenizer, sm.params.evaluation, data_root(sm), watch,
                   full_perplexity=sm.params.get("full_perplexity", False), bos=sm.params.bos)
params = sum(p.numel() for p in model.parameters())
datasets = sorted({p.split("/")[-1] for p in sm.input.data})
write_json(sm.output[0], {
    "model": wc.model,
    "method": getattr(wc, "method", "dense"),
    "ratio": float(getattr(wc, "ratio", 0)),
    "tune": sm.params.tune,
    "family": dense.get("family"),
    "params": params,
    "params_dense": dense["parameters"],
    "params_kept": params / dense["parameters"],
    "removed_fraction": info.get("structure", {}).get("removed_fraction", 0.0),
    **results,
    "pruning": {k: v for k, v in info.items() if k not in ("files", "layers", "environment")},
    "provenance": {
        "config": sm.config,
        "config_files": sm.params.config_files,
        "checkpoint": str(sm.input.model),
        "checkpoint_sha256": info.get("files") or dense["files"],
        "dense_model_sha256": dense["files"],
        "model_source": dense["source"],
        "data_sha256": {d: DATASETS[d].files for d in datasets},
        "peak_memory_mb": peak_memory_mb(),
        **environment(),
    },
})
print(f"done: {watch.times}")

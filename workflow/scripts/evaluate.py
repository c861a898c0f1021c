import shutil
import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import data_root, start_job  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from prunebench.evaluation.evaluate import evaluate  # noqa: E402
from prunebench.evaluation.items import write_items  # noqa: E402
from prunebench.io import atomic_path, read_json, write_json  # noqa: E402
from prunebench.paths import split_run  # noqa: E402
from prunebench.provenance import Stopwatch, environment, peak_memory_mb  # noqa: E402
from prunebench.pruning.checkpoint import content_hash, load_pruned, verify_checkpoint  # noqa: E402
from prunebench.sources.datasets import DATASETS  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
wc, watch = sm.wildcards, Stopwatch()
with watch("load"):
    info = verify_checkpoint(sm.input.model)
dense = read_json(Path(sm.input.dense) / "manifest.json")
datasets = sorted({p.split("/")[-1] for p in sm.input.data})
row = {
    "model": wc.model,
    "method": split_run(getattr(wc, "method", "dense"))[0],
    "run": getattr(wc, "method", "dense"),  # the results folder: the method, or "<method>@seed<s>"
    "ratio": float(getattr(wc, "ratio", 0)),
    "tune": sm.params.tune,
    "family": dense.get("family"),
    "seed": sm.params.seed,
    "params_dense": dense["parameters"],
    "removed_fraction": info.get("structure", {}).get("removed_fraction", 0.0),
    "pruning": {k: v for k, v in info.items() if k not in ("files", "layers", "environment")},
    # Bit-identical checkpoints are evaluated once: `evaluated_as` names the metrics.json whose
    # evaluation this row reports (its own, or the earlier identical run's).
    "evaluation": {"content_hash": content_hash(sm.input.model),
                   "evaluated_as": sm.input.get("shared", sm.output.metrics)},
}
if "shared" in sm.input.keys():
    shared = read_json(sm.input.shared)
    if shared["evaluation"]["content_hash"] != row["evaluation"]["content_hash"]:
        raise RuntimeError(f"{sm.input.shared} evaluated another model than {sm.input.model}")
    results = {k: v for k, v in shared.items() if k not in row and k != "provenance"}
    with atomic_path(sm.output.per_item) as tmp:
        shutil.copyfile(sm.input.shared_items, tmp)
    print(f"bit-identical to the model of {sm.input.shared}: its evaluation is reported")
else:
    with watch("load"):
        model = load_pruned(sm.input.model, device=sm.params.device, verify=False)
        tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
    results, items = evaluate(model, tokenizer, sm.params.evaluation, data_root(sm), watch,
                              full_perplexity=sm.params.get("full_perplexity", False),
                              full_zeroshot=sm.params.get("full_zeroshot", False), bos=sm.params.bos)
    params = sum(p.numel() for p in model.parameters())
    results = {"params": params, "params_kept": params / dense["parameters"], **results}
    write_items(sm.output.per_item, items)
write_json(sm.output.metrics, {
    **row,
    **results,
    "provenance": {
        "config": sm.config,
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

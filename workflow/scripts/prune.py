import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from methods import method_module  # noqa: E402
from prunebench.calibration import Calibration  # noqa: E402
from prunebench.calibration.activations import ActivationStats  # noqa: E402
from prunebench.config import calibration_of  # noqa: E402
from prunebench.io import load_tensors, read_json, tensors_metadata  # noqa: E402
from prunebench.paths import split_run  # noqa: E402
from prunebench.provenance import Stopwatch, environment, peak_memory_mb  # noqa: E402
from prunebench.pruning import prune_model  # noqa: E402
from prunebench.pruning.checkpoint import load_pruned, save_pruned  # noqa: E402
from prunebench.pruning.structure import Shapes  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
method, wc, seed, watch = sm.params.method, sm.wildcards, sm.params.seed, Stopwatch()
module = method_module(method["module"])
spec = calibration_of(method, seed)
with watch("load"):
    model = load_pruned(sm.input.model, device=sm.params.device)
    tokenizer = AutoTokenizer.from_pretrained(sm.input.model)
    calib = Calibration(
        activations=ActivationStats.load(sm.input.activations) if module.NEEDS == "activations" else None,
        tokens=load_tensors(sm.input.tokens)[0]["input_ids"] if module.NEEDS == "tokens" else None,
        seed=seed,
    )
calibration_bos = tensors_metadata(sm.input[module.NEEDS]).get("bos") if module.NEEDS else None
shapes = Shapes.of(model)
params_dense = sum(p.numel() for p in model.parameters())
with watch("prune"):
    plan = prune_model(model, module, float(wc.ratio), calib, sm.params.params, mask=method.get("mask", False))
structure = plan.summary(shapes)
print(f"{wc.method} at {wc.ratio}: removed {structure['removed_fraction']:.4f} of attention+MLP parameters, "
      f"{watch.times}")
save_pruned(model, tokenizer, sm.output[0], {
    "base_model": wc.model,
    "base_manifest": {k: v for k, v in read_json(f"{sm.input.model}/manifest.json").items() if k != "architecture"},
    "method": split_run(wc.method)[0],
    "seed": seed,
    "module": method["module"],
    "params": sm.params.params,
    "mask": method.get("mask", False),
    "ratio": float(wc.ratio),
    "calibration": {"id": spec.id, "description": spec.describe(), "substitutes": method["calibration"].get("substitutes"),
                    "bos": calibration_bos} if spec else None,
    "paper": method.get("paper"),
    "structure": structure,
    "kept_heads": [k.q_heads for k in plan.layers],
    "details": plan.details,
    "params_dense": params_dense,
    "params_total": sum(p.numel() for p in model.parameters()),
    "wall_s": watch.times,
    "peak_memory_mb": peak_memory_mb(),
    "environment": environment(),
})

import sys
from pathlib import Path

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
import pandas as pd  # noqa: E402
from common import start_job  # noqa: E402

from prunebench.evaluation.deployed import measure_gguf_pair  # noqa: E402
from prunebench.evaluation.efficiency import speed_columns  # noqa: E402
from prunebench.io import atomic_path, read_json  # noqa: E402

sm = snakemake  # noqa: F821
start_job(sm)
settings = sm.params.settings
# The FLOP-ideal from the PyTorch benchmark's rows (the same checkpoints' shapes) where it ran.
ideal = {}
if sm.input.pytorch:
    eff = pd.read_csv(sm.input.pytorch)
    ideal = {(r.method, f"{r.ratio:g}"): r.ideal_speedup for r in eff.itertuples()}


def pairs(formats: list[str]) -> list[tuple[str, str]]:
    """(model format, dense format) pairs timed per structure: each format against the dense model in
    it; the smallest quantized type against the dense f16 too (pruning and quantization combined)."""
    smallest = [f for f in ("Q4_K_M", "Q8_0") if f in formats][:1]
    return [(f, f) for f in formats] + [(f, "f16") for f in smallest if "f16" in formats]


def measured_row(method: str, ratio: str, fmt: str, dense_fmt: str, measured_on: str, result: dict) -> dict:
    row = {"model": sm.wildcards.model, "method": method, "ratio": float(ratio), "backend": "llama.cpp",
           "format": fmt, "dense_format": dense_fmt, "file_mb": result["file_mb"],
           "dense_file_mb": result["dense_file_mb"], "repeats": result["repeats"], "wall_s": result["wall_s"],
           "cpu_s": result["cpu_s"], "ideal_speedup": ideal.get((method, ratio), 1.0 if method == "dense" else None),
           "measured_on": measured_on}
    row.update(speed_columns(result["measures"], settings["prefill_tokens"], row["ideal_speedup"]))
    print(row)
    return row


dense = Path(sm.input.dense)
# The dense model against itself in f16 (the noise floor, as the PyTorch A/A pair) and each
# quantized type against f16 (what quantization alone buys).
rows = [measured_row("dense", "0", fmt, "f16", "dense",
                     measure_gguf_pair(dense / f"model-{fmt}.gguf", dense / "model-f16.gguf", sm.threads, **settings))
        for fmt in sm.params.formats]
by_shapes = {}
for key, export in sm.input.items():
    if key in ("dense", "pytorch"):
        continue
    method, ratio = key.split("/")
    info = read_json(Path(export) / "export.json")
    if info["gguf"]["status"] != "written":
        print(f"{key}: no GGUF ({info['gguf']['reason']})")
        continue
    # As in the PyTorch benchmark, a structure is timed once: the GGUF's per-layer counts (paddings
    # included) decide the speed, not the weights' values.
    shapes = repr((info["gguf"]["layers"], info["gguf"]["hidden"]))
    for fmt, dense_fmt in pairs(sm.params.formats):
        if (shapes, fmt, dense_fmt) not in by_shapes:
            by_shapes[shapes, fmt, dense_fmt] = (key, measure_gguf_pair(
                Path(export) / f"model-{fmt}.gguf", dense / f"model-{dense_fmt}.gguf", sm.threads, **settings))
        measured_on, result = by_shapes[shapes, fmt, dense_fmt]
        rows.append(measured_row(method, ratio, fmt, dense_fmt, measured_on, result))
with atomic_path(sm.output[0]) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)

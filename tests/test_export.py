"""Standard Hugging Face folders of pruned checkpoints, and the deployment report read from
hand-made llama.cpp results whose ratios are known (the GGUF files: tests/test_export_gguf.py)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tokens
from test_families import family_model

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import collect_activation_stats
from prunebench.evaluation.items import items_frame, write_items
from prunebench.export.hf import write_hf
from prunebench.io import write_json
from prunebench.pruning import prune_model
from prunebench.pruning.checkpoint import load_pruned, save_pruned
from prunebench.reporting.deployment import load_deployment
from prunebench.reporting.narrative import deployed
from prunebench.reporting.plots import build_figure, save
from prunebench.reporting.results import Results
from prunebench.reporting.tables import deployment_quality_table, deployment_speed_table, render

PLAIN_LOAD = ("import sys, torch; from transformers import AutoModelForCausalLM\n"
              "ids = torch.load(sys.argv[1], weights_only=True)\n"
              "for folder in sys.argv[2:]:\n"
              "    m = AutoModelForCausalLM.from_pretrained(folder).eval()\n"
              "    with torch.no_grad():\n"
              "        torch.save(m(ids).logits, folder + '.pt')\n"
              "assert 'prunebench' not in sys.modules")


def test_uniform_and_depth_pruned_checkpoints_load_with_plain_from_pretrained(tmp_path, tokenizer):
    """Wanda-sp's uniform widths and ShortGPT's fewer layers: the standard folder, the checkpoint's
    own weight files under a standard config, gives load_pruned's logits in a process that never
    imports PruneBench (every family's uniform widths: test_minitron's plain from_pretrained)."""
    ids = tokens(2, 24, seed=1)
    torch.save(ids, tmp_path / "ids.pt")
    cases = {"llama-wanda": ("llama", "wanda_sp"), "llama-shortgpt": ("llama", "shortgpt")}
    expected = {}
    for name, (family, method) in cases.items():
        model = family_model(family)
        calib = Calibration(activations=collect_activation_stats(model, tokens(8, 32)), tokens=tokens(4, 16))
        prune_model(model, method_module(method), 0.5 if method == "shortgpt" else 0.4, calib, {})
        save_pruned(model, tokenizer, tmp_path / name)
        assert write_hf(load_pruned(tmp_path / name), tmp_path / name, tmp_path / f"{name}-hf") == {"hf": "written"}
        weights = tmp_path / f"{name}-hf" / "model.safetensors"
        assert weights.stat().st_ino == (tmp_path / name / "model.safetensors").stat().st_ino  # a hard link
        assert not (tmp_path / f"{name}-hf" / "pruning.json").exists()
        with torch.no_grad():
            expected[name] = load_pruned(tmp_path / name)(ids).logits
    subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(tmp_path / "ids.pt"),
                    *(str(tmp_path / f"{n}-hf") for n in cases)], check=True, cwd=tmp_path)
    assert json.loads((tmp_path / "llama-shortgpt-hf" / "config.json").read_text())["num_hidden_layers"] == 1
    for name, reference in expected.items():
        got = torch.load(tmp_path / f"{name}-hf.pt", weights_only=True)
        assert (got - reference).abs().max().item() <= 1e-5, name


def test_per_layer_widths_have_no_standard_folder(tmp_path, tokenizer):
    """FLAP's adaptive widths and compensation biases: no standard config holds them; the export
    says why, names what to use instead, and leaves no stale folder of an earlier export."""
    model = family_model("llama")
    stats = collect_activation_stats(model, tokens(8, 32))
    prune_model(model, method_module("flap"), 0.4, Calibration(activations=stats), {})
    save_pruned(model, tokenizer, tmp_path / "flap")
    (tmp_path / "flap-hf").mkdir()
    record = write_hf(load_pruned(tmp_path / "flap"), tmp_path / "flap", tmp_path / "flap-hf")
    assert record["hf"] == "not expressible"
    assert "differ from layer 0's" in record["reason"] and "model-f16.gguf" in record["use"]
    assert not (tmp_path / "flap-hf").exists()


# --- the report, from hand-made llama.cpp results -------------------------------------------------

WINDOWS = [0, 128, 256, 384]
DENSE_NLL = np.array([3.0, 3.2, 2.8, 3.4])


def _row(root, row: str, nll: dict[str, np.ndarray], pytorch: np.ndarray, files: dict[str, int]) -> str:
    folder = root / "results" / "m" / row
    write_items(folder / "items.csv", [items_frame("perplexity", "wikitext2", WINDOWS, pytorch)])
    write_items(folder / "llamacpp" / "items.csv",
                [items_frame("perplexity", f"wikitext2:{fmt}", WINDOWS, values) for fmt, values in nll.items()])
    write_json(folder / "llamacpp" / "metrics.json",
               {"model": "m", "row": row, "gguf": {"status": "written", "paddings": []}, "hf": {"hf": "written"},
                "files": files})
    return str(folder / "llamacpp" / "metrics.json")


def _speed(method: str, ratio: float, fmt: str, dense_fmt: str, decode: tuple, ideal: float) -> dict:
    mid, low, high = decode
    return {"model": "m", "method": method, "ratio": ratio, "backend": "llama.cpp", "format": fmt,
            "dense_format": dense_fmt, "ideal_speedup": ideal, "decode_speedup": mid, "decode_speedup_low": low,
            "decode_speedup_high": high, "repeats": 5}


@pytest.fixture
def deployment_results(tmp_path):
    """A dense and a pruned row: llama.cpp f16 = PyTorch + 0.001 nats on every window, Q4_K_M = f16 +
    0.05, the pruned model = the dense + 0.1 (f16) and + 0.15 (Q4_K_M): every ratio is exact."""
    files = {"model-f16.gguf": 2**20, "model-Q4_K_M.gguf": 2**19}
    dense = _row(tmp_path, "dense/0", {"f16": DENSE_NLL + 0.001, "Q4_K_M": DENSE_NLL + 0.051}, DENSE_NLL, files)
    pruned = _row(tmp_path, "flap/0.2", {"f16": DENSE_NLL + 0.101, "Q4_K_M": DENSE_NLL + 0.201}, DENSE_NLL + 0.1,
                  files)
    speed = pd.DataFrame([_speed("dense", 0.0, "f16", "f16", (1.0, 0.98, 1.02), 1.0),
                          _speed("dense", 0.0, "Q4_K_M", "f16", (2.5, 2.4, 2.6), 1.0),
                          _speed("flap", 0.2, "f16", "f16", (1.15, 1.10, 1.20), 1.25),
                          _speed("flap", 0.2, "Q4_K_M", "Q4_K_M", (0.99, 0.95, 1.03), 1.25),
                          _speed("flap", 0.2, "Q4_K_M", "f16", (2.6, 2.5, 2.7), 1.25)])
    speed.to_csv(tmp_path / "speed.csv", index=False)
    deployment = load_deployment([dense, pruned], [tmp_path / "speed.csv"])
    return Results(pd.DataFrame({"model": ["m"], "method": ["dense"], "ratio": [0.0], "tune": ["none"]}),
                   pd.DataFrame(columns=["model", "method", "ratio"]), {},
                   {"benchmark": {"prefill_tokens": 64, "prefill_batches": [1, 8], "decode_tokens": 16}},
                   deployment=deployment)


def test_llamacpp_perplexities_pair_by_window_with_every_reference(deployment_results):
    q = deployment_results.deployment.quality.set_index(["method", "format"])
    assert q.loc[("flap", "f16"), "pytorch"] == pytest.approx(math.exp(0.001))
    assert q.loc[("flap", "Q4_K_M"), "f16"] == pytest.approx(math.exp(0.1))
    assert q.loc[("flap", "Q4_K_M"), "dense"] == pytest.approx(math.exp(0.15))  # against the dense Q4_K_M
    assert q.loc[("flap", "Q4_K_M"), "dense_f16"] == pytest.approx(math.exp(0.2))
    assert q.loc[("flap", "f16"), "pytorch_ppl"] == pytest.approx(math.exp(DENSE_NLL.mean() + 0.1))
    # constant differences: the bootstrap interval is the ratio itself
    assert q.loc[("flap", "Q4_K_M"), "dense_low"] == pytest.approx(q.loc[("flap", "Q4_K_M"), "dense_high"])
    assert pd.isna(q.loc[("dense", "f16"), "dense"])  # the dense model is not compared with itself


def test_deployment_tables_figure_and_narrative_state_the_intervals(deployment_results, tmp_path):
    quality = render(deployment_quality_table(deployment_results), "md")
    assert f"×{math.exp(0.15):.3f} [{math.exp(0.15):.3f}, {math.exp(0.15):.3f}]" in quality
    speed = render(deployment_speed_table(deployment_results), "md")
    assert "1.15× [1.10–1.20]" in speed and "2.60× [2.50–2.70]" in speed and "1.25×" in speed
    assert "a prefill of 64 tokens at batch 1, 8" in speed
    text = " ".join(deployed(deployment_results))
    assert "llama.cpp 1.15× [1.10, 1.20] (faster; FLOP-ideal 1.25×)" in text
    assert f"perplexity ×{math.exp(0.15):.2f}" in text
    assert "decodes 2.60× [2.50, 2.70] the dense f16's speed (faster)" in text
    assert "decodes 0.99× [0.95, 1.03] the dense Q4_K_M's speed (no different)" in text
    assert f"Quantizing the dense model to Q4_K_M alone multiplies its perplexity by ×{math.exp(0.05):.3f}" in text
    figure = build_figure("deployment", deployment_results)
    points = {(round(x, 3), round(y, 4)) for ax in figure.axes for line in ax.lines for x, y in line.get_xydata()}
    assert (2.6, round(math.exp(0.2), 4)) in points  # FLAP Q4_K_M: both against the dense f16
    assert (1.15, round(math.exp(0.1), 4)) in points and (2.5, round(math.exp(0.05), 4)) in points
    assert [p.suffix for p in save(figure, tmp_path / "deployment")] == [".png", ".svg"]

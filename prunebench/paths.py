"""Where each stage's files live, relative to the workflow's working directory: Snakemake patterns
(with {wildcards}) for the rules, and the same paths filled in. Job scripts never build a path:
they read theirs from Snakemake's `input` and `output`."""
from __future__ import annotations

__all__ = ["DATA", "MODEL", "CALIBRATION", "RESULT", "EFFICIENCY", "SUMMARY", "data_dir", "model_dir",
           "calibration_dir", "result_dir", "efficiency_csv"]

DATA = "resources/data/{dataset}"  # a verified copy of one shared dataset
MODEL = "resources/models/{model}"  # the dense model: safetensors, tokenizer, manifest.json
CALIBRATION = "resources/calibration/{model}/{calib}"  # tokens.safetensors, activations.safetensors
RESULT = "results/{model}/{method}/{ratio}"  # model/ and metrics.json; the recovered model's under lora/
EFFICIENCY = "results/{model}/efficiency.csv"  # speed and memory of every pruned model against the dense one
SUMMARY = "results/summary.csv"  # one row per model, method, ratio, tune


def data_dir(dataset: str) -> str:
    return DATA.format(dataset=dataset)


def model_dir(model: str) -> str:
    return MODEL.format(model=model)


def calibration_dir(model: str, calib: str) -> str:
    return CALIBRATION.format(model=model, calib=calib)


def efficiency_csv(model: str) -> str:
    return EFFICIENCY.format(model=model)


def result_dir(model: str, method: str, ratio: str, tune: str = "none") -> str:
    """The folder of one row of the results: `tune` "none" (w/o tune) or the recovery ("lora")."""
    base = RESULT.format(model=model, method=method, ratio=ratio)
    return base if tune == "none" else f"{base}/{tune}"

"""Where each stage's files live, relative to the workflow's working directory: Snakemake patterns
(with {wildcards}) for the rules, and the same paths filled in. Job scripts never build a path:
they read theirs from Snakemake's `input` and `output`."""
from __future__ import annotations

__all__ = ["DATA", "MODEL", "CALIBRATION", "RESULT", "METRICS", "ITEMS", "EFFICIENCY", "SUMMARY", "SEEDS",
           "COMPARISONS", "CORRELATIONS", "RUN_PATTERN", "EXPORT", "LLAMACPP", "EFFICIENCY_LLAMACPP", "data_dir",
           "model_dir", "calibration_dir", "result_dir", "efficiency_csv", "run_name", "split_run"]

DATA = "resources/data/{dataset}"  # a verified copy of one shared dataset
MODEL = "resources/models/{model}"  # the dense model: safetensors, tokenizer, manifest.json
CALIBRATION = "resources/calibration/{model}/{calib}"  # tokens.safetensors, activations.safetensors
# model/, metrics.json and items.csv; the recovered model's under lora/. {method} is a run: the
# method's name for its first (main) calibration seed, "<method>@seed<s>" for each further seed.
RESULT = "results/{model}/{method}/{ratio}"
METRICS = "metrics.json"  # an evaluation's numbers, beside its model
ITEMS = "items.csv"  # and its per-item outcomes (prunebench.evaluation.items)
EFFICIENCY = "results/{model}/efficiency.csv"  # speed and memory of every pruned model against the dense one
# Beside a row's model/ (the dense model's: results/{model}/dense/0): its deployable formats (GGUF, a
# standard HF folder) and llama.cpp's metrics.json and items.csv of those GGUFs
EXPORT = "export"
LLAMACPP = "llamacpp"
EFFICIENCY_LLAMACPP = "results/{model}/efficiency-llamacpp.csv"  # the GGUFs' speed in llama.cpp, per format
SUMMARY = "results/summary.csv"  # one row per model, method, ratio, tune (the mean over seeds)
SEEDS = "results/seeds.csv"  # one row per seed of every method evaluated with several
COMPARISONS = "results/comparisons.csv"  # paired differences with bootstrap intervals
CORRELATIONS = "results/correlations.csv"  # the methods' rank correlations between models, bootstrap intervals
RUN_PATTERN = "[a-z0-9][a-z0-9_-]*(@seed[0-9]+)?"  # method names cannot hold "@"


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


def run_name(method: str, seed: int | None = None) -> str:
    """The results folder of a method's run: its name for the main seed (None), else with "@seed<s>"."""
    return method if seed is None else f"{method}@seed{seed}"


def split_run(run: str) -> tuple[str, int | None]:
    """(method, seed) of a run name; seed None for the main seed."""
    method, _, seed = run.partition("@seed")
    return method, int(seed) if seed else None

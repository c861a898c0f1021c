"""Checks of a (schema-valid) config that the JSON schema cannot express, run before any job.

Each failure names the bad value and what is allowed. Nothing here touches results.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from methods import method_module

from .calibration import CalibrationSpec
from .evaluation.zeroshot import available_tasks, check_limits, task_config
from .pruning import check_params, check_ratio
from .sources.datasets import CORPORA, PERPLEXITY, DataError, verify_dataset
from .sources.models import check_source

__all__ = ["ConfigError", "check_config", "schema_problem", "datasets_needed", "evaluation_datasets",
           "task_dataset", "calibration_of", "ratio_label"]


class ConfigError(ValueError):
    """A config value that cannot work."""


def ratio_label(ratio: float) -> str:
    """How a ratio appears in paths and tables: 0.2, 0.5 (dense: 0)."""
    return f"{ratio:g}"


def calibration_of(method: dict[str, Any], seed: int) -> CalibrationSpec | None:
    cal = method.get("calibration")
    if not cal:
        return None
    return CalibrationSpec(cal["corpus"], cal["nsamples"], cal["seqlen"], cal.get("seed", seed))


def task_dataset(task: str) -> str:
    """The data folder a zero-shot task reads (the first part of its data file path)."""
    return task_config(task)["dataset_kwargs"]["data_files"]["test"].split("/")[0]


def evaluation_datasets(evaluation: dict[str, Any]) -> set[str]:
    """The dataset folders the config's `evaluation` section reads."""
    names = {PERPLEXITY[d][0] for d in evaluation["perplexity"]["datasets"]}
    return names | {task_dataset(t) for t in evaluation["zeroshot"]["tasks"]}


def datasets_needed(config: dict[str, Any]) -> list[str]:
    """Every dataset folder the configured run reads."""
    names = evaluation_datasets(config["evaluation"])
    names |= {CORPORA[m["calibration"]["corpus"]].dataset for m in config["methods"].values() if m.get("calibration")}
    if any(m.get("tune", True) for m in config["methods"].values()):
        names.add(config.get("recovery", {}).get("dataset", "alpaca"))
    return sorted(names)


def schema_problem(config: dict[str, Any], schema_file: str | Path) -> str:
    """The config's first schema violation in one line: where, the value, what is allowed.

    (Snakemake's own message prints the whole schema after an unknown key.)"""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_file).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return "the config does not match workflow/schemas/config.schema.yaml"
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties":
        allowed = f"allowed keys: {', '.join(error.schema.get('properties', {})) or 'none'}"
        return f"{where or 'top level'}: {error.message}; {allowed}"
    node, about = schema, ""  # the closest documented setting the value belongs to
    for part in error.absolute_path:
        node = node.get("items", {}) if isinstance(part, int) else (
            node.get("properties", {}).get(part) or node.get("additionalProperties") or {})
        node = node if isinstance(node, dict) else {}
        about = f" ({node['description']})" if node.get("description") else about
    value = "" if isinstance(error.instance, (dict, list)) else f" = {error.instance!r}"
    return f"{where or 'top level'}{value}: {error.message}{about}"


def _check_evaluation(ev: dict[str, Any]) -> None:
    for name in ev["perplexity"]["datasets"]:
        if name not in PERPLEXITY:
            raise ValueError(f"unknown perplexity dataset {name!r}; allowed: {', '.join(PERPLEXITY)}")
    for task in ev["zeroshot"]["tasks"]:
        if task not in available_tasks():
            raise ValueError(f"unknown zero-shot task {task!r}; allowed: {', '.join(available_tasks())}")
    check_limits(ev["zeroshot"]["tasks"], ev["zeroshot"].get("limit"))


def check_config(config: dict[str, Any], verify_data: bool = True) -> None:
    try:
        _check(config, verify_data)
    except (ValueError, DataError) as err:
        raise ConfigError(str(err)) from None


def _check(config: dict[str, Any], verify_data: bool) -> None:
    for name, model in config["models"].items():
        try:
            check_source(model["source"])
        except ValueError as err:
            raise ValueError(f"model {name!r}: {err}") from None
    for ratio in config["ratios"]:
        if check_ratio(ratio) == 0:
            raise ValueError("pruning ratio 0 is not allowed in `ratios` (the dense model is always evaluated)")
    labels = [ratio_label(r) for r in config["ratios"]]
    if len(set(labels)) != len(labels):
        raise ValueError(f"ratios {config['ratios']} repeat a value")
    for name, method in config["methods"].items():
        module = method_module(method["module"])
        try:
            check_params(module, method.get("params") or {})
        except ValueError as err:
            raise ValueError(f"methods.{name}.params: {err}") from None
        cal = method.get("calibration")
        if module.NEEDS and not cal:
            raise ValueError(f"method {name!r} ({method['module']}) needs a `calibration` entry "
                             f"(corpus: one of {sorted(CORPORA)})")
        if cal and cal["corpus"] not in CORPORA:
            raise ValueError(f"method {name!r}: unknown calibration corpus {cal['corpus']!r}; "
                             f"allowed: {', '.join(sorted(CORPORA))}")
    _check_evaluation(config["evaluation"])
    bench = config.get("benchmark", {})
    if bench.get("max_repeats", 20) < bench.get("repeats", 5):
        raise ValueError(f"benchmark.max_repeats {bench['max_repeats']} is smaller than benchmark.repeats "
                         f"{bench.get('repeats', 5)}; it must be at least as many paired repeats")
    if verify_data:
        for name in datasets_needed(config):
            verify_dataset(name, config["data_dir"])

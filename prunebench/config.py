"""Checks of a (schema-valid) config that the JSON schema cannot express, run before any job.

Each failure names the bad value and what is allowed. Nothing here touches results.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from methods import method_module

from .calibration import CalibrationSpec
from .evaluation.zeroshot import available_tasks, check_limits, task_config
from .paths import run_name, split_run
from .pruning import check_params, check_ratio
from .sources.datasets import CORPORA, PERPLEXITY, DataError, alpaca_examples, verify_dataset
from .sources.models import check_source

__all__ = ["ConfigError", "check_config", "check_unique_keys", "schema_problem", "datasets_needed",
           "evaluation_datasets", "task_dataset", "calibration_of", "method_params", "ratio_label", "method_seeds",
           "seed_ratios", "model_plan", "runs_at", "checkpoint_order", "full_for_dense", "run_entry", "curve_tune",
           "curve_runs", "curve_recovery", "export_runs"]


class ConfigError(ValueError):
    """A config value that cannot work."""


def ratio_label(ratio: float) -> str:
    """How a ratio appears in paths and tables: 0.2, 0.5 (dense: 0)."""
    return f"{ratio:g}"


def method_params(config: dict[str, Any], model: str, method: str) -> dict[str, Any]:
    """The parameters of a method entry on a model: the model's `method_params` for the entry's
    module (LLM-Pruner's layer range, say), then the entry's own `params`, which win."""
    entry = config["methods"][method]
    per_model = config["models"][model].get("method_params", {}).get(entry["module"], {})
    return {**per_model, **(entry.get("params") or {})}


def check_unique_keys(path: str | Path) -> None:
    """Refuse a YAML (or JSON) config file in which a mapping repeats a key: YAML keeps the last
    of the two silently, so one of the values the author wrote would be ignored."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{path}: key {key!r} appears twice in one mapping (lines {seen[key]} and "
                                      f"{line}); YAML would keep only the last value, so remove one")
                seen[key] = line
            return super().construct_mapping(node, deep)

    try:
        yaml.load(Path(path).read_text(), Loader=Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not a valid config file: {err}") from None


def calibration_of(method: dict[str, Any], seed: int) -> CalibrationSpec | None:
    """The calibration draw of `method`'s run with `seed` (one of `method_seeds`)."""
    cal = method.get("calibration")
    if not cal:
        return None
    return CalibrationSpec(cal["corpus"], cal["nsamples"], cal["seqlen"], seed)


def method_seeds(config: dict[str, Any], name: str) -> list[int]:
    """The calibration seeds method `name` is pruned with, the first giving its main rows: its own
    `seeds`, else the global `seeds`, else the one seed of its calibration entry or the run's `seed`."""
    method = config["methods"][name]
    if method.get("seeds") or config.get("seeds"):
        return list(method.get("seeds") or config["seeds"])
    return [(method.get("calibration") or {}).get("seed", config["seed"])]


def run_entry(config: dict[str, Any], run: str) -> dict[str, Any]:
    """The config entry a run is pruned by: its method's entry without `seeds` (each run has its own
    seed), so that giving a method further seeds (config/extended.yaml) leaves the job of its main
    run as it was, and Snakemake redoes no finished prune."""
    return {k: v for k, v in config["methods"][split_run(run)[0]].items() if k != "seeds"}


def seed_ratios(config: dict[str, Any]) -> list[str]:
    """The ratio labels at which methods prune their seeds after the first (w/o tune)."""
    return [ratio_label(r) for r in config.get("seed_ratios") or config["ratios"]]


def model_plan(config: dict[str, Any], model: str) -> dict[str, dict[str, list[str]]]:
    """Which method entries a model runs at which ratio labels, w/o tune ("none") and recovered
    ("lora"): its `runs` (`prune` and `recover`: entry -> ratios), else every entry at every ratio,
    recovered where the entry's `tune` allows."""
    runs, labels = config["models"][model].get("runs"), [ratio_label(r) for r in config["ratios"]]
    if runs:
        return {tune: {name: [ratio_label(r) for r in ratios] for name, ratios in runs.get(key, {}).items()}
                for tune, key in (("none", "prune"), ("lora", "recover"))}
    return {"none": {name: labels for name in config["methods"]},
            "lora": {name: labels for name, method in config["methods"].items() if method.get("tune", True)}}


def full_for_dense(config: dict[str, Any], model: str, part: str) -> bool:
    """Whether the model's dense evaluation also covers every window or document (`part`: perplexity
    or zeroshot): the evaluation's `full_for_dense`, unless the model's `runs` switch it off."""
    return config["evaluation"][part]["full_for_dense"] and config["models"][model].get("runs", {}).get(
        "full_for_dense", True)


def runs_at(config: dict[str, Any], model: str, ratio: str, tune: str = "none") -> list[str]:
    """The runs of a model evaluated at a ratio label, in config order: each method's main seed
    (`model_plan`), then the further seeds (w/o tune, at the seed ratios; not on a model whose
    `runs` name its rows)."""
    plan = model_plan(config, model)[tune]
    out = [name for name in config["methods"] if ratio in plan.get(name, [])]
    if tune == "none" and ratio in seed_ratios(config) and "runs" not in config["models"][model]:
        out += [run_name(name, s) for name in config["methods"] for s in method_seeds(config, name)[1:]]
    return out


def checkpoint_order(config: dict[str, Any], model: str, ratio: str) -> list[tuple[str, str]]:
    """Every main (run, tune) checkpoint of a model at a ratio label in config order, each method's
    pruned model then its recovered one. An evaluation looks for a bit-identical twin only among the
    checkpoints before its own, so methods a later config file adds (config/extended.yaml) never put
    the finished rows' evaluations out of date. Further calibration seeds are not in it: evaluated
    on their own, they neither share nor are shared, so adding seeds or methods moves no run."""
    plan = model_plan(config, model)
    return [(run, tune) for run in config["methods"] for tune in ("none", "lora") if ratio in plan[tune].get(run, [])]


def export_runs(config: dict[str, Any], model: str) -> list[tuple[str, str, str]]:
    """(run, ratio label, tune) of every checkpoint of a model that `export` writes in deployable
    formats: the main runs of its methods, w/o and w/ tune (the dense model is exported too)."""
    export = config.get("export") or {}
    if not export.get("enabled") or model not in export.get("models", config["models"]):
        return []
    methods, plan = export.get("methods") or list(config["methods"]), model_plan(config, model)
    return [(name, ratio, tune) for tune in ("none", "lora") for name, ratios in plan[tune].items()
            if name in methods for ratio in ratios]


def curve_tune(steps: int) -> str:
    """The tune label, and results folder, of a recovery-curve point: "lora-<steps>"."""
    return f"lora-{steps}"


def curve_runs(config: dict[str, Any], model: str) -> list[tuple[str, str, int]]:
    """(method, ratio label, steps) of every point of a model's recovery curve (`recovery_curve`): a
    method's main run recovered with `steps` optimizer steps, beside its pruned row (0 steps) and
    its default recovered row; each evaluated on its own. None on a model whose `runs` name its rows
    (their cost is what they are chosen for)."""
    curve = {} if "runs" in config["models"][model] else config.get("recovery_curve") or {}
    return [(method, ratio_label(ratio), steps) for method in curve.get("methods", [])
            for ratio in curve.get("ratios", []) for steps in curve.get("steps", [])]


def curve_recovery(recovery: dict[str, Any], steps: int) -> dict[str, Any]:
    """The recovery settings of a curve point: the configured recipe for `steps` optimizer steps, a
    warm-up and validation interval given in whole steps scaled to keep their share of the recipe's
    own steps (2 of 20 warm-up steps: 25 of 250), so that only the length of training differs."""
    scaled = dict(recovery, steps=steps)
    if recovery.get("steps"):
        for key, least in (("warmup", 0), ("eval_every", 1)):
            if recovery[key] >= 1:
                scaled[key] = max(least, round(recovery[key] * steps / recovery["steps"]))
    return scaled


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
    if _recovers(config):
        names.add(config["recovery"]["dataset"])
    return sorted(names)


def _recovers(config: dict[str, Any]) -> bool:
    """Whether any method entry is also recovered (w/ tune), or on the recovery curve."""
    return any(m.get("tune", True) for m in config["methods"].values()) or any(
        curve_runs(config, model) for model in config["models"])


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
        if node.get("$ref", "").startswith("#/$defs/"):  # a shared definition (seeds)
            node = schema["$defs"][node["$ref"].removeprefix("#/$defs/")]
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


def _check_curve(config: dict[str, Any]) -> None:
    curve = config.get("recovery_curve") or {}
    for name in curve.get("methods", []):
        if name not in config["methods"]:
            raise ValueError(f"recovery_curve.methods: {name!r} is not a method of this config; allowed: "
                             f"{', '.join(config['methods'])}")
    labels = [ratio_label(r) for r in config["ratios"]]
    for ratio in curve.get("ratios", []):
        if ratio_label(ratio) not in labels:
            raise ValueError(f"recovery_curve.ratios: {ratio} is not among the ratios {config['ratios']}")
    for steps in curve.get("steps", []):
        if steps == config["recovery"].get("steps"):
            raise ValueError(f"recovery_curve.steps: {steps} is the recovery's own steps, whose rows the suite "
                             "has already (w/ LoRA); give only other step counts")
def _check_export(config: dict[str, Any]) -> None:
    export = config.get("export") or {}
    for key, known in (("models", config["models"]), ("methods", config["methods"]),
                       ("perplexity", config["evaluation"]["perplexity"]["datasets"])):
        for name in export.get(key) or []:
            if name not in known:
                raise ValueError(f"export.{key}: {name!r} is not among this config's {key}; allowed: {list(known)}")
    if export.get("enabled") and importlib.util.find_spec("llama_cpp") is None:
        raise ValueError("export.enabled: true needs llama-cpp-python (llama.cpp's runtime and quantizer), which is "
                         "not installed: `make setup` builds it (README \"Deployment\"), or set export.enabled: false")
    if export.get("enabled") and "f16" not in export.get("formats", ["f16"]):
        raise ValueError(f"export.formats {export['formats']} lacks f16: the quantized types are made from it "
                         "(allowed: f16 with any of Q8_0, Q4_K_M)")


def _check_runs(config: dict[str, Any], model: str, runs: dict[str, Any] | None) -> None:
    """A model's `runs` name configured method entries at configured ratios, and recover only what
    it also prunes there, with an entry that allows recovery."""
    labels = [ratio_label(r) for r in config["ratios"]]
    for key in ("prune", "recover"):
        for name, ratios in (runs or {}).get(key, {}).items():
            where = f"models.{model}.runs.{key}.{name}"
            if name not in config["methods"]:
                raise ValueError(f"{where}: no method entry {name!r}; configured: {', '.join(config['methods'])}")
            for ratio in ratios:
                if ratio_label(ratio) not in labels:
                    raise ValueError(f"{where}: ratio {ratio} is not among the ratios {config['ratios']}")
                if key == "recover" and ratio_label(ratio) not in map(ratio_label, runs.get("prune", {}).get(name, [])):
                    raise ValueError(f"{where}: ratio {ratio} is recovered but not pruned (runs.prune.{name})")
            if key == "recover" and not config["methods"][name].get("tune", True):
                raise ValueError(f"{where}: methods.{name} has tune: false, so it is never recovered")


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
    for model, entry in config["models"].items():
        _check_runs(config, model, entry.get("runs"))
        for module_name, params in entry.get("method_params", {}).items():
            try:
                check_params(method_module(module_name), params)
            except ValueError as err:
                raise ValueError(f"models.{model}.method_params.{module_name}: {err}") from None
    for name, method in config["methods"].items():
        module = method_module(method["module"])
        try:
            check_params(module, method.get("params") or {})
        except ValueError as err:
            raise ValueError(f"methods.{name}.params: {err}") from None
        why_not_masked = getattr(module, "mask_problem", lambda _params: None)(method.get("params") or {})
        if method.get("mask") and why_not_masked:
            raise ValueError(f"methods.{name}: mask: true is not possible: {why_not_masked}")
        cal = method.get("calibration")
        if module.NEEDS and not cal:
            raise ValueError(f"method {name!r} ({method['module']}) needs a `calibration` entry "
                             f"(corpus: one of {sorted(CORPORA)})")
        if cal and cal["corpus"] not in CORPORA:
            raise ValueError(f"method {name!r}: unknown calibration corpus {cal['corpus']!r}; "
                             f"allowed: {', '.join(sorted(CORPORA))}")
        if cal and "seed" in cal and (method.get("seeds") or config.get("seeds")):
            raise ValueError(f"method {name!r}: calibration.seed {cal['seed']} and seeds "
                             f"{method.get('seeds') or config['seeds']} both set; give the calibration seeds in "
                             "`seeds` only")
    for ratio in config.get("seed_ratios") or []:
        if ratio_label(ratio) not in labels:
            raise ValueError(f"seed_ratios: {ratio} is not among the ratios {config['ratios']}")
    _check_curve(config)
    _check_export(config)
    _check_evaluation(config["evaluation"])
    recovery = config["recovery"] if _recovers(config) else None
    for key in ("warmup", "eval_every") if recovery else ():
        if recovery[key] >= 1 and recovery[key] != int(recovery[key]):
            raise ValueError(f"recovery.{key} {recovery[key]} is neither a whole number of steps nor a fraction "
                             "(below 1) of the optimizer steps")
    if config["evaluation"].get("dtype") == "float16" and config.get("device", "cpu") == "cpu":
        raise ValueError("evaluation.dtype float16 needs a GPU (device: cuda); on a CPU use bfloat16 or float32")
    bench = config.get("benchmark", {})
    if bench.get("max_repeats", 20) < bench.get("repeats", 5):
        raise ValueError(f"benchmark.max_repeats {bench['max_repeats']} is smaller than benchmark.repeats "
                         f"{bench.get('repeats', 5)}; it must be at least as many paired repeats")
    if verify_data:
        for name in datasets_needed(config):
            verify_dataset(name, config["data_dir"])
        n_examples = len(alpaca_examples(config["data_dir"])) if recovery else 0
        if recovery and recovery["val_size"] >= n_examples:
            raise ValueError(f"recovery.val_size {recovery['val_size']} leaves no training example: the "
                             f"{recovery['dataset']} data has {n_examples} examples (allowed: 1..{n_examples - 1})")

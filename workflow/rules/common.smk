# Config validation (schema, then the checks a schema cannot express) and path helpers.
# Everything here runs before the first job, so bad input fails early and touches no result.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from methods import method_module
from prunebench import paths
from prunebench.calibration import CalibrationSpec
from prunebench.config import (
    ConfigError,
    calibration_of,
    check_config,
    check_unique_keys,
    checkpoint_order,
    curve_recovery,
    curve_runs,
    curve_tune,
    evaluation_datasets,
    export_runs,
    full_for_dense,
    method_params,
    method_seeds,
    model_plan,
    ratio_label,
    run_entry,
    runs_at,
    schema_problem,
)
from prunebench.evaluation import model_evaluation
from prunebench.pruning.checkpoint import content_hash
from prunebench.reporting.results import earlier_results
from prunebench.sources.datasets import CORPORA

try:
    for configfile in workflow.configfiles:  # before Snakemake's merge hides a repeated key
        check_unique_keys(configfile)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None
try:
    validate(config, schema="../schemas/config.schema.yaml")  # also fills in the schema's defaults
except WorkflowError:
    schema_file = os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
    raise WorkflowError(f"invalid config: {schema_problem(config, schema_file)}") from None
try:
    check_config(config)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}") from None

MODELS = list(config["models"])
METHODS = config["methods"]
RATIOS = [ratio_label(r) for r in config["ratios"]]
THREADS = config["threads"]


wildcard_constraints:
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=paths.RUN_PATTERN,
    ratio="[0-9][0-9.]*",
    calib="[^/]+",
    dataset="[a-z0-9_]+",
    steps="[1-9][0-9]*",


def dense_dir(wc):
    return paths.model_dir(wc.model)


def method_of(run):
    """The config entry of a run (a method's name, or "<method>@seed<s>" for a further seed)."""
    return METHODS[paths.split_run(run)[0]]


def seed_of(run):
    method, seed = paths.split_run(run)
    return method_seeds(config, method)[0] if seed is None else seed


def method_calibration_dir(model, run):
    return paths.calibration_dir(model, calibration_of(method_of(run), seed_of(run)).id)


def eval_data():
    """The data folders the evaluation reads."""
    return [paths.data_dir(n) for n in sorted(evaluation_datasets(config["evaluation"]))]


def model_bos(wc):
    """The model's BOS policy (prunebench.sources.bos): calibration and evaluation follow it."""
    return config["models"][wc.model].get("bos", "auto")


def model_resources(wc, key, default):
    """A job's request from the model's `resources` in the config (mem_mb, runtime in minutes, gpus).
    Rules pass gpus as the `gpu` resource, which the Slurm executor turns into `--gpus`."""
    return config["models"][wc.model].get("resources", {}).get(key, default)


def metrics_targets():
    out = [f"{paths.result_dir(m, 'dense', '0')}/{paths.METRICS}" for m in MODELS]
    for model in MODELS:
        for ratio in RATIOS:
            out += [f"{paths.result_dir(model, run, ratio, tune)}/{paths.METRICS}"
                    for tune in ("none", "lora") for run in runs_at(config, model, ratio, tune)]
        out += [f"{paths.result_dir(model, run, ratio, curve_tune(steps))}/{paths.METRICS}"
                for run, ratio, steps in curve_runs(config, model)]
    return out


# Earlier runs' results this config does not produce, merged into the summary and the reports.
EARLIER = earlier_results(metrics_targets(), MODELS, config["evaluation"])
# What every evaluate job receives (the dense one's full test sets are its own parameter).
MODEL_EVALUATION = model_evaluation(config["evaluation"])


def items_of(metrics):
    return [f"{os.path.dirname(m)}/{paths.ITEMS}" for m in metrics]


def evaluation_inputs(tune):
    """What a pruned or recovered model's evaluation reads: its checkpoint, the dense manifest and
    the data; or, when the checkpoint of a run before it at the same ratio (`checkpoint_order`) is
    bit-identical (content hash), that run's evaluation, which this one then cites instead of
    repeating it. A recovery that kept no update equals its pruned model."""

    def checkpoint_dir(wc, run, tune):
        made_by = checkpoints.prune if tune == "none" else checkpoints.recover
        return made_by.get(model=wc.model, method=run, ratio=wc.ratio).output[0]

    def inputs(wc):
        own = {"model": checkpoint_dir(wc, wc.method, tune), "dense": dense_dir(wc), "data": eval_data()}
        order = checkpoint_order(config, wc.model, wc.ratio)
        if (wc.method, tune) not in order and wc.method in runs_at(config, wc.model, wc.ratio, tune):
            return own  # a further calibration seed: always evaluated on its own
        mine = content_hash(own["model"])
        for earlier, earlier_tune in order:
            if (earlier, earlier_tune) == (wc.method, tune):
                return own
            if content_hash(checkpoint_dir(wc, earlier, earlier_tune)) == mine:
                shared = paths.result_dir(wc.model, earlier, wc.ratio, earlier_tune)
                return own | {"shared": f"{shared}/{paths.METRICS}", "shared_items": f"{shared}/{paths.ITEMS}"}
        raise ValueError(f"run {wc.method} ({tune}) is not among the runs at ratio {wc.ratio}")

    return inputs


def all_targets():
    out = [paths.SUMMARY]
    if config["benchmark"]["enabled"] and METHODS:
        out += [paths.efficiency_csv(m) for m in MODELS]
    return out + export_targets() + ["reports/README.md"]  # needs every table and figure (report.smk)

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
    evaluation_datasets,
    method_params,
    ratio_label,
    schema_problem,
)
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
    method="[a-z0-9][a-z0-9_-]*",
    ratio="[0-9][0-9.]*",
    calib="[^/]+",
    dataset="[a-z0-9_]+",


def dense_dir(wc):
    return paths.model_dir(wc.model)


def checkpoint_of(wc):
    """The model a job reads: the dense directory or a pruned checkpoint."""
    if wc.method == "dense":
        return dense_dir(wc)
    return f"{paths.result_dir(wc.model, wc.method, wc.ratio)}/model"


def method_calibration_dir(model, method):
    return paths.calibration_dir(model, calibration_of(METHODS[method], config["seed"]).id)


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
    out = [f"{paths.result_dir(m, 'dense', '0')}/metrics.json" for m in MODELS]
    for model in MODELS:
        for name, method in METHODS.items():
            for ratio in RATIOS:
                out.append(f"{paths.result_dir(model, name, ratio)}/metrics.json")
                if method.get("tune", True):
                    out.append(f"{paths.result_dir(model, name, ratio, 'lora')}/metrics.json")
    return out


def all_targets():
    out = [paths.SUMMARY]
    if config["benchmark"]["enabled"] and METHODS:
        out += [paths.efficiency_csv(m) for m in MODELS]
    return out + ["reports/README.md"]  # needs every table and figure (report.smk)

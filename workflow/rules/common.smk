# Config validation (schema, then the checks a schema cannot express) and path helpers.
# Everything here runs before the first job, so bad input fails early and touches no result.
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from methods import method_module
from methods.calibration import CalibrationSpec
from methods.config import ConfigError, calibration_of, check_config, evaluation_datasets, ratio_label, schema_problem
from methods.data import CORPORA

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


def model_dir(model):
    return f"resources/models/{model}"


def checkpoint_of(wc):
    """The model a job reads: the dense directory or a pruned checkpoint."""
    if wc.method == "dense":
        return model_dir(wc.model)
    return f"results/{wc.model}/{wc.method}/{wc.ratio}/model"


def calibration_dir(model, method):
    return f"resources/calibration/{model}/{calibration_of(METHODS[method], config['seed']).id}"


def eval_data():
    """The data folders the evaluation reads."""
    return [f"resources/data/{n}" for n in sorted(evaluation_datasets(config["evaluation"]))]


def model_resources(wc, key, default):
    """A job's request from the model's `resources` in the config (mem_mb, runtime in minutes, gpus).
    Rules pass gpus as the `gpu` resource, which the Slurm executor turns into `--gpus`."""
    return config["models"][wc.model].get("resources", {}).get(key, default)


def metrics_targets():
    out = [f"results/{m}/dense/0/metrics.json" for m in MODELS]
    for model in MODELS:
        for name, method in METHODS.items():
            for ratio in RATIOS:
                out.append(f"results/{model}/{name}/{ratio}/metrics.json")
                if method.get("tune", True):
                    out.append(f"results/{model}/{name}/{ratio}/lora/metrics.json")
    return out


def all_targets():
    out = ["results/summary.csv"]
    if config["benchmark"]["enabled"] and METHODS:
        out += [f"results/{m}/efficiency.csv" for m in MODELS]
    return out + ["reports/README.md"]  # needs every table and figure (report.smk)

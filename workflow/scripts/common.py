"""What every workflow script does first: log to the rule's log file, use the job's threads, seed
torch from the config."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def data_root(snakemake) -> Path:
    """The folder of the verified datasets: the parent of the job's `data` input."""
    data = snakemake.input.data
    return Path(data if isinstance(data, str) else data[0]).parent


def start_job(snakemake) -> None:
    import torch

    if snakemake.log:
        log = open(snakemake.log[0], "w", buffering=1)
        sys.stdout = sys.stderr = log
        logging.basicConfig(stream=log, level=logging.INFO, force=True)
    torch.set_num_threads(max(1, snakemake.threads))
    torch.manual_seed(snakemake.config["seed"])


def report_results(snakemake):
    """The collated results a report job reads (report.smk's `report_inputs`)."""
    from prunebench.reporting.results import load_results

    i = snakemake.input
    metrics = [*i.metrics, *snakemake.params.earlier]
    return load_results(i.summary, metrics, i.efficiency, snakemake.config, i.seeds, i.comparisons, i.correlations,
                        [*i.llamacpp, *snakemake.params.earlier_llamacpp],
                        [*i.efficiency_llamacpp, *snakemake.params.earlier_llamacpp_speed])

# PruneBench: structured pruning of LLMs, end to end.
#   calibrate -> score -> choose structure -> remove -> (recover) -> evaluate -> collate -> report
# Run: `make run` (or `snakemake --profile workflow/profiles/default`); see README.md.
import os

from snakemake.utils import min_version

min_version("9.0")


# The default suite, unless a complete config is given with --configfile (e.g. config/paper.yaml);
# --config KEY=VALUE overrides single values of either.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "default.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/resume.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/recover.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/collate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True

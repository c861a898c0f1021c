# PruneBench: structured pruning of LLMs, end to end.
#   calibrate -> score -> choose structure -> remove -> (recover) -> evaluate -> collate -> report
# Run: `make run` (or `snakemake --profile workflow/profiles/default`); see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/collate.smk"


rule all:
    input:
        all_targets(),
    default_target: True

import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.sources.datasets import install_dataset  # noqa: E402

start_job(snakemake)  # noqa: F821
files = install_dataset(snakemake.wildcards.dataset, snakemake.params.source, snakemake.output[0])  # noqa: F821
print(f"verified and copied: {files}")

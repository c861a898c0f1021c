import sys

sys.path.insert(0, snakemake.scriptdir)  # noqa: F821
from common import start_job  # noqa: E402

from prunebench.sources.models import materialise  # noqa: E402

start_job(snakemake)  # noqa: F821
manifest = materialise(snakemake.params.source, snakemake.output[0], snakemake.params.dtype)  # noqa: F821
print(manifest)

# A run killed with SIGKILL (or by a power loss) leaves Snakemake's directory lock behind, and the
# same command would then refuse to start ("Directory cannot be locked"). Every main Snakemake
# process of this workflow holds an flock on .snakemake/prunebench.lock, which the kernel releases
# when the process dies, however it dies. So a process that obtains it knows that no other run of
# this workflow is alive in this directory, and that any lock left in .snakemake/locks is stale.
import fcntl
from pathlib import Path

from snakemake.logging import logger


def hold_run_lock():
    """The open lock file (keep it open for the whole run), or None if another run holds it."""
    state = Path(".snakemake")
    state.mkdir(exist_ok=True)
    handle = open(state / "prunebench.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live run (or locks unsupported): leave Snakemake's own check to decide
        handle.close()
        return None
    stale = [p for p in (state / "locks").glob("*") if p.is_file()]
    for path in stale:
        path.unlink()
    if stale:
        logger.warning(f"removed {len(stale)} stale lock(s) of a run that was killed; resuming")
    return handle


# Only the process that locks the directory, never a job running inside a cluster allocation.
if workflow.is_main_process:
    RUN_LOCK = hold_run_lock()

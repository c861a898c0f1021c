"""What every result records about how it was made: versions, commit, hashes, wall times."""
from __future__ import annotations

import platform
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["package_versions", "git_commit", "environment", "Stopwatch", "peak_memory_mb"]

PACKAGES = ("torch", "transformers", "lm-eval", "datasets", "peft", "safetensors", "snakemake",
            "pandas", "numpy", "gguf")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def git_commit(repo: str | Path = ".") -> str:
    """HEAD, with "+dirty" when tracked files differ from it; "unknown" outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if head and dirty else "")


def environment() -> dict[str, Any]:
    return {
        "packages": package_versions(),
        "git_commit": git_commit(Path(__file__).resolve().parent.parent),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class Stopwatch:
    """Named wall and CPU times: `with watch("prune"): ...`; `watch.times` is {name: wall seconds},
    `watch.cpu` {name: CPU seconds of the process, every thread}, which contention on a shared
    machine does not inflate."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.times[name] = round(self.times.get(name, 0.0) + time.perf_counter() - start, 3)
            self.cpu[name] = round(self.cpu.get(name, 0.0) + time.process_time() - cpu, 3)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (CPU) or peak allocated GPU memory, in MiB."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

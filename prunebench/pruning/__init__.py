"""Pruning core: the method interface, per-channel scores, the choice of structure, model surgery
and pruned checkpoints. Takes a method module as an argument; never imports one by name.

A method is a module with `NEEDS` ("activations", "tokens" or None) and one entry point

    prune(model, ratio, calib: Calibration, **params) -> PruningPlan

that scores units and chooses the structure; `prune_model` then removes them for every method alike.
"""
from __future__ import annotations

import difflib
import math
import inspect
import typing
from types import ModuleType
from typing import Any

from ..calibration import Calibration
from .structure import PruningPlan, Shapes
from .surgery import apply_plan

__all__ = ["NEEDS_VALUES", "is_method", "check_ratio", "check_params", "check_budget", "prune_model"]

NEEDS_VALUES = ("activations", "tokens", None)


def is_method(module: ModuleType) -> bool:
    """Whether `module` implements the method interface (a `prune` function and `NEEDS`)."""
    return callable(getattr(module, "prune", None)) and getattr(module, "NEEDS", "") in NEEDS_VALUES


def check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
        raise ValueError(f"pruning ratio {ratio!r} is not allowed: it must be a number in [0, 1) "
                         "(the fraction of attention+MLP parameters removed)")
    return float(ratio)


def _name(module: ModuleType) -> str:
    return module.__name__.split(".")[-1]


def check_params(module: ModuleType, params: dict[str, Any]) -> None:
    """Reject unknown or misspelled parameters and values outside a Literal's choices."""
    signature = inspect.signature(module.prune)
    allowed = {n: p for n, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    hints = typing.get_type_hints(module.prune)
    for key, value in params.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"method {_name(module)!r} has no parameter {key!r}{hint}; "
                             f"allowed: {', '.join(allowed) or 'none'}")
        choices = _literal_choices(hints.get(key))
        if choices and value not in choices:
            raise ValueError(f"parameter {key}={value!r} of method {_name(module)!r} "
                             f"is not allowed; choose one of {list(choices)}")
        items = _literal_list_choices(hints.get(key))
        if items and (not isinstance(value, (list, tuple)) or not value or len(set(value)) != len(value)
                      or any(v not in items for v in value)):
            raise ValueError(f"parameter {key}={value!r} of method {_name(module)!r} is not allowed; give a "
                             f"non-empty list of distinct values from {list(items)}")


def _literal_choices(hint) -> tuple:
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    return ()


def _literal_list_choices(hint) -> tuple:
    """The allowed items of a `list[Literal[...]]` (or tuple) parameter, else ()."""
    if typing.get_origin(hint) in (list, tuple) and len(args := typing.get_args(hint)) >= 1:
        return _literal_choices(args[0])
    return ()


def check_budget(plan: PruningPlan, shapes: Shapes, ratio: float, method: str) -> None:
    """Refuse a plan that removes nothing, or whose removed parameters miss `ratio` of the prunable
    ones by more than one unit in each layer it changes (a KV group; a whole layer where the plan
    removes it), and one hidden channel where it shrinks the hidden size: the coarsest steps its
    structure could have taken."""
    target = ratio * shapes.prunable_params
    removed = shapes.prunable_params - plan.kept_params(shapes)
    dense = (shapes.heads, shapes.kv_heads, shapes.intermediate)
    steps = [shapes.layer_params if i in plan.removed_layers else shapes.unit_cost
             for i, keep in enumerate(plan.layers)
             if i in plan.removed_layers or (len(keep.q_heads), len(keep.kv_heads), len(keep.channels)) != dense]
    if plan.kept_hidden(shapes) < shapes.hidden:  # a hidden channel: its share of every kept projection
        steps.append(math.ceil(plan.kept_params(shapes) / plan.kept_hidden(shapes)))
    fraction = removed / shapes.prunable_params
    if removed == 0:
        raise ValueError(f"method {method!r} at ratio {ratio:g} removes nothing from this model "
                         f"({shapes.layers} layers of {shapes.kv_heads} KV groups and {shapes.intermediate} MLP "
                         "channels): the ratio is below one unit of its structure; use a larger ratio")
    if abs(removed - target) > sum(steps):
        raise ValueError(f"method {method!r} at ratio {ratio:g} removes {fraction:.4f} of the attention+MLP "
                         f"parameters, off the target by more than one unit in each of the {len(steps)} layers it "
                         f"prunes (±{sum(steps) / shapes.prunable_params:.4f}); its parameters cannot reach the "
                         "ratio on this model (a layer range too narrow, a fixed channel_ratio or remove_heads?)")


def prune_model(model, module: ModuleType, ratio: float, calib: Calibration, params: dict[str, Any],
                mask: bool = False) -> PruningPlan:
    """Score, choose the structure, check that it meets the ratio, remove (or mask): the model is
    changed in place."""
    check_params(module, params)
    plan = module.prune(model, check_ratio(ratio), calib, **params)
    check_budget(plan, Shapes.of(model), ratio, _name(module))
    apply_plan(model, plan, calib.activations, mask=mask)
    return plan

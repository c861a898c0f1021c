"""FLAP: fluctuation-based adaptive structured pruning (An et al., arXiv 2312.11983).

Score each input channel of o_proj/down_proj by how much its fluctuation matters (WIFV =
Var(X_j) * ||W[:, j]||^2), standardize the scores per layer and module, rank every attention unit
(KV group, or query-head rank with `attention_unit: query_heads`) and MLP channel of the model
together weighted by its parameter cost (AL-AM), and add the removed channels' mean contribution to
the output bias so that the expected output is unchanged.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.scores import input_channel_scores
from prunebench.pruning.structure import (
    AttentionUnit,
    PruningPlan,
    RoundTo,
    Shapes,
    attention_plan,
    keep_global,
    keep_top,
    round_widths,
    standardize,
    uniform_counts,
    uniform_plan,
    unit_scores,
)

NEEDS = "activations"


def prune(model, ratio: float, calib: Calibration, *,
          metric: Literal["IFV", "WIFV", "WIFN"] = "WIFV",
          structure: Literal["UL-UM", "UL-MM", "AL-MM", "AL-AM"] = "AL-AM",
          attention_metric: Literal["reference", "paper"] = "reference",
          remove_heads: int | None = None,
          match_params: bool = True,
          compensate: bool = True,
          attention_unit: AttentionUnit = "kv_group",
          round_to: RoundTo = 1) -> PruningPlan:
    """`attention_metric="reference"` squares the o_proj metric once more before standardizing, as
    FLAP's code does (unlike the paper's formula, `"paper"`). `remove_heads` (attention units in the
    whole model) fixes the attention budget of UL-MM/AL-MM, default int(ratio * all units); their
    MLP channels take the rest of the budget (`mlp_channels_removed`). `match_params` (UL-UM) solves
    the channel count for the parameter budget, see uniform_counts. UL-* rank each layer's raw
    scores (a unit: the sum over its channels), AL-* the per-layer z-scores (a unit: their mean).
    `round_to`: kept widths become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    unit = attention_unit
    attn, mlp = input_channel_scores(model, metric, calib.activations)
    if attention_metric == "reference":
        attn = [a ** 2 for a in attn]
    details = {"metric": metric, "structure": structure, "attention_metric": attention_metric, "attention_unit": unit}
    n_units = shapes.units(unit)
    heads_removed = int(ratio * shapes.layers * n_units) if remove_heads is None else remove_heads
    if structure in ("UL-UM", "UL-MM"):  # per layer, on the raw scores (the reference standardizes only for AL-*)
        per_layer = heads_removed // shapes.layers
        counts = (uniform_counts(shapes, ratio, match_params, unit) if structure == "UL-UM"
                  else (per_layer, mlp_channels_removed(shapes, ratio, shapes.attention_removed(unit, per_layer), 1)))
        return uniform_plan(shapes, attn, mlp, counts, unit, round_to, compensate=compensate, details=details)
    attn_z = [standardize(a, f"layer {i} attention scores") for i, a in enumerate(attn)]
    unit_z = [unit_scores(a, shapes, unit, "mean") for a in attn_z]
    mlp_z = [standardize(m, f"layer {i} MLP scores") for i, m in enumerate(mlp)]
    if structure == "AL-AM":
        units, channels = keep_global(unit_z, mlp_z, shapes, 1 - ratio, unit)
    else:
        units = _per_layer(keep_top(torch.cat(unit_z), heads_removed), n_units, shapes.layers)
        removed = sum(shapes.attention_removed(unit, n_units - len(kept)) for kept in units)
        channels_removed = mlp_channels_removed(shapes, ratio, removed, shapes.layers)
        channels = _per_layer(keep_top(torch.cat(mlp_z), channels_removed), shapes.intermediate, shapes.layers)
    plan = attention_plan(shapes, unit, attn_z, units, channels, compensate=compensate, details=details)
    return round_widths(plan, shapes, round_to, unit_z, mlp_z, unit)


def mlp_channels_removed(shapes: Shapes, ratio: float, attention_removed: int, layers: int) -> int:
    """FLAP's `cal_remove_neuron`: the MLP channels that `layers` layers lose so that, with
    `attention_removed` attention parameters gone from them, they lose `ratio` of their parameters,
    floored as the reference does (the 1e-9 keeps an exact product from flooring one below)."""
    left = layers * ratio * shapes.layer_params - attention_removed
    return min(max(math.floor(left / shapes.channel_cost + 1e-9), 0), layers * shapes.intermediate)


def _per_layer(kept: list[int], width: int, layers: int) -> list[list[int]]:
    """Model-wide kept indices back to per-layer lists."""
    out: list[list[int]] = [[] for _ in range(layers)]
    for k in kept:
        out[k // width].append(k % width)
    return out

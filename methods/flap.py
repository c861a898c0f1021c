"""FLAP: fluctuation-based adaptive structured pruning (An et al., arXiv 2312.11983).

Score each input channel of o_proj/down_proj by how much its fluctuation matters (WIFV =
Var(X_j) * ||W[:, j]||^2), standardize the scores per layer and module, rank every attention unit
(KV group, or query-head rank with `attention_unit: query_heads`) and MLP channel of the model
together weighted by its parameter cost (AL-AM), and add the removed channels' mean contribution to
the output bias so that the expected output is unchanged.
"""
from __future__ import annotations

from typing import Literal

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.scores import input_channel_scores
from prunebench.pruning.structure import (
    AttentionUnit,
    PruningPlan,
    Shapes,
    attention_plan,
    channels_for_budget,
    keep_global,
    keep_top,
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
          attention_unit: AttentionUnit = "kv_group") -> PruningPlan:
    """`attention_metric="reference"` squares the o_proj metric once more before standardizing, as
    FLAP's code does (unlike the paper's formula, `"paper"`). `remove_heads` (attention units in the
    whole model) fixes the attention budget of UL-MM/AL-MM; default int(ratio * all units).
    `match_params` (UL-UM) solves the channel count for the parameter budget, see uniform_counts."""
    shapes = Shapes.of(model)
    unit = attention_unit
    attn, mlp = input_channel_scores(model, metric, calib.activations)
    if attention_metric == "reference":
        attn = [a ** 2 for a in attn]
    details = {"metric": metric, "structure": structure, "attention_metric": attention_metric, "attention_unit": unit}
    n_units = shapes.units(unit)
    heads_removed = int(ratio * shapes.layers * n_units) if remove_heads is None else remove_heads
    attn_z = [standardize(a) for a in attn]
    unit_z = [unit_scores(a, shapes, unit, "mean") for a in attn_z]
    mlp_z = [standardize(m) for m in mlp]
    if structure == "AL-AM":
        units, channels = keep_global(unit_z, mlp_z, shapes, 1 - ratio, unit)
    elif structure == "AL-MM":
        units = _per_layer(keep_top(torch.cat(unit_z), heads_removed), n_units, shapes.layers)
        removed = sum(shapes.attention_removed(unit, n_units - len(kept)) for kept in units)
        channels_removed = shapes.layers * channels_for_budget(shapes, ratio, 0) - round(removed / shapes.channel_cost)
        channels = _per_layer(keep_top(torch.cat(mlp_z), max(channels_removed, 0)), shapes.intermediate,
                              shapes.layers)
    else:
        per_layer = heads_removed // shapes.layers
        counts = (uniform_counts(shapes, ratio, match_params, unit) if structure == "UL-UM"
                  else (per_layer, channels_for_budget(shapes, ratio, per_layer, unit)))
        return uniform_plan(shapes, attn, mlp, counts, unit, compensate=compensate, details=details)
    return attention_plan(shapes, unit, attn_z, units, channels, compensate=compensate, details=details)


def _per_layer(kept: list[int], width: int, layers: int) -> list[list[int]]:
    """Model-wide kept indices back to per-layer lists."""
    out: list[list[int]] = [[] for _ in range(layers)]
    for k in kept:
        out[k // width].append(k % width)
    return out

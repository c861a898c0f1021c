"""FLAP: fluctuation-based adaptive structured pruning (An et al., arXiv 2312.11983).

Score each input channel of o_proj/down_proj by how much its fluctuation matters (WIFV =
Var(X_j) * ||W[:, j]||^2), standardize the scores per layer and module, rank every KV group and
MLP channel of the model together weighted by its parameter cost (AL-AM), and add the removed
channels' mean contribution to the output bias so that the expected output is unchanged.
"""
from __future__ import annotations

from typing import Literal

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.scores import input_channel_scores
from prunebench.pruning.structure import (
    PruningPlan,
    RoundTo,
    Shapes,
    channels_for_budget,
    group_scores,
    keep_global,
    keep_top,
    round_widths,
    standardize,
    uniform_counts,
    uniform_plan,
)

NEEDS = "activations"


def prune(model, ratio: float, calib: Calibration, *,
          metric: Literal["IFV", "WIFV", "WIFN"] = "WIFV",
          structure: Literal["UL-UM", "UL-MM", "AL-MM", "AL-AM"] = "AL-AM",
          attention_metric: Literal["reference", "paper"] = "reference",
          remove_heads: int | None = None,
          match_params: bool = True,
          compensate: bool = True,
          round_to: RoundTo = 1) -> PruningPlan:
    """`attention_metric="reference"` squares the o_proj metric once more before standardizing, as
    FLAP's code does (unlike the paper's formula, `"paper"`). `remove_heads` (KV groups in the
    whole model) fixes the attention budget of UL-MM/AL-MM; default int(ratio * all groups).
    `match_params` (UL-UM) solves the channel count for the parameter budget, see uniform_counts.
    `round_to`: kept widths become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    attn, mlp = input_channel_scores(model, metric, calib.activations)
    if attention_metric == "reference":
        attn = [a ** 2 for a in attn]
    details = {"metric": metric, "structure": structure, "attention_metric": attention_metric}
    heads_removed = int(ratio * shapes.layers * shapes.kv_heads) if remove_heads is None else remove_heads
    unit_z = [group_scores(standardize(a), shapes, "mean") for a in attn]
    mlp_z = [standardize(m) for m in mlp]
    if structure == "AL-AM":
        units, channels = keep_global(unit_z, mlp_z, shapes, 1 - ratio)
    elif structure == "AL-MM":
        channels_removed = shapes.layers * channels_for_budget(shapes, ratio, 0) - round(
            heads_removed * shapes.unit_cost / shapes.channel_cost)
        units = _per_layer(keep_top(torch.cat(unit_z), heads_removed), shapes.kv_heads, shapes.layers)
        channels = _per_layer(keep_top(torch.cat(mlp_z), max(channels_removed, 0)), shapes.intermediate,
                              shapes.layers)
    else:
        per_layer = heads_removed // shapes.layers
        counts = (uniform_counts(shapes, ratio, match_params) if structure == "UL-UM"
                  else (per_layer, channels_for_budget(shapes, ratio, per_layer)))
        return uniform_plan(shapes, attn, mlp, counts, round_to, compensate=compensate, details=details)
    plan = PruningPlan.from_units(shapes, units, channels, compensate=compensate, details=details)
    return round_widths(plan, shapes, round_to, unit_z, mlp_z)


def _per_layer(kept: list[int], width: int, layers: int) -> list[list[int]]:
    """Model-wide kept indices back to per-layer lists."""
    out: list[list[int]] = [[] for _ in range(layers)]
    for k in kept:
        out[k // width].append(k % width)
    return out

"""Minitron width pruning (Muralidharan et al. 2024, arXiv 2407.14679; NVIDIA ModelOpt).

Importance from forward activations only, on the calibration windows (the shared statistics'
`magnitude`, aggregated as the paper's best variant, batch=L2 / seq=mean: per window the mean over
its tokens, then the L2 norm over windows; see prunebench.calibration.activations):
  heads   the L2 norm of each head's output; a KV group scores the L2 norm of its heads' scores
          (ModelOpt's grouping), a query-head rank as in every method (`attention_unit`)
  mlp     |intermediate activation| per channel (the down_proj input)
  hidden  |norm output| per residual channel, at every norm that feeds a projection (each layer's
          pre-attention and pre-MLP norm), summed over those norms and layers (ModelOpt's sum)
Structure: the same widths in every layer (a plain architecture of smaller heads / intermediate /
hidden size), each layer dropping its lowest heads and channels, the whole model the lowest hidden
channels. `axes` chooses what shrinks; the chosen axes share one kept fraction and the MLP (or the
hidden size without it) absorbs the rounding, so that `ratio` means what it means for every method.
The paper picks its target architectures by search and retrains them by distillation; this module
is the one-shot pruning step, which PruneBench's LoRA recovery may follow.

The paper's head importance is the norm of each head's output per token (used here); ModelOpt's
code instead takes the per-channel magnitude and the L2 norm over a head's channels.
"""
from __future__ import annotations

import inspect

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import (
    AttentionUnit,
    LayerKeep,
    PruningPlan,
    Shapes,
    WidthAxis,
    keep_heads,
    keep_top,
    width_counts,
)

NEEDS = "activations"


def prune(model, ratio: float, calib: Calibration, *,
          axes: list[WidthAxis] = ("heads", "mlp", "hidden"),  # noqa: B006 (a tuple: never mutated)
          attention_unit: AttentionUnit = "kv_group") -> PruningPlan:
    """`axes`: the width axes that shrink (any of heads, mlp, hidden)."""
    shapes = Shapes.of(model)
    heads, mlp, hidden = importances(calib, shapes)
    units, channels, kept_hidden = width_counts(shapes, ratio, tuple(axes), attention_unit)
    layers = []
    for head_scores, channel_scores in zip(heads, mlp):
        # keep_heads sums per-channel scores over a unit: squared head scores spread over their
        # channels sum to a group's squared L2 norm (the same order as the L2 norm)
        per_channel = (head_scores.pow(2) / shapes.head_dim).repeat_interleave(shapes.head_dim)
        q_heads, kv_heads = keep_heads(per_channel, shapes, attention_unit, units)
        layers.append(LayerKeep(q_heads, kv_heads, keep_top(channel_scores, shapes.intermediate - channels)))
    hidden_channels = keep_top(hidden, shapes.hidden - kept_hidden) if kept_hidden < shapes.hidden else None
    return PruningPlan(layers, hidden_channels=hidden_channels, details={
        "axes": list(axes), "attention_unit": attention_unit, "aggregation": "batch=L2, seq=mean",
        "units_removed_per_layer": units, "channels_kept_per_layer": channels, "hidden_kept": kept_hidden,
        "hidden_importance": hidden.tolist()})


def mask_problem(params: dict) -> str | None:
    """Why a config entry with `mask: true` cannot run (read by the config check), or None."""
    axes = params.get("axes", inspect.signature(prune).parameters["axes"].default)
    return ("the hidden axis has no masked form (RMSNorm's mean runs over every channel); "
            "use mask: false or axes without hidden") if "hidden" in axes else None


def importances(calib: Calibration, shapes: Shapes) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """(per layer head scores [heads], per layer MLP channel scores [intermediate], hidden channel
    scores [hidden]) from the dense model's activation magnitudes, float64."""
    magnitude = calib.activations.magnitude if calib.activations is not None else None
    if magnitude is None:
        raise ValueError("minitron needs the activation magnitudes of the shared statistics, which these were "
                         "saved without (collected by an older PruneBench): delete them and rerun activation_stats")
    hidden = torch.stack([a + m for a, m in zip(magnitude["hidden_attn"], magnitude["hidden_mlp"])]).sum(dim=0)
    return list(magnitude["heads"]), list(magnitude["mlp"]), hidden

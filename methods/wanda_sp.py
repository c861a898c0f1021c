"""Wanda-sp: Wanda's |W| * ||X|| score on whole columns (FLAP's structured baseline).

s_j = mean_i |W_ij| * ||X_j||_2 on the input channels of o_proj/down_proj, a KV group scores the
sum of its channels, the same share removed in every layer, no bias compensation. The norms come
from the dense model's shared activation statistics (FLAP's code re-measures them layer by layer
on the partly pruned model; here every method reads the one dense calibration pass).
"""
from __future__ import annotations

from prunebench.calibration import Calibration
from prunebench.pruning.scores import input_channel_scores
from prunebench.pruning.structure import AttentionUnit, PruningPlan, RoundTo, Shapes, uniform_counts, uniform_plan

NEEDS = "activations"


def prune(model, ratio: float, calib: Calibration, *, match_params: bool = True,
          attention_unit: AttentionUnit = "kv_group", round_to: RoundTo = 1) -> PruningPlan:
    """`round_to`: kept widths become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    attn, mlp = input_channel_scores(model, "WIFN", calib.activations)
    return uniform_plan(shapes, attn, mlp, uniform_counts(shapes, ratio, match_params, attention_unit), attention_unit,
                        round_to,
                        details={"metric": "WIFN", "structure": "UL-UM", "attention_unit": attention_unit})

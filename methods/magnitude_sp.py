"""Magnitude-sp: the L2 norm of each o_proj/down_proj input column, uniform per layer, no data."""
from __future__ import annotations

from prunebench.calibration import Calibration
from prunebench.pruning.scores import input_channel_scores
from prunebench.pruning.structure import AttentionUnit, PruningPlan, RoundTo, Shapes, uniform_counts, uniform_plan

NEEDS = None


def prune(model, ratio: float, calib: Calibration, *, match_params: bool = True,
          attention_unit: AttentionUnit = "kv_group", round_to: RoundTo = 1) -> PruningPlan:
    """`round_to`: kept widths become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    attn, mlp = input_channel_scores(model, "L2")
    return uniform_plan(shapes, attn, mlp, uniform_counts(shapes, ratio, match_params, attention_unit), attention_unit,
                        round_to,
                        details={"metric": "L2", "structure": "UL-UM", "attention_unit": attention_unit})

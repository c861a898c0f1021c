"""Random: uniform per layer, units drawn with a seeded generator (the floor any method must beat)."""
from __future__ import annotations

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import AttentionUnit, PruningPlan, RoundTo, Shapes, uniform_counts, uniform_plan

NEEDS = None


def prune(model, ratio: float, calib: Calibration, *, match_params: bool = True,
          attention_unit: AttentionUnit = "kv_group", round_to: RoundTo = 1) -> PruningPlan:
    """`round_to`: kept widths become multiples of it (see round_widths), the draws deciding."""
    shapes = Shapes.of(model)
    rng = torch.Generator().manual_seed(calib.seed)
    width = shapes.kv_heads if attention_unit == "kv_group" else shapes.heads
    draws = [torch.rand(width, generator=rng) for _ in range(shapes.layers)]
    channels = [torch.rand(shapes.intermediate, generator=rng) for _ in range(shapes.layers)]
    # each unit's draw on every o_proj input channel it owns (float64: the group sums keep the order)
    attn = [d.double().repeat_interleave(shapes.heads * shapes.head_dim // width) for d in draws]
    return uniform_plan(shapes, attn, channels, uniform_counts(shapes, ratio, match_params, attention_unit),
                        attention_unit, round_to, details={"structure": "UL-UM", "attention_unit": attention_unit})

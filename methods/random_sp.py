"""Random: uniform per layer, units drawn with a seeded generator (the floor any method must beat)."""
from __future__ import annotations

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import PruningPlan, RoundTo, Shapes, keep_uniform, round_widths, uniform_counts

NEEDS = None


def prune(model, ratio: float, calib: Calibration, *, match_params: bool = True,
          round_to: RoundTo = 1) -> PruningPlan:
    """`round_to`: kept widths become multiples of it (see round_widths), the draws deciding."""
    shapes = Shapes.of(model)
    rng = torch.Generator().manual_seed(calib.seed)
    units = [torch.rand(shapes.kv_heads, generator=rng) for _ in range(shapes.layers)]
    channels = [torch.rand(shapes.intermediate, generator=rng) for _ in range(shapes.layers)]
    kept_units, kept_channels = keep_uniform(units, channels, *uniform_counts(shapes, ratio, match_params))
    plan = PruningPlan.from_units(shapes, kept_units, kept_channels, details={"structure": "UL-UM"})
    return round_widths(plan, shapes, round_to, units, channels)

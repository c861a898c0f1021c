"""Random: uniform per layer, units drawn with a seeded generator (the floor any method must beat)."""
from __future__ import annotations

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import PruningPlan, Shapes, keep_uniform, uniform_counts

NEEDS = None


def prune(model, ratio: float, calib: Calibration, *, match_params: bool = True) -> PruningPlan:
    shapes = Shapes.of(model)
    rng = torch.Generator().manual_seed(calib.seed)
    units = [torch.rand(shapes.kv_heads, generator=rng) for _ in range(shapes.layers)]
    channels = [torch.rand(shapes.intermediate, generator=rng) for _ in range(shapes.layers)]
    kept_units, kept_channels = keep_uniform(units, channels, *uniform_counts(shapes, ratio, match_params))
    return PruningPlan.from_units(shapes, kept_units, kept_channels, details={"structure": "UL-UM"})

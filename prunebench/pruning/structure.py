"""Choosing the structure: which attention units and MLP channels each layer keeps.

The attention unit is a whole KV group (one kv head with its query heads), so every pruned layer
stays a valid grouped-query attention; for an MHA model it is exactly one head, FLAP's unit.
An MLP unit is one intermediate channel (gate/up row, down column). Costs are the parameters a
unit takes away, read from the model's real shapes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

__all__ = ["Shapes", "LayerKeep", "PruningPlan", "group_scores", "standardize", "uniform_counts", "channels_for_budget",
           "keep_top", "keep_uniform", "uniform_plan", "keep_global", "local_counts", "solve_local_ratio",
           "RoundTo", "round_widths", "layers_for_ratio", "depth_plan"]

# Widths the kernels like: a width method's `round_to` makes kept widths multiples of one of these.
RoundTo = Literal[1, 2, 4, 8, 16, 32, 64, 128, 256]


@dataclass(frozen=True)
class Shapes:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int

    @classmethod
    def of(cls, model) -> "Shapes":
        from ..sources.models import architecture

        arch = architecture(model.config)
        return cls(**{k: arch[k] for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate")})

    @property
    def group_size(self) -> int:
        """Query heads per kv head."""
        return self.heads // self.kv_heads

    @property
    def unit_cost(self) -> int:
        """Parameters of one KV group: q rows and o columns of its query heads, its k and v rows."""
        return (2 * self.group_size + 2) * self.head_dim * self.hidden

    @property
    def channel_cost(self) -> int:
        return 3 * self.hidden

    @property
    def layer_params(self) -> int:
        return self.kv_heads * self.unit_cost + self.intermediate * self.channel_cost

    @property
    def prunable_params(self) -> int:
        """Decoder attention + MLP parameters: the denominator of `ratio` (FLAP's definition)."""
        return self.layers * self.layer_params


@dataclass
class LayerKeep:
    q_heads: list[int]  # kept query heads, original indices, ascending
    kv_heads: list[int]  # kept kv heads
    channels: list[int]  # kept MLP channels


@dataclass
class PruningPlan:
    """Per original decoder layer what it keeps; `removed_layers` (original indices) are removed
    whole (depth pruning), their `layers` entries are then ignored."""

    layers: list[LayerKeep]
    compensate: bool = False  # add W[:, removed] @ mean[removed] to the output bias (FLAP)
    details: dict[str, Any] = field(default_factory=dict)
    removed_layers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.layers)
        if sorted(set(self.removed_layers)) != sorted(self.removed_layers) or not all(
                0 <= i < n for i in self.removed_layers):
            raise ValueError(f"removed_layers {self.removed_layers} must be distinct indices in 0..{n - 1}")
        if len(self.removed_layers) == n:
            raise ValueError(f"removing all {n} decoder layers leaves no model; at least one must remain")
        self.removed_layers = sorted(self.removed_layers)

    @classmethod
    def from_units(cls, shapes: Shapes, kept_units: list[list[int]], kept_channels: list[list[int]],
                   **kwargs) -> "PruningPlan":
        g = shapes.group_size
        layers = [LayerKeep([u * g + j for u in units for j in range(g)], list(units), list(channels))
                  for units, channels in zip(kept_units, kept_channels)]
        return cls(layers, **kwargs)

    @classmethod
    def without_layers(cls, shapes: Shapes, removed: list[int], **kwargs) -> "PruningPlan":
        """Depth pruning: the decoder layers `removed` go whole, every other layer stays dense."""
        return cls.from_units(shapes, [list(range(shapes.kv_heads))] * shapes.layers,
                              [list(range(shapes.intermediate))] * shapes.layers, removed_layers=list(removed),
                              **kwargs)

    def kept_params(self, shapes: Shapes) -> int:
        return sum(len(k.kv_heads) * shapes.unit_cost + len(k.channels) * shapes.channel_cost
                   for i, k in enumerate(self.layers) if i not in self.removed_layers)

    def summary(self, shapes: Shapes) -> dict[str, Any]:
        """Per original layer the kept units (0 for a removed layer), and the real fraction removed."""
        def per_layer(count) -> list[int]:
            return [0 if i in self.removed_layers else count(k) for i, k in enumerate(self.layers)]

        return {
            "kept_kv_heads": per_layer(lambda k: len(k.kv_heads)),
            "kept_heads": per_layer(lambda k: len(k.q_heads)),
            "kept_channels": per_layer(lambda k: len(k.channels)),
            "removed_layers": list(self.removed_layers),
            "prunable_params": shapes.prunable_params,
            "removed_fraction": 1 - self.kept_params(shapes) / shapes.prunable_params,
        }


def group_scores(channel_scores: torch.Tensor, shapes: Shapes, reduce: str = "sum") -> torch.Tensor:
    """KV-group scores from the per-channel scores of `o_proj`'s input [heads*head_dim].

    HF orders query heads by kv group (head h uses kv head h // group_size), so a group's
    channels are contiguous.
    """
    per_group = channel_scores.reshape(shapes.kv_heads, shapes.group_size * shapes.head_dim)
    return per_group.sum(dim=1) if reduce == "sum" else per_group.mean(dim=1)


def standardize(scores: torch.Tensor) -> torch.Tensor:
    """z-score across one layer's channels, as FLAP does before ranking globally."""
    return (scores - scores.mean()) / scores.std()


def uniform_counts(shapes: Shapes, ratio: float, match_params: bool = True) -> tuple[int, int]:
    """(units, channels) removed in every layer for a uniform structure.

    Units removed: int(ratio * kv_heads), as FLAP's code floors the head count. With
    `match_params` the channel count is then solved so that each layer loses `ratio` of its
    parameters (with few kv groups the head count alone cannot follow the ratio); otherwise
    int(ratio * intermediate) as in FLAP's code.
    """
    units = int(ratio * shapes.kv_heads)
    if not match_params:
        return units, int(ratio * shapes.intermediate)
    return units, channels_for_budget(shapes, ratio, units)


def channels_for_budget(shapes: Shapes, ratio: float, units_removed: int) -> int:
    """MLP channels a layer loses so that, with `units_removed` KV groups gone, it loses `ratio`
    of its parameters (clamped to what the layer has)."""
    left = ratio * shapes.layer_params - units_removed * shapes.unit_cost
    return min(max(round(left / shapes.channel_cost), 0), shapes.intermediate)


def keep_top(scores: torch.Tensor, n_remove: int) -> list[int]:
    """Indices kept after removing the `n_remove` lowest scores (ties: the lower index goes first)."""
    order = torch.argsort(scores, stable=True)
    return sorted(order[n_remove:].tolist())


def keep_uniform(unit_scores: list[torch.Tensor], channel_scores: list[torch.Tensor],
                 units_removed: list[int] | int, channels_removed: list[int] | int) -> tuple[list, list]:
    """Per layer, drop the lowest-scored units and channels (counts per layer or one for all)."""
    n = len(unit_scores)
    ur = units_removed if isinstance(units_removed, list) else [units_removed] * n
    cr = channels_removed if isinstance(channels_removed, list) else [channels_removed] * n
    return ([keep_top(s, r) for s, r in zip(unit_scores, ur)],
            [keep_top(s, r) for s, r in zip(channel_scores, cr)])


def uniform_plan(shapes: Shapes, attn_channel_scores: list[torch.Tensor], mlp_scores: list[torch.Tensor],
                 counts: tuple[int, int], round_to: int = 1, **plan_kwargs) -> PruningPlan:
    """Every layer loses `counts` = (KV groups, MLP channels), the lowest by score; a group
    scores the sum of its o_proj input channels. `round_to`: see round_widths."""
    unit_scores = [group_scores(a, shapes) for a in attn_channel_scores]
    units, channels = keep_uniform(unit_scores, mlp_scores, *counts)
    plan = PruningPlan.from_units(shapes, units, channels, **plan_kwargs)
    return round_widths(plan, shapes, round_to, unit_scores, mlp_scores)


def keep_global(unit_scores: list[torch.Tensor], channel_scores: list[torch.Tensor], shapes: Shapes,
                keep_fraction: float) -> tuple[list, list]:
    """Rank every unit of every layer together, best first, and keep the prefix whose parameter
    cost is closest to `keep_fraction` of the prunable parameters (FLAP's AL-AM)."""
    scores = torch.cat([torch.stack(unit_scores).flatten(), torch.stack(channel_scores).flatten()]).double()
    n_units = sum(s.numel() for s in unit_scores)
    costs = torch.cat([torch.full((n_units,), shapes.unit_cost, dtype=torch.float64),
                       torch.full((scores.numel() - n_units,), shapes.channel_cost, dtype=torch.float64)])
    order = torch.argsort(-scores, stable=True)
    kept_cost = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(costs[order], 0)])
    n_keep = int(torch.argmin((kept_cost - keep_fraction * costs.sum()).abs()))
    kept = torch.zeros(scores.numel(), dtype=torch.bool)
    kept[order[:n_keep]] = True
    units, channels = kept[:n_units].view(len(unit_scores), -1), kept[n_units:].view(len(channel_scores), -1)
    return ([torch.nonzero(u).flatten().tolist() for u in units],
            [torch.nonzero(c).flatten().tolist() for c in channels])


def local_counts(shapes: Shapes, channel_ratio: float) -> tuple[int, int]:
    """(KV groups, MLP channels) a layer loses at a local channel ratio, counted as torch-pruning
    does for LLM-Pruner: on channels, n - int(n * (1 - r)), then whole groups of q channels."""
    q_channels = shapes.heads * shapes.head_dim
    group_width = shapes.group_size * shapes.head_dim
    units = (q_channels - int(q_channels * (1 - channel_ratio))) // group_width
    return units, shapes.intermediate - int(shapes.intermediate * (1 - channel_ratio))


def solve_local_ratio(shapes: Shapes, ratio: float, n_pruned_layers: int) -> float:
    """The local channel ratio on `n_pruned_layers` layers whose real removal is closest to `ratio`
    of the prunable parameters (so that methods are compared at equal parameter reduction)."""
    def removed(r: float) -> float:
        units, channels = local_counts(shapes, r)
        return n_pruned_layers * (units * shapes.unit_cost + channels * shapes.channel_cost) / shapes.prunable_params

    grid = [i / 10000 for i in range(10000)]
    return min(grid, key=lambda r: (abs(removed(r) - ratio), r))


# --- hardware-aligned widths -----------------------------------------------------------------------

def round_widths(plan: PruningPlan, shapes: Shapes, round_to: int, unit_scores: list[torch.Tensor],
                 channel_scores: list[torch.Tensor]) -> PruningPlan:
    """`plan` with every pruned layer's kept MLP channels, and its kept attention width (KV groups x
    head_dim; already a multiple wherever `round_to` divides head_dim), a multiple of `round_to`,
    at the parameter budget `plan` met.

    The method's own scores choose: every layer first rounds down, dropping its lowest-scored kept
    units; then, while that brings the kept parameters closer to the unrounded plan's, the block of
    `round_to` units that scores highest (mean z-score within its layer, so that layers compare)
    comes back, or, above the budget, the lowest-scored block goes, a layer moving beyond the
    multiples next to its own count only once no other move is left. Attention is rounded first and
    the MLP channels absorb its shift. A layer left whole, or removed, is not touched.
    `details["rounding"]` records the remaining shift of the removed fraction.
    """
    if round_to == 1:
        return plan
    pruned = [i not in plan.removed_layers for i in range(len(plan.layers))]
    target = plan.kept_params(shapes)
    step = round_to // math.gcd(round_to, shapes.head_dim)  # KV groups per multiple of round_to
    units = _round_kept([k.kv_heads for k in plan.layers], unit_scores, step, shapes.kv_heads, pruned,
                        sum(len(k.kv_heads) for k, p in zip(plan.layers, pruned) if p))
    kept_units = sum(len(u) for u, p in zip(units, pruned) if p)
    channels = _round_kept([k.channels for k in plan.layers], channel_scores, round_to, shapes.intermediate, pruned,
                           (target - kept_units * shapes.unit_cost) / shapes.channel_cost)
    rounded = PruningPlan.from_units(shapes, units, channels, compensate=plan.compensate, details=dict(plan.details),
                                     removed_layers=plan.removed_layers)
    before = 1 - target / shapes.prunable_params
    after = rounded.summary(shapes)["removed_fraction"]
    rounded.details["rounding"] = {"round_to": round_to, "removed_fraction_unrounded": before,
                                   "budget_shift": after - before}
    return rounded


def _round_kept(kept: list[list[int]], scores: list[torch.Tensor], step: int, width: int, pruned: list[bool],
                target: float) -> list[list[int]]:
    """Per layer the kept indices, their count a multiple of `step` or the whole `width`, with the
    total over the `pruned` layers as close to `target` as whole steps allow (see round_widths)."""
    order, z, count = {}, {}, {}  # per movable layer: kept-first ranking, z-scores, current count
    for i, (k, s) in enumerate(zip(kept, scores)):
        if pruned[i] and len(k) < width:
            ranked = torch.argsort(s.double(), descending=True, stable=True).tolist()
            members = set(k)
            order[i] = [j for j in ranked if j in members] + [j for j in ranked if j not in members]
            z[i] = torch.nan_to_num(standardize(s.double()))
            count[i] = len(k) - len(k) % step
    total = sum(len(k) for k, p in zip(kept, pruned) if p) - sum(len(kept[i]) - c for i, c in count.items())

    def move(i: int, up: bool) -> tuple[bool, float, int, int] | None:
        """(whether it leaves the multiples next to the layer's own count, the block's mean z-score
        signed so that smaller is better, layer, new count) of one block back in (up) or out."""
        c = count[i]
        new = min(c + step, width) if up else (c - (c % step or step))
        if new == c or new < 0:
            return None
        block = order[i][c:new] if up else order[i][new:c]
        gain = float(z[i][block].mean())
        return abs(new - len(kept[i])) >= step, -gain if up else gain, i, new

    while True:  # rounding to a neighbouring multiple first, then further only where the budget needs it
        gap = target - total
        moves = [m for i in count if (m := move(i, gap > 0))]
        if not moves:
            break
        *_, i, new = min(moves)
        if abs(gap - (new - count[i])) >= abs(gap):
            break
        total += new - count[i]
        count[i] = new
    return [sorted(order[i][:count[i]]) if i in count else list(k) for i, k in enumerate(kept)]


# --- depth -----------------------------------------------------------------------------------------

def layers_for_ratio(shapes: Shapes, ratio: float) -> int:
    """Whole decoder layers to remove for `ratio` of the prunable parameters: every dense layer holds
    the same share, so the nearest whole count (a tie rounds up, meeting the target); one stays."""
    return min(math.floor(ratio * shapes.layers + 0.5), shapes.layers - 1)


def depth_plan(shapes: Shapes, ratio: float, layer_scores: torch.Tensor, protected: tuple[int, ...] = (),
               **details) -> PruningPlan:
    """Remove the `layers_for_ratio` layers of lowest score (ties: the lower index first), never a
    `protected` one; the details record every layer's score and the removal order."""
    order = [i for i in torch.argsort(layer_scores.double(), stable=True).tolist() if i not in protected]
    n = layers_for_ratio(shapes, ratio)
    if n > len(order):
        raise ValueError(f"ratio {ratio} needs {n} of {shapes.layers} layers removed, but only {len(order)} "
                         f"are not protected ({sorted(protected)})")
    return PruningPlan.without_layers(shapes, order[:n], details={
        **details, "layer_scores": layer_scores.tolist(), "removal_order": order, "layers_removed": n})

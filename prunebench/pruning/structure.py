"""Choosing the structure: which attention units and MLP channels each layer keeps.

Two attention units keep every pruned layer a valid grouped-query attention:
  kv_group     a whole KV group (one kv head with its query heads); for an MHA model exactly one
               head, FLAP's unit (the default)
  query_heads  a query-head rank: one query head from every KV group of the layer (each group's
               lowest-scoring one), k/v kept until the last rank goes; with few kv heads (one in
               small Gemma-3 models, three in SmolLM2) the attention stays prunable at a finer grain
An MLP unit is one intermediate channel (gate/up row, down column). A hidden channel (Minitron's
embedding axis) is one channel of the residual stream, removed from the embedding, every norm,
every projection and the LM head alike (`PruningPlan.hidden_channels`). Costs are the parameters a
unit takes away, read from the model's real shapes (biases included).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch

__all__ = ["AttentionUnit", "ATTENTION_UNITS", "Shapes", "LayerKeep", "PruningPlan", "group_scores", "unit_scores",
           "keep_heads", "attention_plan", "standardize", "uniform_counts", "channels_for_budget", "rank_order",
           "keep_top", "keep_uniform", "uniform_plan", "keep_global", "local_counts", "solve_local_ratio",
           "RoundTo", "round_widths", "layers_for_ratio", "depth_plan", "WidthAxis", "WIDTH_AXES", "width_counts"]

# Widths the kernels like: a width method's `round_to` makes kept widths multiples of one of these.
RoundTo = Literal[1, 2, 4, 8, 16, 32, 64, 128, 256]

AttentionUnit = Literal["kv_group", "query_heads"]  # a method parameter's type: checked at config-parse time
ATTENTION_UNITS = get_args(AttentionUnit)


@dataclass(frozen=True)
class Shapes:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    qkv_bias: bool = False  # q/k/v rows carry biases (Qwen2): they go with their heads
    mlp_bias: bool = False  # gate/up rows carry biases
    vocab: int = 0  # embedding rows (for the embedding and LM head, reported apart from `ratio`)
    tied: bool = True  # the LM head shares the embedding's weight

    @classmethod
    def of(cls, model) -> "Shapes":
        """The dense model's shapes."""
        from ..sources.models import architecture

        arch = architecture(model.config)
        layer = model.model.layers[0]
        return cls(**{k: arch[k] for k in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate")},
                   qkv_bias=layer.self_attn.q_proj.bias is not None, mlp_bias=layer.mlp.gate_proj.bias is not None,
                   vocab=model.config.vocab_size,
                   tied=model.get_output_embeddings().weight is model.get_input_embeddings().weight)

    def with_hidden(self, hidden: int) -> "Shapes":
        """These shapes with `hidden` residual channels: every projection's cost follows it."""
        return dataclasses.replace(self, hidden=hidden)

    def embedding_params(self) -> dict[str, int]:
        """Embedding and (untied) LM head parameters: not in `ratio`'s denominator."""
        return {"embedding": self.vocab * self.hidden, "lm_head": 0 if self.tied else self.vocab * self.hidden}

    @property
    def group_size(self) -> int:
        """Query heads per kv head."""
        return self.heads // self.kv_heads

    @property
    def head_cost(self) -> int:
        """Parameters of one query head: its q rows (and bias) and o_proj columns."""
        return (2 * self.hidden + self.qkv_bias) * self.head_dim

    @property
    def kv_cost(self) -> int:
        """Parameters of one kv head: its k and v rows (and biases)."""
        return 2 * (self.hidden + self.qkv_bias) * self.head_dim

    @property
    def unit_cost(self) -> int:
        """Parameters of one KV group: its query heads and its kv head."""
        return self.group_size * self.head_cost + self.kv_cost

    @property
    def channel_cost(self) -> int:
        return 3 * self.hidden + 2 * self.mlp_bias

    def units(self, unit: str) -> int:
        """Attention units per layer: KV groups, or query-head ranks (one per query head of a group)."""
        return self.kv_heads if unit == "kv_group" else self.group_size

    def unit_costs(self, unit: str) -> list[int]:
        """Parameters each attention unit of a layer takes away, in the order they go: all equal for
        KV groups; a query-head rank takes one head of every group, the last one also the kv heads."""
        if unit == "kv_group":
            return [self.unit_cost] * self.kv_heads
        rank = self.kv_heads * self.head_cost
        return [rank] * (self.group_size - 1) + [rank + self.kv_heads * self.kv_cost]

    def attention_removed(self, unit: str, n: int) -> int:
        """Parameters a layer loses with its `n` lowest attention units."""
        return sum(self.unit_costs(unit)[:n])

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
    whole (depth pruning), their `layers` entries are then ignored. `hidden_channels`: the residual
    channels the whole model keeps (None: all); every layer, the embedding, the norms and the LM
    head lose the others (Minitron's embedding axis)."""

    layers: list[LayerKeep]
    compensate: bool = False  # add W[:, removed] @ mean[removed] to the output bias (FLAP)
    details: dict[str, Any] = field(default_factory=dict)
    removed_layers: list[int] = field(default_factory=list)
    hidden_channels: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.layers)
        if sorted(set(self.removed_layers)) != sorted(self.removed_layers) or not all(
                0 <= i < n for i in self.removed_layers):
            raise ValueError(f"removed_layers {self.removed_layers} must be distinct indices in 0..{n - 1}")
        if len(self.removed_layers) == n:
            raise ValueError(f"removing all {n} decoder layers leaves no model; at least one must remain")
        self.removed_layers = sorted(self.removed_layers)
        if self.hidden_channels is not None:
            kept = sorted(self.hidden_channels)
            if not kept or len(set(kept)) != len(kept) or kept[0] < 0:
                raise ValueError(f"hidden_channels must be distinct non-negative channel indices, at least one; "
                                 f"got {len(self.hidden_channels)} with duplicates or negatives")
            self.hidden_channels = kept

    def kept_hidden(self, shapes: Shapes) -> int:
        """Residual channels left: every projection's width along the hidden axis."""
        return shapes.hidden if self.hidden_channels is None else len(self.hidden_channels)

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
        """Decoder attention + MLP parameters left (each projection as wide as the kept hidden size)."""
        kept = shapes.with_hidden(self.kept_hidden(shapes))
        return sum(len(k.q_heads) * kept.head_cost + len(k.kv_heads) * kept.kv_cost
                   + len(k.channels) * kept.channel_cost
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
            "kept_hidden": self.kept_hidden(shapes),
            "prunable_params": shapes.prunable_params,
            "removed_fraction": 1 - self.kept_params(shapes) / shapes.prunable_params,
            # outside `ratio`'s denominator, reported apart: they shrink only with the hidden size
            "embedding_params": {"dense": shapes.embedding_params(),
                                 "kept": shapes.with_hidden(self.kept_hidden(shapes)).embedding_params()},
        }


def _reduce(scores: torch.Tensor, reduce: str) -> torch.Tensor:
    return scores.sum(dim=-1) if reduce == "sum" else scores.mean(dim=-1)


def group_scores(channel_scores: torch.Tensor, shapes: Shapes, reduce: str = "sum") -> torch.Tensor:
    """KV-group scores from the per-channel scores of `o_proj`'s input [heads*head_dim].

    HF orders query heads by kv group (head h uses kv head h // group_size), so a group's
    channels are contiguous.
    """
    return _reduce(channel_scores.reshape(shapes.kv_heads, shapes.group_size * shapes.head_dim), reduce)


def _head_scores(channel_scores: torch.Tensor, shapes: Shapes, reduce: str = "sum") -> torch.Tensor:
    """Query-head scores [kv_heads, group_size]: row g holds the heads of KV group g."""
    return _reduce(channel_scores.reshape(shapes.kv_heads, shapes.group_size, shapes.head_dim), reduce)


def unit_scores(channel_scores: torch.Tensor, shapes: Shapes, unit: str, reduce: str = "sum") -> torch.Tensor:
    """One layer's attention-unit scores: per KV group, or per query-head rank r the r-th lowest
    head score of every group, reduced over the groups (ascending in r)."""
    if unit == "kv_group":
        return group_scores(channel_scores, shapes, reduce)
    return _reduce(_head_scores(channel_scores, shapes, reduce).sort(dim=1).values.T, reduce)


def keep_heads(channel_scores: torch.Tensor, shapes: Shapes, unit: str, n_removed: int) -> tuple[list[int], list[int]]:
    """(kept query heads, kept kv heads) of a layer losing its `n_removed` lowest attention units:
    whole KV groups, or from every KV group its `n_removed` lowest query heads (k/v stay unless
    every query head goes)."""
    g = shapes.group_size
    if unit == "kv_group":
        groups = keep_top(group_scores(channel_scores, shapes), n_removed)
        return [u * g + j for u in groups for j in range(g)], groups
    heads = [u * g + j for u, scores in enumerate(_head_scores(channel_scores, shapes))
             for j in keep_top(scores, n_removed)]
    return heads, list(range(shapes.kv_heads)) if heads else []


def attention_plan(shapes: Shapes, unit: str, attn_channel_scores: list[torch.Tensor], kept_units: list[list[int]],
                   kept_channels: list[list[int]], **plan_kwargs) -> PruningPlan:
    """The plan keeping `kept_units` of each layer: KV groups by index; query-head ranks by number
    (every group keeps its best heads, by `attn_channel_scores`)."""
    if unit == "kv_group":
        return PruningPlan.from_units(shapes, kept_units, kept_channels, **plan_kwargs)
    layers = [LayerKeep(*keep_heads(a, shapes, unit, shapes.group_size - len(units)), list(channels))
              for a, units, channels in zip(attn_channel_scores, kept_units, kept_channels)]
    return PruningPlan(layers, **plan_kwargs)


def standardize(scores: torch.Tensor, what: str = "scores") -> torch.Tensor:
    """z-score across one layer's channels, as FLAP does before ranking globally (float64)."""
    scores = scores.double()
    spread = scores.std()
    if not spread > 0:  # equal scores (or a single one): the z-score divides by zero
        raise ValueError(f"{what}: all {scores.numel()} scores equal {scores[0].item():.6g}, so their z-scores "
                         "are undefined (0/0); the layer's weights or activation statistics are degenerate")
    return (scores - scores.mean()) / spread


def uniform_counts(shapes: Shapes, ratio: float, match_params: bool = True,
                   unit: str = "kv_group") -> tuple[int, int]:
    """(attention units, channels) removed in every layer for a uniform structure.

    Units removed: int(ratio * units per layer), as FLAP's code floors the head count. With
    `match_params` the channel count is then solved so that each layer loses `ratio` of its
    parameters (with few kv groups the head count alone cannot follow the ratio); otherwise
    int(ratio * intermediate) as in FLAP's code.
    """
    units = int(ratio * shapes.units(unit))
    if not match_params:
        return units, int(ratio * shapes.intermediate)
    return units, channels_for_budget(shapes, ratio, units, unit)


def channels_for_budget(shapes: Shapes, ratio: float, units_removed: int, unit: str = "kv_group") -> int:
    """MLP channels a layer loses so that, with its `units_removed` lowest attention units gone, it
    loses `ratio` of its parameters (clamped to what the layer has)."""
    left = ratio * shapes.layer_params - shapes.attention_removed(unit, units_removed)
    return min(max(round(left / shapes.channel_cost), 0), shapes.intermediate)


def rank_order(scores: torch.Tensor, descending: bool = False) -> torch.Tensor:
    """Indices of `scores`, lowest first (highest with `descending`), the same on every machine
    and thread count: scores are compared at float32 resolution (24-bit mantissas, no overflow),
    so values that differ only by the rounding noise of a summation order tie, and ties go by
    index, the lower first."""
    mantissa, exponent = torch.frexp(scores.double())
    if not torch.isfinite(mantissa).all():
        bad = torch.nonzero(~torch.isfinite(scores)).flatten()[:5].tolist()
        raise ValueError(f"scores are not finite (NaN or inf at indices {bad}): no ranking is possible")
    key = torch.ldexp(torch.round(mantissa * 2**24), exponent - 24)
    return torch.argsort(-key if descending else key, stable=True)


def keep_top(scores: torch.Tensor, n_remove: int) -> list[int]:
    """Indices kept after removing the `n_remove` lowest scores (ties: the lower index goes first)."""
    return sorted(rank_order(scores)[n_remove:].tolist())


def keep_uniform(unit_scores: list[torch.Tensor], channel_scores: list[torch.Tensor],
                 units_removed: list[int] | int, channels_removed: list[int] | int) -> tuple[list, list]:
    """Per layer, drop the lowest-scored units and channels (counts per layer or one for all)."""
    n = len(unit_scores)
    ur = units_removed if isinstance(units_removed, list) else [units_removed] * n
    cr = channels_removed if isinstance(channels_removed, list) else [channels_removed] * n
    return ([keep_top(s, r) for s, r in zip(unit_scores, ur)],
            [keep_top(s, r) for s, r in zip(channel_scores, cr)])


def uniform_plan(shapes: Shapes, attn_channel_scores: list[torch.Tensor], mlp_scores: list[torch.Tensor],
                 counts: tuple[int, int], unit: str = "kv_group", round_to: int = 1, **plan_kwargs) -> PruningPlan:
    """Every layer loses `counts` = (attention units, MLP channels), the lowest by score; a unit
    scores the sum of its o_proj input channels. `round_to`: see round_widths."""
    scores = [unit_scores(a, shapes, unit) for a in attn_channel_scores]
    units, channels = keep_uniform(scores, mlp_scores, *counts)
    plan = attention_plan(shapes, unit, attn_channel_scores, units, channels, **plan_kwargs)
    return round_widths(plan, shapes, round_to, scores, mlp_scores, unit)


def keep_global(unit_scores: list[torch.Tensor], channel_scores: list[torch.Tensor], shapes: Shapes,
                keep_fraction: float, unit: str = "kv_group") -> tuple[list, list]:
    """Rank every unit of every layer together, best first, and keep the prefix whose parameter
    cost is closest to `keep_fraction` of the prunable parameters (FLAP's AL-AM)."""
    scores = torch.cat([torch.stack(unit_scores).flatten(), torch.stack(channel_scores).flatten()]).double()
    n_units = sum(s.numel() for s in unit_scores)
    costs = torch.cat([torch.tensor(shapes.unit_costs(unit), dtype=torch.float64).repeat(len(unit_scores)),
                       torch.full((scores.numel() - n_units,), shapes.channel_cost, dtype=torch.float64)])
    order = rank_order(scores, descending=True)
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
                 channel_scores: list[torch.Tensor], unit: str = "kv_group") -> PruningPlan:
    """`plan` with every pruned layer's kept MLP channels, and its kept attention width (KV groups x
    head_dim; already a multiple wherever `round_to` divides head_dim), a multiple of `round_to`,
    at the parameter budget `plan` met. Query-head units keep their heads as chosen: their widths
    are multiples of head_dim x KV heads, which every `round_to` up to head_dim divides.

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
    if unit == "kv_group":
        step = round_to // math.gcd(round_to, shapes.head_dim)  # KV groups per multiple of round_to
        units = _round_kept([k.kv_heads for k in plan.layers], unit_scores, step, shapes.kv_heads, pruned,
                            sum(len(k.kv_heads) for k, p in zip(plan.layers, pruned) if p))
        heads = [k.q_heads for k in PruningPlan.from_units(shapes, units, [[]] * len(units)).layers]
    else:
        units, heads = [k.kv_heads for k in plan.layers], [k.q_heads for k in plan.layers]
    attention = sum(len(q) * shapes.head_cost + len(kv) * shapes.kv_cost
                    for q, kv, p in zip(heads, units, pruned) if p)
    channels = _round_kept([k.channels for k in plan.layers], channel_scores, round_to, shapes.intermediate, pruned,
                           (target - attention) / shapes.channel_cost)
    rounded = PruningPlan([LayerKeep(list(q), list(kv), c) for q, kv, c in zip(heads, units, channels)],
                          compensate=plan.compensate, details=dict(plan.details), removed_layers=plan.removed_layers)
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
    """Remove the `layers_for_ratio` layers of lowest score, ranked as every other score
    (`rank_order`: float32 resolution, ties to the lower index), never a `protected` one; the
    details record every layer's score and the removal order."""
    order = [i for i in rank_order(layer_scores).tolist() if i not in protected]
    n = layers_for_ratio(shapes, ratio)
    if n > len(order):
        raise ValueError(f"ratio {ratio} needs {n} of {shapes.layers} layers removed, but only {len(order)} "
                         f"are not protected ({sorted(protected)})")
    return PruningPlan.without_layers(shapes, order[:n], details={
        **details, "layer_scores": layer_scores.tolist(), "removal_order": order, "layers_removed": n})


# --- uniform width on chosen axes (Minitron) -------------------------------------------------------

WidthAxis = Literal["heads", "mlp", "hidden"]  # attention units, MLP channels, residual (embedding) channels
WIDTH_AXES = get_args(WidthAxis)


def _layer_cost(shapes: Shapes, hidden: float, units_removed: int, channels: float, unit: str) -> float:
    """One layer's attention + MLP parameters at a (possibly fractional) hidden size: every cost is
    affine in the hidden size, so it is interpolated from the costs at 0 and 1."""
    def cost(h: int) -> float:
        s = shapes.with_hidden(h)
        return s.kv_heads * s.unit_cost - s.attention_removed(unit, units_removed) + channels * s.channel_cost

    return cost(0) + hidden * (cost(1) - cost(0))


def width_counts(shapes: Shapes, ratio: float, axes: tuple[str, ...] | list[str],
                 unit: str = "kv_group") -> tuple[int, int, int]:
    """(attention units removed per layer, MLP channels kept per layer, hidden channels kept) so that
    every layer alike loses `ratio` of the decoder's attention+MLP parameters, pruning only `axes`.

    The axes share one kept fraction k, solved on continuous widths (attention scaled as a whole):
    int((1 - k) * units) attention units go (floored, as every uniform structure here floors its
    head count: a unit is a large step, SmolLM2 has 3 KV groups; a layer keeps at least one, so that
    it stays a plain HF attention), the hidden size is rounded to k, then the MLP channels, or
    without `mlp` the hidden size, are solved for the budget given the rest, as close as whole
    channels allow. Attention alone cannot follow a ratio finer than its units: the budget check
    then refuses the plan.
    The hidden size is a multiple of both the dense and the kept number of query heads: transformers
    refuses a LLaMA or Gemma-3 config whose hidden_size is not a multiple of num_attention_heads,
    and both the checkpoint's config (dense heads) and the plain one (kept heads) must load."""
    bad = [a for a in axes if a not in WIDTH_AXES]
    if bad or not axes or len(set(axes)) != len(axes):
        raise ValueError(f"width axes {list(axes)} are not allowed: give distinct values from {list(WIDTH_AXES)}")
    target = (1 - ratio) * shapes.layer_params

    def kept(k: float) -> float:
        hidden = k * shapes.hidden if "hidden" in axes else shapes.hidden
        attention = _layer_cost(shapes, hidden, 0, 0, unit) * (k if "heads" in axes else 1)
        channels = k * shapes.intermediate if "mlp" in axes else shapes.intermediate
        return attention + _layer_cost(shapes, hidden, 0, channels, unit) - _layer_cost(shapes, hidden, 0, 0, unit)

    low, high = 0.0, 1.0  # kept(k) grows with k: bisection
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) < target else (low, mid)
    k = high
    n_units = shapes.units(unit)
    units = min(int((1 - k) * n_units + 1e-9), n_units - 1) if "heads" in axes else 0  # 1e-9: k is bisected
    kept_heads = (n_units - units) * shapes.group_size if unit == "kv_group" else shapes.kv_heads * (n_units - units)
    step = math.lcm(shapes.heads, kept_heads)
    to_step = lambda h: min(max(round(h / step), 1) * step, shapes.hidden)  # noqa: E731
    hidden = to_step(k * shapes.hidden) if "hidden" in axes else shapes.hidden
    channels = shapes.intermediate
    if "mlp" in axes:
        base = _layer_cost(shapes, hidden, units, 0, unit)
        per_channel = _layer_cost(shapes, hidden, units, 1, unit) - base
        channels = min(max(round((target - base) / per_channel), 1), shapes.intermediate)
    elif "hidden" in axes:
        base = _layer_cost(shapes, 0, units, channels, unit)
        slope = _layer_cost(shapes, 1, units, channels, unit) - base
        hidden = to_step((target - base) / slope)
    return units, channels, hidden

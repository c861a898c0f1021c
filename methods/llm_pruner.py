"""LLM-Pruner (Ma et al., arXiv 2305.11627): importance of coupled structures, block-wise.

A coupled group is one KV group (q/k/v rows and o_proj columns of one kv head and its query
heads; one head for MHA) or one MLP channel (gate/up row, down_proj column). Each weight slice's
importance per channel comes from the next-token loss on a few calibration windows:
  vector    |sum_k W_k g_k|                       (per channel, as the reference code)
  element1  sum_k |W_k g_k|                       (`param_first`, the reference default)
  element2  sum_k |W_k g_k - 1/2 W_k F_kk W_k|    (`param_mix`; F = mean per-sample g^2)
or, as the paper's baselines under the same block-wise protocol, from no data:
  l2        sum_k W_k^2                           (the reference's MagnitudeImportance(p=2))
  random    a seeded uniform draw per channel of the group's root (q_proj rows, gate_proj rows)
The slices of a group are aggregated channel by channel (sum, mean, max, prod or the last slice,
the output projection), then summed over the group's channels. Every layer in the block-wise range
loses the same local share; the layers outside it stay dense.

The gradient pass runs in `precision` (float64 by default, never below float32) whatever the
model's dtype, and every product and sum after it in float64: half-precision gradients of ~1e-8
underflow, and float32 rounding noise (thread count, CPU kernels) would decide near-ties.
"""
from __future__ import annotations

from typing import Literal

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import (
    PruningPlan,
    RoundTo,
    Shapes,
    keep_top,
    local_counts,
    round_widths,
    solve_local_ratio,
)

NEEDS = "tokens"

GRADIENT = ("element1", "element2", "vector")
# (slice, dimension of the channel within the weight): rows for producers, columns for consumers.
ATTENTION_SLICES = (("self_attn.q_proj", 0), ("self_attn.k_proj", 0), ("self_attn.v_proj", 0), ("self_attn.o_proj", 1))
MLP_SLICES = (("mlp.gate_proj", 0), ("mlp.up_proj", 0), ("mlp.down_proj", 1))
PRECISION = {"float64": torch.float64, "float32": torch.float32}


def prune(model, ratio: float, calib: Calibration, *,
          importance: Literal["element1", "element2", "vector", "l2", "random"] = "element1",
          aggregation: Literal["sum", "mean", "max", "prod", "last"] = "sum",
          layer_range: list[int] | None = None,
          channel_ratio: float | None = None,
          precision: Literal["float64", "float32"] = "float64",
          round_to: RoundTo = 1) -> PruningPlan:
    """`layer_range` [start, end) defaults to the paper's 4..30 of 32 layers scaled to the model's
    depth (`default_layer_range`); `channel_ratio` (the local share each pruned layer loses, the
    paper's 25% for its "20%" row) defaults to the one whose real parameter reduction is closest to
    `ratio`. `precision` is the gradient pass's dtype: float32 is the reference's (its CPU run) and
    needs half the memory; float64 makes the choice of units independent of thread count and CPU.
    l2 and random read no calibration data; the reference's L2 reduces slices by "mean", which
    ranks as "sum" does (every group has the same slices). `round_to`: kept widths of the pruned
    layers become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    start, end = layer_range or default_layer_range(shapes.layers)
    if not 0 <= start < end <= shapes.layers:
        raise ValueError(f"layer_range {[start, end]} is outside 0..{shapes.layers} or empty")
    local = solve_local_ratio(shapes, ratio, end - start) if channel_ratio is None else channel_ratio
    units_removed, channels_removed = local_counts(shapes, local)
    layers, gradient, share = range(start, end), importance in GRADIENT, None
    if importance == "random":
        scores = random_scores(shapes, layers, calib.seed)
    else:
        per_channel, share = (slice_importance(model, calib.tokens, importance, layers, PRECISION[precision])
                              if gradient else magnitude_importance(model, layers))
        scores = {i: group_importance(per_channel[i], shapes, aggregation) for i in layers}
    # outside the range a layer stays whole (its zero scores never matter: rounding leaves it alone)
    unit_scores = [torch.zeros(shapes.kv_heads)] * shapes.layers
    channel_scores = [torch.zeros(shapes.intermediate)] * shapes.layers
    kept_units = [list(range(shapes.kv_heads))] * shapes.layers
    kept_channels = [list(range(shapes.intermediate))] * shapes.layers
    for i, (units, channels) in scores.items():
        unit_scores[i], channel_scores[i] = units, channels
        kept_units[i] = keep_top(units, units_removed)
        kept_channels[i] = keep_top(channels, channels_removed)
    plan = PruningPlan.from_units(shapes, kept_units, kept_channels, details={
        "importance": importance, "aggregation": aggregation, "attention_unit": "kv_group", "layer_range": [start, end],
        "channel_ratio": local, "precision": precision if gradient else None,
        "calibration_tokens": list(calib.tokens.shape) if gradient else None, "second_order_share": share,
        "memory_at_paper_scale": paper_scale_memory(importance, precision) if gradient else None})
    return round_widths(plan, shapes, round_to, unit_scores, channel_scores)


def default_layer_range(layers: int) -> tuple[int, int]:
    """The reference prunes layers 4..29 of LLaMA-7B's and Vicuna-7B's 32 (block_*_layer_start 4,
    _end 30); for another depth L the same share: round(4 L / 32), round(30 L / 32)."""
    return round(4 * layers / 32), round(30 * layers / 32)


def _salience(w: torch.Tensor, g: torch.Tensor, fisher: torch.Tensor | None, kind: str, dim: int) -> torch.Tensor:
    """Per-channel importance of one weight slice in float64; `dim` is the channel's dimension."""
    w, g = w.double(), g.double()
    wg = w * g
    other = 1 - dim
    if kind == "vector":
        return wg.sum(dim=other).abs()
    if kind == "element2":
        wg = wg - 0.5 * w * fisher.double() * w
    return wg.abs().sum(dim=other)


def second_order_share(w: torch.Tensor, g: torch.Tensor, fisher: torch.Tensor) -> float:
    """How large Element2's curvature term is next to its first-order term: sum|W F W / 2| / sum|W g|."""
    w, g, fisher = w.double(), g.double(), fisher.double()
    return float((0.5 * w * fisher * w).abs().sum() / (w * g).abs().sum())


def _slices(model, layers) -> dict[tuple[int, str], tuple[torch.nn.Parameter, int]]:
    return {(i, name): (model.model.layers[i].get_submodule(name).weight, dim)
            for i in layers for name, dim in ATTENTION_SLICES + MLP_SLICES}


def magnitude_importance(model, layers) -> tuple[dict[int, dict[str, torch.Tensor]], None]:
    """{layer: {slice: per-channel sum of squared weights}} in float64 (no data)."""
    out: dict[int, dict[str, torch.Tensor]] = {i: {} for i in layers}
    for (i, name), (weight, dim) in _slices(model, layers).items():
        out[i][name] = weight.detach().double().pow(2).sum(dim=1 - dim).cpu()
    return out, None


def random_scores(shapes: Shapes, layers, seed: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """{layer: (KV-group scores, MLP channel scores)}: one seeded draw per channel of the group's
    root, q_proj's rows summed over the group as the reference sums a head's channels; the
    attention roots are drawn first, then the MLP roots, as the reference visits them."""
    rng = torch.Generator().manual_seed(seed)
    attention = {i: torch.rand(shapes.heads * shapes.head_dim, generator=rng, dtype=torch.float64) for i in layers}
    mlp = {i: torch.rand(shapes.intermediate, generator=rng, dtype=torch.float64) for i in layers}
    return {i: (attention[i].view(shapes.kv_heads, -1).sum(dim=1), mlp[i]) for i in layers}


def slice_importance(model, tokens: torch.Tensor, kind: str, layers, precision: torch.dtype = torch.float64
                     ) -> tuple[dict[int, dict[str, torch.Tensor]], float | None]:
    """{layer: {slice: per-channel importance}} from autograd gradients of the next-token loss, and
    for element2 the mean `second_order_share` of the slices. The model runs in `precision` for the
    pass and is cast back afterwards (exactly: `precision` holds every value of its own dtype).

    Memory: each gradient is consumed by a hook the moment it is accumulated and then freed, so
    beyond the weights (in `precision`) only the diagonal Fisher (element2: one copy of the pruned
    layers' weights) and one layer's transient gradients are held.
    """
    dtype = next(model.parameters()).dtype
    slices = _slices(model, layers)
    flags = {p: p.requires_grad for p in model.parameters()}
    fisher: dict = {}
    shares: list[float] = []
    out: dict[int, dict[str, torch.Tensor]] = {i: {} for i in layers}

    def accumulate_fisher(key, w, g):
        square = g * g / len(tokens)
        fisher[key] = fisher[key] + square if key in fisher else square

    def consume(key, w, g):
        f = fisher.pop(key, None)
        out[key[0]][key[1]] = _salience(w.detach(), g, f, kind, slices[key][1]).cpu()
        if f is not None:
            shares.append(second_order_share(w.detach(), g, f))

    model.to(precision)
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for weight, _ in slices.values():
            weight.requires_grad_(True)
        if kind == "element2":
            for sample in tokens:  # per-sample gradients: the Fisher is the mean of their squares
                _backward(model, sample[None], slices, accumulate_fisher)
        _backward(model, tokens, slices, consume)
    finally:
        model.to(dtype)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return out, (sum(shares) / len(shares) if shares else None)


def _backward(model, ids: torch.Tensor, slices: dict, consume) -> None:
    def hook(param, key) -> None:
        consume(key, param, param.grad)
        param.grad = None

    device = next(model.parameters()).device
    hooks = [w.register_post_accumulate_grad_hook(lambda p, key=key: hook(p, key)) for key, (w, _) in slices.items()]
    try:
        ids = ids.to(device)
        model(ids, labels=ids, use_cache=False).loss.backward()
    finally:
        for hook in hooks:
            hook.remove()


def group_importance(per_channel: dict[str, torch.Tensor], shapes: Shapes, aggregation: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(KV-group scores, MLP channel scores) of one layer.

    Slices are aligned channel by channel: a kv head's `head_dim` channels line up with the same
    channels of each of its query heads (summed over the group, so for MHA this is the reference's
    alignment of q, k, v and o channels), then reduced across slices and summed over the group.
    """
    kv, g, hd = shapes.kv_heads, shapes.group_size, shapes.head_dim
    def aligned(name: str) -> torch.Tensor:
        v = per_channel[name]
        return v.view(kv, g, hd).sum(dim=1) if v.numel() == kv * g * hd else v.view(kv, hd)

    attention = _reduce(torch.stack([aligned(name) for name, _ in ATTENTION_SLICES]), aggregation).sum(dim=1)
    mlp = _reduce(torch.stack([per_channel[name] for name, _ in MLP_SLICES]), aggregation)
    return attention, mlp


def _reduce(stacked: torch.Tensor, aggregation: str) -> torch.Tensor:
    if aggregation == "sum":
        return stacked.sum(dim=0)
    if aggregation == "mean":
        return stacked.mean(dim=0)
    if aggregation == "max":
        return stacked.max(dim=0).values
    if aggregation == "prod":
        return stacked.prod(dim=0)
    return stacked[-1]


# LLaMA-7B, the paper's model: what the report's memory estimate is for.
LLAMA_7B = Shapes(layers=32, hidden=4096, heads=32, kv_heads=32, head_dim=128, intermediate=11008)
LLAMA_7B_VOCAB = 32000


def paper_scale_memory(importance: str, precision: str) -> dict:
    """`memory_estimate_gb` on LLaMA-7B with the paper's layer range, for the report's cost notes."""
    start, end = default_layer_range(LLAMA_7B.layers)
    return dict(memory_estimate_gb(LLAMA_7B, LLAMA_7B_VOCAB, end - start, importance, PRECISION[precision].itemsize),
                model="LLaMA-7B", precision=precision)


def memory_estimate_gb(shapes: Shapes, vocab: int, n_pruned_layers: int, importance: str,
                       value_bytes: int, tokens: int = 640) -> dict[str, float]:
    """What the gradient pass holds, in GB, every value in `value_bytes` (its precision): the
    weights, element2's Fisher over the pruned layers, one layer's transient gradients, and the
    activations kept for backward."""
    per_layer = shapes.layer_params
    weights = (shapes.layers * per_layer + 2 * vocab * shapes.hidden) * value_bytes
    fisher = n_pruned_layers * per_layer * value_bytes if importance == "element2" else 0
    gradients = per_layer * value_bytes
    # per token and layer roughly 16 hidden-sized and 3 intermediate-sized tensors, plus the logits
    activations = tokens * (shapes.layers * (16 * shapes.hidden + 3 * shapes.intermediate) + 2 * vocab) * value_bytes
    parts = {"weights": weights, "fisher": fisher, "gradients": gradients, "activations": activations}
    return {k: v / 1e9 for k, v in dict(parts, total=sum(parts.values())).items()}

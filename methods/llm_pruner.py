"""LLM-Pruner (Ma et al., arXiv 2305.11627): gradient-based importance of coupled structures.

A coupled group is one KV group (q/k/v rows and o_proj columns of one kv head and its query
heads; one head for MHA) or one MLP channel (gate/up row, down_proj column). Each weight slice's
importance comes from the next-token loss on a few calibration windows:
  vector    |sum_k W_k g_k|                       (per channel, as the reference code)
  element1  sum_k |W_k g_k|                       (`param_first`, the reference default)
  element2  sum_k |W_k g_k - 1/2 W_k F_kk W_k|    (`param_mix`; F = mean per-sample g^2)
The slices of a group are aggregated channel by channel (sum, mean, max, prod or the last slice,
the output projection), then summed over the group's channels. Every layer in the block-wise range
loses the same local share; the first and last layers stay dense.
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

# (slice, dimension of the channel within the weight): rows for producers, columns for consumers.
ATTENTION_SLICES = (("self_attn.q_proj", 0), ("self_attn.k_proj", 0), ("self_attn.v_proj", 0), ("self_attn.o_proj", 1))
MLP_SLICES = (("mlp.gate_proj", 0), ("mlp.up_proj", 0), ("mlp.down_proj", 1))


def prune(model, ratio: float, calib: Calibration, *,
          importance: Literal["element1", "element2", "vector"] = "element1",
          aggregation: Literal["sum", "mean", "max", "prod", "last"] = "sum",
          layer_range: list[int] | None = None,
          channel_ratio: float | None = None,
          round_to: RoundTo = 1) -> PruningPlan:
    """`layer_range` [start, end) defaults to the paper's 4..30 of 32 layers scaled to the model's
    depth; `channel_ratio` (the local share each pruned layer loses, the paper's 25% for its "20%"
    row) defaults to the one whose real parameter reduction is closest to `ratio`. `round_to`: kept
    widths of the pruned layers become multiples of it (see round_widths)."""
    shapes = Shapes.of(model)
    start, end = layer_range or default_layer_range(shapes.layers)
    if not 0 <= start < end <= shapes.layers:
        raise ValueError(f"layer_range {[start, end]} is outside 0..{shapes.layers} or empty")
    local = solve_local_ratio(shapes, ratio, end - start) if channel_ratio is None else channel_ratio
    units_removed, channels_removed = local_counts(shapes, local)
    per_channel, share = slice_importance(model, calib.tokens, importance, range(start, end))
    kept_units, kept_channels, unit_scores, channel_scores = [], [], [], []
    for i in range(shapes.layers):
        if start <= i < end:
            units, channels = group_importance(per_channel[i], shapes, aggregation)
            kept_units.append(keep_top(units, units_removed))
            kept_channels.append(keep_top(channels, channels_removed))
        else:  # outside the range a layer stays whole, and rounding leaves a whole layer alone
            units, channels = torch.zeros(shapes.kv_heads), torch.zeros(shapes.intermediate)
            kept_units.append(list(range(shapes.kv_heads)))
            kept_channels.append(list(range(shapes.intermediate)))
        unit_scores.append(units)
        channel_scores.append(channels)
    plan = PruningPlan.from_units(shapes, kept_units, kept_channels, details={
        "importance": importance, "aggregation": aggregation, "layer_range": [start, end],
        "channel_ratio": local, "calibration_tokens": list(calib.tokens.shape), "second_order_share": share,
        "memory_at_paper_scale": paper_scale_memory(importance)})
    return round_widths(plan, shapes, round_to, unit_scores, channel_scores)


def default_layer_range(layers: int) -> tuple[int, int]:
    """The paper prunes layers 4..29 of LLaMA-7B's 32 (block_*_layer_start 4, _end 30)."""
    return round(4 * layers / 32), round(30 * layers / 32)


def _salience(w: torch.Tensor, g: torch.Tensor, fisher: torch.Tensor | None, kind: str, dim: int) -> torch.Tensor:
    """Per-channel importance of one weight slice; `dim` is the channel's dimension."""
    wg = (w * g).double()
    other = 1 - dim
    if kind == "vector":
        return wg.sum(dim=other).abs()
    if kind == "element2":
        wg = wg - 0.5 * (w * fisher * w).double()
    return wg.abs().sum(dim=other)


def second_order_share(w: torch.Tensor, g: torch.Tensor, fisher: torch.Tensor) -> float:
    """How large Element2's curvature term is next to its first-order term: sum|W F W / 2| / sum|W g|."""
    return float((0.5 * w * fisher * w).abs().sum() / (w * g).abs().sum())


def slice_importance(model, tokens: torch.Tensor, kind: str, layers
                     ) -> tuple[dict[int, dict[str, torch.Tensor]], float | None]:
    """{layer: {slice: per-channel importance}} from autograd gradients of the next-token loss, and
    for element2 the mean `second_order_share` of the slices.

    Memory: each gradient is consumed by a hook the moment it is accumulated and then freed, so
    beyond the weights only the diagonal Fisher (element2: one copy of the pruned layers' weights)
    and one layer's transient gradients are held.
    """
    slices = {(i, name): (model.model.layers[i].get_submodule(name).weight, dim)
              for i in layers for name, dim in ATTENTION_SLICES + MLP_SLICES}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for weight, _ in slices.values():
        weight.requires_grad_(True)
    fisher: dict = {}
    shares: list[float] = []
    out: dict[int, dict[str, torch.Tensor]] = {i: {} for i in layers}
    def accumulate_fisher(key, w, g):
        g = g.float()  # half-precision squares of small gradients underflow
        if key in fisher:
            fisher[key].addcmul_(g, g, value=1 / len(tokens))
        else:
            fisher[key] = g * g / len(tokens)

    try:
        if kind == "element2":
            for sample in tokens:  # per-sample gradients: the Fisher is the mean of their squares
                _backward(model, sample[None], slices, accumulate_fisher)

        def consume(key, w, g):
            f = fisher.pop(key, None)
            out[key[0]][key[1]] = _salience(w.detach(), g, f, kind, slices[key][1])
            if f is not None:
                shares.append(second_order_share(w.detach(), g, f))

        _backward(model, tokens, slices, consume)
    finally:
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


def paper_scale_memory(importance: str) -> dict:
    """`memory_estimate_gb` on LLaMA-7B with the paper's layer range, for the report's cost notes."""
    start, end = default_layer_range(LLAMA_7B.layers)
    return dict(memory_estimate_gb(LLAMA_7B, LLAMA_7B_VOCAB, end - start, importance), model="LLaMA-7B")


def memory_estimate_gb(shapes: Shapes, vocab: int, n_pruned_layers: int, importance: str,
                       weight_bytes: int = 2, tokens: int = 640) -> dict[str, float]:
    """What computing the importance holds, in GB: the weights, element2's float32 Fisher over the
    pruned layers, one layer's transient gradients, and the activations kept for backward."""
    per_layer = shapes.layer_params
    weights = (shapes.layers * per_layer + 2 * vocab * shapes.hidden) * weight_bytes
    fisher = n_pruned_layers * per_layer * 4 if importance == "element2" else 0
    gradients = per_layer * weight_bytes
    # per token and layer roughly 16 hidden-sized and 3 intermediate-sized tensors, plus the logits
    activations = tokens * (shapes.layers * (16 * shapes.hidden + 3 * shapes.intermediate) + 2 * vocab) * 4
    parts = {"weights": weights, "fisher": fisher, "gradients": gradients, "activations": activations}
    return {k: v / 1e9 for k, v in dict(parts, total=sum(parts.values())).items()}

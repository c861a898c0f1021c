"""Model surgery: physically remove (or, for debugging, mask) attention heads and MLP channels.

Removal slices q/k/v rows, o_proj columns, gate/up rows and down_proj columns; layers may end
with different widths. Masking zeroes the same rows and columns but keeps the shapes (FLAP's
`--unstr`); both give the same outputs. With bias compensation the removed inputs' mean
contribution W[:, removed] @ mean[removed] becomes the output projection's bias.

Hidden channels (`PruningPlan.hidden_channels`) leave the whole residual stream: the embedding's
columns, every norm's weight, the input columns of q/k/v/gate/up, the output rows of o_proj/down_proj
(with their biases) and the LM head's columns; the config's hidden_size follows. RMSNorm divides by
the root mean square over the channels it sees, so removal is not the dense model with those
channels zeroed (the mean would still run over all of them): it equals the dense model with the
channels zeroed *and* every RMSNorm's mean taken over the kept channels only (tests/test_minitron.py
checks this on every family). Hidden removal has no masked form in standard modules.
An embedding scale that follows the hidden size (Gemma's sqrt(hidden), rebuilt from the config on
reload) is set to sqrt(kept hidden) and the embedding rows absorb sqrt(dense / kept), so the
embedding's output is the dense model's; a tied LM head then sees those rows too, which the final
norm's weight undoes. The pruned model is thus a plain architecture of the smaller hidden size.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from ..calibration.activations import ActivationStats
from ..sources.models import head_dim_of
from .structure import LayerKeep, PruningPlan

__all__ = ["RemovedAttention", "apply_plan", "layers_removed", "resize_layer", "hidden_removal_problems",
           "HIDDEN_INPUTS", "HIDDEN_OUTPUTS"]

# Projections that read the residual stream (hidden = input columns) and that write it (output rows).
HIDDEN_INPUTS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
HIDDEN_OUTPUTS = ("self_attn.o_proj", "mlp.down_proj")
# Per-head norms inside the attention (Qwen3, Gemma-3): head_dim wide, untouched by the hidden size.
HEAD_NORM_WEIGHTS = ("self_attn.q_norm.weight", "self_attn.k_norm.weight")


class RemovedAttention(nn.Module):
    """An attention block with every head removed: its output is the o_proj bias alone.

    `o_proj` stays a Linear with zero inputs, so the checkpoint keys (and the compensation bias)
    are where they were.
    """

    def __init__(self, hidden: int, layer_idx: int, dtype=None, device=None):
        super().__init__()
        self.layer_idx = layer_idx
        self.o_proj = nn.Linear(0, hidden, bias=True, dtype=dtype, device=device)
        nn.init.zeros_(self.o_proj.bias)

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None,
                past_key_values=None, **kwargs):
        if past_key_values is not None:
            # Keep the cache's length bookkeeping for this layer (generation reads positions from
            # it) with a one-element placeholder per token.
            b, s = hidden_states.shape[:2]
            dummy = hidden_states.new_zeros(b, 1, s, 1)
            past_key_values.update(dummy, dummy, self.layer_idx)
        return self.o_proj(hidden_states[..., :0]), None


def _channels(heads: list[int], head_dim: int) -> torch.Tensor:
    return torch.tensor([h * head_dim + d for h in heads for d in range(head_dim)], dtype=torch.long)


def _removed(n: int, kept: torch.Tensor) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[kept] = False
    return torch.nonzero(mask).flatten()


def _compensation(out_proj: nn.Linear, removed: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
    """The output bias after removing `removed` inputs: old bias + W[:, removed] @ mean[removed]."""
    bias = out_proj.bias.detach().double() if out_proj.bias is not None else 0
    if mean is not None and removed.numel():
        bias = bias + out_proj.weight.detach()[:, removed].double() @ mean[removed].double().to(out_proj.weight.device)
    return bias


def _slice_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
                  bias: torch.Tensor | None = None) -> nn.Linear:
    w = linear.weight.detach()
    w = w[rows] if rows is not None else w
    w = w[:, cols] if cols is not None else w
    if bias is None and linear.bias is not None:
        bias = linear.bias.detach()[rows] if rows is not None else linear.bias.detach()
    new = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias is not None:
            new.bias.copy_(bias.to(w.dtype) if isinstance(bias, torch.Tensor) else torch.full_like(new.bias, bias))
    return new


def _mask_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None,
                 bias: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        if rows is not None:
            linear.weight[rows] = 0
            if linear.bias is not None:
                linear.bias[rows] = 0
        if cols is not None:
            linear.weight[:, cols] = 0
        if bias is not None:
            if linear.bias is None:
                linear.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype,
                                                       device=linear.weight.device))
            linear.bias.copy_(bias.to(linear.weight.dtype) if isinstance(bias, torch.Tensor)
                              else torch.full_like(linear.bias, bias))


def _prune_attention(layer: nn.Module, idx: int, keep: LayerKeep, head_dim: int,
                     mean: torch.Tensor | None, mask: bool) -> None:
    attn = layer.self_attn
    n_heads = attn.q_proj.out_features // head_dim
    n_kv = attn.k_proj.out_features // head_dim
    q_keep, kv_keep = _channels(keep.q_heads, head_dim), _channels(keep.kv_heads, head_dim)
    q_drop, kv_drop = _removed(n_heads * head_dim, q_keep), _removed(n_kv * head_dim, kv_keep)
    if not q_drop.numel() and not kv_drop.numel():
        return
    bias = _compensation(attn.o_proj, q_drop, mean) if mean is not None else None
    if mask:
        _mask_linear(attn.q_proj, rows=q_drop)
        _mask_linear(attn.k_proj, rows=kv_drop)
        _mask_linear(attn.v_proj, rows=kv_drop)
        _mask_linear(attn.o_proj, cols=q_drop, bias=bias)
        return
    if not keep.q_heads:
        removed = RemovedAttention(attn.o_proj.out_features, idx, attn.o_proj.weight.dtype, attn.o_proj.weight.device)
        full = _compensation(attn.o_proj, q_drop, mean)
        if isinstance(full, torch.Tensor):
            removed.o_proj.bias.copy_(full)
        layer.self_attn = removed
        return
    attn.q_proj = _slice_linear(attn.q_proj, rows=q_keep)
    attn.k_proj = _slice_linear(attn.k_proj, rows=kv_keep)
    attn.v_proj = _slice_linear(attn.v_proj, rows=kv_keep)
    attn.o_proj = _slice_linear(attn.o_proj, cols=q_keep, bias=bias)
    attn.num_key_value_groups = len(keep.q_heads) // len(keep.kv_heads)


def _prune_mlp(mlp: nn.Module, keep: LayerKeep, mean: torch.Tensor | None, mask: bool) -> None:
    kept = torch.tensor(keep.channels, dtype=torch.long)
    drop = _removed(mlp.down_proj.in_features, kept)
    if not drop.numel():
        return
    bias = _compensation(mlp.down_proj, drop, mean) if mean is not None else None
    if mask:
        _mask_linear(mlp.gate_proj, rows=drop)
        _mask_linear(mlp.up_proj, rows=drop)
        _mask_linear(mlp.down_proj, cols=drop, bias=bias)
        return
    mlp.gate_proj = _slice_linear(mlp.gate_proj, rows=kept)
    mlp.up_proj = _slice_linear(mlp.up_proj, rows=kept)
    mlp.down_proj = _slice_linear(mlp.down_proj, cols=kept, bias=bias)


def _mask_layer(layer: nn.Module) -> None:
    """A decoder layer that adds nothing to the residual stream: its output projections (and their
    biases) are zero, so it passes its input through unchanged, as if it were removed."""
    for linear in (layer.self_attn.o_proj, layer.mlp.down_proj):
        linear.weight.zero_()
        if linear.bias is not None:
            linear.bias.zero_()


def _remove_layers(model, removed: list[int]) -> None:
    """Drop whole decoder layers and renumber the rest, so that the KV cache, the per-layer
    attention types (sliding windows) and the config describe the layers that remain."""
    config = model.config
    kept = [i for i in range(len(model.model.layers)) if i not in removed]
    model.model.layers = nn.ModuleList(model.model.layers[i] for i in kept)
    for new_index, layer in enumerate(model.model.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in kept]
    config.num_hidden_layers = len(kept)


@contextmanager
def layers_removed(model, removed: list[int]):
    """The model without the decoder layers `removed`, as `apply_plan` would leave it, for the
    duration of the block; then every layer, index and config value is put back (depth methods
    score candidate removals this way without copying the weights)."""
    config, layers = model.config, model.model.layers
    saved = (config.num_hidden_layers, getattr(config, "layer_types", None))
    indices = [(m, m.layer_idx) for m in layers.modules() if hasattr(m, "layer_idx")]
    _remove_layers(model, removed)
    try:
        yield model
    finally:
        model.model.layers = layers
        config.num_hidden_layers = saved[0]
        if saved[1] is not None:
            config.layer_types = saved[1]
        for module, index in indices:
            module.layer_idx = index


# --- hidden size -------------------------------------------------------------------------------

def _layer_norms(layer: nn.Module) -> dict[str, nn.Module]:
    """The decoder layer's own norms (pre/post norms; not the attention's per-head q/k norms)."""
    return {name: module for name, module in layer.named_children()
            if name not in ("self_attn", "mlp") and isinstance(getattr(module, "weight", None), nn.Parameter)}


def hidden_removal_problems(model) -> list[str]:
    """What in `model` the hidden-size surgery would not cut correctly: a parameter it does not know
    along the hidden axis, or a norm that is not an RMSNorm (a bias, or a mean it subtracts)."""
    layers = model.model.layers
    known = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"}
    for i, layer in enumerate(layers):
        prefix = f"model.layers.{i}."
        known |= {prefix + n for n in HEAD_NORM_WEIGHTS}
        known |= {f"{prefix}{path}.{p}" for path in (*HIDDEN_INPUTS, *HIDDEN_OUTPUTS) for p in ("weight", "bias")}
        known |= {f"{prefix}{name}.weight" for name in _layer_norms(layer)}
    problems = [f"{name} {tuple(p.shape)}" for name, p in model.named_parameters() if name not in known]
    norms = [model.model.norm, *(n for layer in layers for n in _layer_norms(layer).values())]
    problems += [f"{type(n).__name__} has a bias (a LayerNorm, whose mean removal couples every channel)"
                 for n in norms if getattr(n, "bias", None) is not None]
    return problems


def _offset_norm(norm: nn.Module) -> bool:
    """Whether `norm` scales by (1 + weight) (Gemma) rather than by weight: with a zero weight its
    output is not zero."""
    saved = norm.weight.detach().clone()
    norm.weight.zero_()
    out = norm(torch.ones(1, saved.numel(), dtype=saved.dtype, device=saved.device))
    norm.weight.copy_(saved)
    return bool(out.abs().max() > 0)


def _slice_norm(norm: nn.Module, kept: torch.Tensor, scale: float = 1.0) -> None:
    """Keep the `kept` channels of a norm's weight; `scale` multiplies its output (an offset norm's
    1 + weight is scaled, not its weight)."""
    w = norm.weight.detach()[kept]
    if scale != 1.0:
        w = (1 + w) * scale - 1 if _offset_norm(norm) else w * scale
    norm.weight = nn.Parameter(w.clone())


def _submodule(layer: nn.Module, path: str) -> tuple[nn.Module, str, nn.Module] | None:
    parent_path, _, name = path.rpartition(".")
    parent = layer.get_submodule(parent_path)
    child = getattr(parent, name, None)
    return (parent, name, child) if child is not None else None


def _remove_hidden(model, kept_channels: list[int]) -> None:
    """Remove every residual channel not in `kept_channels` (see the module docstring)."""
    config = model.config
    head_dim = head_dim_of(config)  # fixed before hidden_size changes: some configs derive it from it
    kept = torch.tensor(kept_channels, dtype=torch.long)
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head.weight is embed.weight
    rescale = 1.0
    if hasattr(embed, "embed_scale"):  # sqrt(hidden) from the config: follow it, the rows absorb the change
        rescale = float(embed.embed_scale) / len(kept_channels) ** 0.5
        embed.embed_scale.fill_(len(kept_channels) ** 0.5)
        if hasattr(embed, "scalar_embed_scale"):
            embed.scalar_embed_scale = len(kept_channels) ** 0.5
    for layer in model.model.layers:
        for path, rows in [(p, False) for p in HIDDEN_INPUTS] + [(p, True) for p in HIDDEN_OUTPUTS]:
            found = _submodule(layer, path)
            if found is not None:  # a RemovedAttention has only its o_proj
                parent, name, linear = found
                setattr(parent, name, _slice_linear(linear, rows=kept) if rows else _slice_linear(linear, cols=kept))
        for norm in _layer_norms(layer).values():
            _slice_norm(norm, kept)
    # a tied head multiplies by the rescaled rows: the final norm's output is divided back
    _slice_norm(model.model.norm, kept, 1 / rescale if tied else 1.0)
    embed.weight = nn.Parameter(embed.weight.detach()[:, kept] * rescale)
    embed.embedding_dim = len(kept_channels)
    if tied:
        head.weight = embed.weight
    else:
        head.weight = nn.Parameter(head.weight.detach()[:, kept].clone())
    head.in_features = len(kept_channels)
    config.head_dim = head_dim
    config.hidden_size = len(kept_channels)


@torch.no_grad()
def apply_plan(model, plan: PruningPlan, stats: ActivationStats | None = None, mask: bool = False):
    """Apply `plan` in place (removal, or masking with `mask=True`) and return the model."""
    if plan.compensate and stats is None:
        raise ValueError("bias compensation needs the activation statistics (their means)")
    hidden = model.config.hidden_size
    prune_hidden = plan.hidden_channels is not None and plan.hidden_channels != list(range(hidden))
    if prune_hidden:
        if mask:
            raise ValueError("hidden-size pruning cannot be masked: RMSNorm divides by the mean square over all "
                             "channels, so zeroed channels would still change it; use removal (mask: false)")
        if plan.hidden_channels[-1] >= hidden:
            raise ValueError(f"hidden_channels index {plan.hidden_channels[-1]} is outside the hidden size {hidden}")
        if len(plan.hidden_channels) % model.config.num_attention_heads:
            raise ValueError(f"{len(plan.hidden_channels)} hidden channels are not a multiple of the "
                             f"{model.config.num_attention_heads} attention heads, which transformers requires of a "
                             "LLaMA or Gemma-3 config (the checkpoint would not save or load)")
        problems = hidden_removal_problems(model)
        if problems:
            from ..sources.families import family_name

            raise ValueError(f"{family_name(model.config.model_type)} ({type(model).__name__}) cannot lose hidden "
                             f"channels: the surgery does not cut {'; '.join(problems[:5])}. Hidden-size removal "
                             "handles the embedding, RMSNorms, the seven projections, per-head q/k norms and the LM "
                             "head; prune the other axes (axes: [heads, mlp])")
    head_dim = head_dim_of(model.config)
    for i, (layer, keep) in enumerate(zip(model.model.layers, plan.layers)):
        if i in plan.removed_layers:
            if mask:
                _mask_layer(layer)
            continue
        attn_mean = stats.mean["attn"][i] if plan.compensate else None
        mlp_mean = stats.mean["mlp"][i] if plan.compensate else None
        _prune_attention(layer, i, keep, head_dim, attn_mean, mask)
        _prune_mlp(layer.mlp, keep, mlp_mean, mask)
    if plan.removed_layers and not mask:
        _remove_layers(model, plan.removed_layers)
    if prune_hidden:
        _remove_hidden(model, plan.hidden_channels)
    return model


def resize_layer(layer: nn.Module, idx: int, shape: dict, head_dim: int) -> None:
    """Give a freshly built (dense) layer the shapes recorded in a pruned checkpoint."""
    attn, mlp = layer.self_attn, layer.mlp
    hidden, dtype, device = attn.o_proj.out_features, attn.o_proj.weight.dtype, attn.o_proj.weight.device
    linear = lambda i, o, b: nn.Linear(i, o, bias=b, dtype=dtype, device=device)  # noqa: E731
    if shape["heads"] == 0:
        layer.self_attn = RemovedAttention(hidden, idx, dtype, device)
    else:
        q, kv = shape["heads"] * head_dim, shape["kv_heads"] * head_dim
        attn.q_proj = linear(hidden, q, attn.q_proj.bias is not None)
        attn.k_proj = linear(hidden, kv, attn.k_proj.bias is not None)
        attn.v_proj = linear(hidden, kv, attn.v_proj.bias is not None)
        attn.o_proj = linear(q, hidden, shape["o_proj_bias"])
        attn.num_key_value_groups = shape["heads"] // shape["kv_heads"]
    c = shape["channels"]
    mlp.gate_proj = linear(hidden, c, mlp.gate_proj.bias is not None)
    mlp.up_proj = linear(hidden, c, mlp.up_proj.bias is not None)
    mlp.down_proj = linear(c, hidden, shape["down_proj_bias"])

"""Model families: which decoder layouts the pruning surgery cuts correctly, judged from a model's
config (never its weights) before any job.

A family is supported when every method, the surgery, masking, bias compensation, checkpoints,
LoRA recovery and the evaluation have been tested on a tiny random model of it
(tests/test_families.py). Any other architecture is refused with its family, what in its layout is
missing or unsupported, and the supported list.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SUPPORTED", "LLAMA_MODULES", "family_name", "layout_problems", "refusal", "meta_model"]

# model_type -> family, for the families tested with every method
SUPPORTED = {
    "llama": "LLaMA architecture",  # LLaMA-1/2/3, SmolLM2 and others: the model_type names a layout
    "mistral": "Mistral",
    "qwen2": "Qwen2/Qwen2.5",
    "qwen3": "Qwen3",
    "gemma2": "Gemma-2",
    "gemma3_text": "Gemma-3 (text)",
}
# Families users bring whose layout the surgery does not cut; named so that the refusal names them.
REFUSED = {
    "olmo2": "OLMo-2",
    "phi3": "Phi-3",
    "mixtral": "Mixtral",
    "qwen2_moe": "Qwen2-MoE",
    "qwen3_moe": "Qwen3-MoE",
    "gemma3": "Gemma-3 (multimodal)",
}
# What every decoder layer must have for structured pruning of heads and MLP channels.
LLAMA_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
# Norms inside the attention that are kept whole: fine when shared by every head (one head's width).
HEAD_NORMS = ("self_attn.q_norm", "self_attn.k_norm")


def family_name(model_type: str) -> str:
    return SUPPORTED.get(model_type) or REFUSED.get(model_type) or model_type


def meta_model(config) -> nn.Module:
    """The model of `config` on the meta device: its modules and shapes, no memory."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def layout_problems(model: nn.Module) -> list[str]:
    """What in the decoder layers the surgery cannot cut: missing LLaMA-style projections (with what
    the layer has instead) and attention norms that span several heads."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        children = ", ".join(n for n, _ in getattr(model, "model", model).named_children())
        return [f"it has no decoder layers at model.layers (model has {children})"]
    modules = dict(layers[0].named_modules())
    problems = []
    missing = [m for m in LLAMA_MODULES if m not in modules]
    if missing:
        parents = dict.fromkeys(m.split(".")[0] for m in missing)
        instead = [f"{p} is {type(modules[p]).__name__} with {', '.join(n for n, _ in modules[p].named_children())}"
                   for p in parents if p in modules]
        problems.append("decoder layers lack " + ", ".join(missing) + (f" ({'; '.join(instead)})" if instead else ""))
    head_dim = getattr(modules.get("self_attn"), "head_dim", None)
    for name in HEAD_NORMS:
        norm = modules.get(name)
        width = getattr(norm, "weight", None)
        if width is not None and head_dim and width.numel() != head_dim:
            problems.append(f"{name} normalises {width.numel()} channels together ({width.numel() // head_dim} heads "
                            f"of {head_dim}), so removing a head would change how the others are scaled")
    return problems


def refusal(config) -> str | None:
    """Why a model of `config` cannot be pruned correctly (family, what is missing or unsupported,
    the supported families), or None when it can."""
    try:
        model = meta_model(config)
    except ValueError:  # transformers has no causal-LM class for this config
        architecture, problems = type(config).__name__, ["it is not a causal language model"]
    else:
        architecture, problems = type(model).__name__, layout_problems(model)
    if config.model_type in SUPPORTED and not problems:
        return None
    why = "; ".join(problems) or "its family is not among those tested with every method and the surgery"
    supported = ", ".join(f"{name} ({model_type})" for model_type, name in SUPPORTED.items())
    return (f"{family_name(config.model_type)} ({architecture}, model_type {config.model_type!r}) cannot be "
            f"pruned correctly: {why}. Supported families: {supported}")

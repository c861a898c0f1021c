"""Pruned checkpoints: safetensors + config + tokenizer + `pruning.json` (per-layer shapes,
file sha256s, provenance). `load_pruned(path)` rebuilds the model in a fresh process; a dense HF
directory (one without `pruning.json`) loads through the same call. No pickle anywhere.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..io import atomic_dir, read_json, write_json
from ..sources.datasets import sha256_file
from ..sources.models import head_dim_of

__all__ = ["CheckpointError", "layer_shapes", "plain_config", "save_pruned", "load_pruned", "verify_checkpoint",
           "content_hash"]

FORMAT = "prunebench.pruned/1"
INFO = "pruning.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match its recorded sha256."""


def layer_shapes(model) -> list[dict[str, Any]]:
    head_dim = head_dim_of(model.config)
    shapes = []
    for layer in model.model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        heads = attn.o_proj.in_features // head_dim
        shapes.append({
            "heads": heads,
            "kv_heads": attn.k_proj.out_features // head_dim if heads else 0,
            "channels": mlp.down_proj.in_features,
            "o_proj_bias": attn.o_proj.bias is not None,
            "down_proj_bias": mlp.down_proj.bias is not None,
        })
    return shapes


def plain_config(model):
    """The standard HF config describing `model` when every layer has the same shapes (uniform width
    pruning, e.g. Minitron): its weights then load with plain `from_pretrained`, no pruning.json.
    Refuses a model whose layers differ, lack attention, or carry output biases its class lacks."""
    import copy

    shapes = layer_shapes(model)
    first = shapes[0]
    plain = {"heads": first["heads"], "kv_heads": first["kv_heads"], "channels": first["channels"],
             "o_proj_bias": bool(getattr(model.config, "attention_bias", False)),
             "down_proj_bias": bool(getattr(model.config, "mlp_bias", False))}
    odd = [i for i, shape in enumerate(shapes) if shape != plain or not shape["heads"]]
    if odd:
        raise ValueError(f"layers {odd} differ from layer 0's {plain} (or have no attention / an added output "
                         "bias): no standard config describes this model; load it with load_pruned")
    config = copy.deepcopy(model.config)
    config.num_attention_heads, config.num_key_value_heads = first["heads"], first["kv_heads"]
    config.intermediate_size = first["channels"]
    config.head_dim = head_dim_of(model.config)
    return config


def save_pruned(model, tokenizer, path: str | os.PathLike, info: dict[str, Any] | None = None) -> None:
    """Write the checkpoint into a temporary folder and rename it: `path` is complete or absent."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))}
        write_json(tmp / INFO, {"format": FORMAT, "layers": layer_shapes(model), "files": files, **(info or {})})


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check that every weight file exists with its recorded sha256; returns the info or {} (dense)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"no model checkpoint at {path} (config.json missing)")
    if not any(path.glob("*.safetensors")):
        raise CheckpointError(f"checkpoint {path} has no .safetensors weights; pickled weights (.bin, .pt) are "
                              "never loaded, since unpickling can run code")
    info_file = path / INFO if (path / INFO).is_file() else path / "manifest.json"
    if not info_file.is_file():
        return {}
    info = read_json(info_file)
    for name, expected in info["files"].items():
        if not name.endswith(".safetensors"):
            continue
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        actual = sha256_file(file)
        if actual != expected:
            raise CheckpointError(f"checkpoint {path} is corrupt or was modified: {name} sha256 {actual} "
                                  f"!= recorded {expected}")
    return info if info_file.name == INFO else {}


def content_hash(path: str | os.PathLike) -> str:
    """sha256 of what a model computes with: the weight files' sha256 (as recorded in pruning.json or
    the dense manifest when saved; loading verifies them) and config.json. Two checkpoints with the
    same hash hold bit-identical models, whatever method produced them."""
    path = Path(path)
    info = read_json(path / INFO if (path / INFO).is_file() else path / "manifest.json")
    weights = {name: sha for name, sha in info["files"].items() if name.endswith(".safetensors")}
    digest = hashlib.sha256(json.dumps(weights, sort_keys=True).encode())
    digest.update((path / "config.json").read_bytes())
    return digest.hexdigest()


def load_pruned(path: str | os.PathLike, device: str | torch.device = "cpu", verify: bool = True):
    """The model stored at `path` (pruned or dense), in eval mode."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    info = verify_checkpoint(path) if verify else (read_json(path / INFO) if (path / INFO).is_file() else {})
    if not info:
        return AutoModelForCausalLM.from_pretrained(path, device_map=device, use_safetensors=True).eval()
    if info.get("format") != FORMAT:
        raise CheckpointError(f"{path / INFO}: unknown format {info.get('format')!r}, expected {FORMAT!r}")
    from .surgery import resize_layer

    config = AutoConfig.from_pretrained(path)
    # Parameters on the meta device, buffers built for real by the model's own constructor: the
    # non-persistent ones (rotary frequencies, Gemma's embedding scale, ...) are not in the file.
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config)
    head_dim = head_dim_of(config)
    for i, (layer, shape) in enumerate(zip(model.model.layers, info["layers"])):
        resize_layer(layer, i, shape, head_dim)
    state = {}
    for name in info["files"]:
        try:
            state.update(load_file(str(path / name), device=str(device)))
        except Exception as err:  # safetensors reports truncation as a header/size error
            raise CheckpointError(f"checkpoint {path}: cannot read {name}: {err}") from err
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"checkpoint {path} does not match its pruning.json: missing "
                              f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    if tied:
        model.lm_head.weight = model.model.embed_tokens.weight
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:
        raise CheckpointError(f"checkpoint {path}: tensors not restored: {leftover[:5]}")
    return model.to(device).eval()

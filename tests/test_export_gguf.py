"""GGUF export: llama.cpp (through llama-cpp-python) computes what PyTorch computes, per position,
on tiny random models of every exported family and every kind of cut the methods make (per-layer
widths, bias compensation, removed layers, a hidden size, layers left without heads or MLP
channels), after a LoRA merge and a checkpoint round trip; llama.cpp's quantizer runs on the file;
what llama.cpp cannot compute is refused with the reason."""
from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_model, tokens

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import collect_activation_stats
from prunebench.export.gguf import ExportError, write_gguf
from prunebench.export.llamacpp import open_model, quantize, window_nll
from prunebench.pruning import prune_model
from prunebench.pruning.checkpoint import load_pruned, save_pruned
from prunebench.pruning.structure import LayerKeep, PruningPlan
from prunebench.pruning.surgery import apply_plan

# Per-position NLL, llama.cpp vs PyTorch: with float32 weights (f32 GGUF) and float32 attention
# (EXACT: no flash attention, whose K/V llama.cpp casts to f16, and an f32 KV cache) only the order
# of float32 sums differs (measured: 2e-6 at most). An f16 file under llama.cpp's default runtime
# (flash attention, f16 KV cache) rounds every matrix and K/V to 11 bits: the looser F16_ATOL
# (measured: 2.3e-3 on the dense tiny model, whose mean NLL is 11.3).
F32_ATOL = 1e-4
F16_ATOL = 1e-2
# Gemma-3's GELU: ggml's CPU kernel reads it from a float16 table (GGML_GELU_FP16 in
# ggml/src/ggml-cpu/vec.h), input and output rounded to f16, even in an f32 file (measured: 8e-4).
GEMMA3_ATOL = 2e-3
WINDOW = 48
EXACT = {"flash_attn": False, "kv_type": "f32"}
COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=512, initializer_range=0.1,
              bos_token_id=1, eos_token_id=2, pad_token_id=2)


def family_model(cls: str, seed: int = 0, **extra):
    """A tiny random model of a transformers config class; 1-D parameters (norms, biases) randomized
    so that a wrong norm or bias placement shows."""
    import transformers
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(getattr(transformers, cls)(**{**COMMON, **extra})).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


def torch_nll(model, ids: list[int]) -> np.ndarray:
    """The reference: one plain forward pass, log-softmax over the vocabulary."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].double()
    return -logits.log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0].numpy()


def llama_nll(path, ids: list[int], exact: bool = True) -> np.ndarray:
    """llama.cpp's NLL; `exact`: float32 attention (no flash attention, whose K/V are cast to f16)."""
    llm = open_model(path, n_threads=1, n_ctx=64, **(EXACT if exact else {}))
    try:
        return window_nll(llm, ids)
    finally:
        llm.close()


def window(seed: int = 5) -> list[int]:
    return tokens(1, WINDOW, seed=seed)[0].tolist()


def assert_llama_cpp_computes(model, tmp_path, atol: float = F32_ATOL, exact: bool = True, **export) -> dict:
    """Export `model`, run the window through llama.cpp and PyTorch; returns the manifest."""
    export.setdefault("dtype", "f32")
    manifest = write_gguf(model, tmp_path / "model.gguf", **export)
    ids = window()
    expected, actual = torch_nll(model, ids), llama_nll(tmp_path / "model.gguf", ids, exact)
    assert actual.shape == expected.shape == (WINDOW - 1,)
    diff = float(np.abs(actual - expected).max())
    assert diff <= atol, f"llama.cpp's NLL differs from PyTorch's by {diff:.3g} > {atol:g} (mean {expected.mean():.4f})"
    print(f"max |NLL diff| {diff:.3g} (mean NLL {expected.mean():.4f}, paddings {len(manifest['paddings'])})")
    return manifest


def activations(model):
    return Calibration(activations=collect_activation_stats(model, tokens(8, 32)))


# --- families ---------------------------------------------------------------------------------------

def test_dense_llama_with_gqa(tmp_path):
    manifest = assert_llama_cpp_computes(tiny_model(kv_heads=2), tmp_path)
    assert manifest["layers"] == [{"heads": 4, "kv_heads": 2, "ffn": 96}] * 3
    assert manifest["paddings"] == [] and manifest["tied_embeddings"] and manifest["arch"] == "deci"


def test_mistral_with_an_untied_head_and_a_window_that_never_binds(tmp_path):
    model = family_model("MistralConfig", sliding_window=512, tie_word_embeddings=False)
    manifest = assert_llama_cpp_computes(model, tmp_path)
    assert not manifest["tied_embeddings"] and "never binds" in manifest["sliding_window"]


def test_qwen2_qkv_biases_are_permuted_with_their_rows(tmp_path):
    model = family_model("Qwen2Config", tie_word_embeddings=True)
    calib = activations(model)
    prune_model(model, method_module("flap"), 0.5, calib, {"attention_unit": "query_heads"})
    assert_llama_cpp_computes(model, tmp_path)


# --- every kind of cut --------------------------------------------------------------------------------

def test_flap_with_bias_compensation_through_a_checkpoint(tmp_path, tokenizer):
    model = tiny_model(kv_heads=2, layers=4)
    plan = prune_model(model, method_module("flap"), 0.5, activations(model), {})
    assert plan.compensate
    save_pruned(model, tokenizer, tmp_path / "ckpt")
    reloaded = load_pruned(tmp_path / "ckpt")
    manifest = assert_llama_cpp_computes(reloaded, tmp_path)
    written = [(layer["heads"], layer["ffn"]) for layer in manifest["layers"]]
    assert len(set(written)) > 1  # heterogeneous widths, as FLAP leaves them
    assert all(reloaded.model.layers[i].mlp.down_proj.bias is not None for i in range(4))


@pytest.mark.parametrize("method, needs", [("wanda_sp", "activations"), ("llm_pruner", "tokens")])
def test_width_methods(method, needs, tmp_path):
    model = tiny_model(kv_heads=2)
    calib = activations(model) if needs == "activations" else Calibration(tokens=tokens(2, 16), seed=0)
    prune_model(model, method_module(method), 0.5, calib, {})
    assert_llama_cpp_computes(model, tmp_path)


def test_depth_pruned_model_has_fewer_blocks(tmp_path):
    model = tiny_model(kv_heads=2, layers=4)
    prune_model(model, method_module("shortgpt"), 0.5, Calibration(tokens=tokens(4, 16)), {})
    manifest = assert_llama_cpp_computes(model, tmp_path)
    assert len(manifest["layers"]) == 2


def test_minitron_hidden_size(tmp_path):
    model = tiny_model(kv_heads=2)
    prune_model(model, method_module("minitron"), 0.5, activations(model), {})
    manifest = assert_llama_cpp_computes(model, tmp_path)
    assert manifest["hidden"] == model.config.hidden_size < 64


def test_lora_merged_model_through_a_checkpoint(tmp_path, tokenizer):
    from prunebench.recovery.lora import recover

    examples = [{"instruction": f"Count to {i}.", "input": "", "output": " ".join(map(str, range(i)))}
                for i in range(2, 10)]
    settings = {"r": 4, "alpha": 8, "dropout": 0.0, "steps": 2, "micro_batch": 2, "batch": 2, "cutoff": 96,
                "lr": 1e-2, "warmup": 0, "val_size": 2, "eval_every": 1, "weight_decay": 0.0, "max_grad_norm": 1.0,
                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
    model = tiny_model(kv_heads=2)
    prune_model(model, method_module("flap"), 0.3, activations(model), {})
    before = copy.deepcopy(model)
    merged, _ = recover(model, tokenizer, examples, settings)
    assert not torch.equal(merged.model.layers[0].mlp.up_proj.weight, before.model.layers[0].mlp.up_proj.weight)
    save_pruned(merged, tokenizer, tmp_path / "tuned")
    assert_llama_cpp_computes(load_pruned(tmp_path / "tuned"), tmp_path)


def every_padding(model) -> PruningPlan:
    """Layer 0 loses every head, layer 1 every MLP channel, layer 2 every head; layer 3 stays."""
    heads, channels = list(range(4)), list(range(96))
    return PruningPlan([LayerKeep([], [], channels), LayerKeep(heads, [0, 1], []), LayerKeep([], [], channels),
                        LayerKeep(heads, [0, 1], channels)], compensate=True)


def test_layers_without_heads_or_mlp_channels_are_padded_exactly(tmp_path):
    dense = tiny_model(kv_heads=2, layers=4)
    model = apply_plan(copy.deepcopy(dense), every_padding(dense), collect_activation_stats(dense, tokens(8, 32)))
    with torch.no_grad():  # layer 2 as without compensation: nothing to add, its attention is skipped
        model.model.layers[2].self_attn.o_proj.bias.zero_()
    assert model.model.layers[0].self_attn.o_proj.bias.abs().max() > 0
    assert model.model.layers[1].mlp.down_proj.bias.abs().max() > 0
    manifest = assert_llama_cpp_computes(model, tmp_path)
    assert manifest["layers"] == [{"heads": 1, "kv_heads": 1, "ffn": 96}, {"heads": 4, "kv_heads": 2, "ffn": 1},
                                  {"heads": 0, "kv_heads": 0, "ffn": 96}, {"heads": 4, "kv_heads": 2, "ffn": 96}]
    assert [(p["layer"], p["what"], p["units"]) for p in manifest["paddings"]] == [(0, "attention", 1), (1, "mlp", 1)]
    assert "attn_output.bias" in manifest["paddings"][0]["why"] and "n_ff == 0" in manifest["paddings"][1]["why"]


def test_layer_zero_without_heads_is_padded_even_without_a_bias(tmp_path):
    dense = tiny_model(kv_heads=2, layers=4)
    plan = every_padding(dense)
    plan.compensate = False
    manifest = assert_llama_cpp_computes(apply_plan(copy.deepcopy(dense), plan), tmp_path)
    assert [(p["layer"], p["what"]) for p in manifest["paddings"]] == [(0, "attention"), (1, "mlp")]
    assert "layer 0 sets the head size" in manifest["paddings"][0]["why"]
    assert manifest["layers"][2]["heads"] == 0


# --- Gemma-3: llama.cpp's gemma3 architecture, every layer as wide as the widest ----------------------

GEMMA3 = dict(num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=32, sliding_window=8)


def gemma3_model(layers: int = 3):
    types = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"][:layers]
    return family_model("Gemma3TextConfig", num_hidden_layers=layers, layer_types=types, **GEMMA3)


def test_gemma3_layers_are_padded_to_the_widest_and_keep_their_window_types(tmp_path):
    """Layer 0 keeps KV group 0 and 60 channels, layer 1 one query head of each group, layer 2 no
    attention, layer 3 goes: the windows of 8 (the test's window is 48 tokens) stay where they were."""
    model = gemma3_model(layers=4)
    every = list(range(96))
    plan = PruningPlan([LayerKeep([0, 1], [0], list(range(60))), LayerKeep([0, 2], [0, 1], every),
                        LayerKeep([], [], every), LayerKeep([0, 1, 2, 3], [0, 1], every)], removed_layers=[3])
    apply_plan(model, plan)
    manifest = assert_llama_cpp_computes(model, tmp_path, atol=GEMMA3_ATOL)
    assert manifest["arch"] == "gemma3" and manifest["swa_pattern"] == [True, False, True]
    assert manifest["layers"] == [{"heads": 4, "kv_heads": 2, "ffn": 96}] * 3
    assert [(p["layer"], p["what"], p["units"]) for p in manifest["paddings"]] == [
        (0, "attention", 2), (0, "mlp", 36), (1, "attention", 2), (2, "attention", 4)]
    assert "LLAMA_LOAD_LOCALS" in manifest["paddings"][0]["why"]


def test_gemma3_minitron_hidden_size_keeps_the_embedding_scale(tmp_path):
    model = gemma3_model()
    prune_model(model, method_module("minitron"), 0.5, activations(model), {})
    manifest = assert_llama_cpp_computes(model, tmp_path, atol=GEMMA3_ATOL)
    assert manifest["hidden"] == model.config.hidden_size < 64


def test_gemma3_with_bias_compensation_is_refused(tmp_path):
    model = gemma3_model()
    prune_model(model, method_module("flap"), 0.5, activations(model), {})
    with pytest.raises(ExportError, match=r"output biases in layers \[0, 1, 2\] \(bias compensation\): gemma3 has no "
                                          r"attn_output/ffn_down bias tensors"):
        write_gguf(model, tmp_path / "x.gguf")


# --- vocabulary, f16, quantization -----------------------------------------------------------------

def test_f16_file_with_the_source_vocabulary(tmp_path, tokenizer):
    from gguf import GGUFReader

    from prunebench.sources.models import _builtin_gguf

    source = _builtin_gguf("smollm2-135m")
    model = tiny_model(kv_heads=2)
    # f16 matrices, and llama.cpp's default runtime (flash attention, f16 KV cache)
    manifest = assert_llama_cpp_computes(model, tmp_path, atol=F16_ATOL, exact=False, dtype="f16", source_gguf=source)
    assert manifest["dtype"] == "f16" and manifest["bytes"] < 12_000_000  # f16 matrices: about half of f32's
    text = "Pruned models, exported: does llama.cpp tokenize them the same way?"
    llm = open_model(tmp_path / "model.gguf", n_threads=1, n_ctx=64)
    try:
        assert llm.tokenize(text.encode(), add_bos=False) == tokenizer(text)["input_ids"]
        template = GGUFReader(str(source)).fields["tokenizer.chat_template"].contents()
        assert llm.metadata["tokenizer.chat_template"] == template
    finally:
        llm.close()


def test_quantized_files_run_close_to_f32(tmp_path):
    model = tiny_model(kv_heads=2)
    write_gguf(model, tmp_path / "f32.gguf", dtype="f32")
    ids = window()
    reference = llama_nll(tmp_path / "f32.gguf", ids)
    # Q8_0 (8-bit blocks of 32) moves the NLL by 4e-2 at most here, Q4_K_M (whose 256-blocks these
    # 64-wide rows fall back from, to Q5_0 and others) by 0.2; a broken file by whole nats
    for qtype, atol, mean_atol in (("Q8_0", 0.1, 0.01), ("Q4_K_M", 0.5, 0.05)):
        quantize(tmp_path / "f32.gguf", tmp_path / f"{qtype}.gguf", qtype, n_threads=1)
        assert (tmp_path / f"{qtype}.gguf").stat().st_size < 0.3 * (tmp_path / "f32.gguf").stat().st_size
        quantized = llama_nll(tmp_path / f"{qtype}.gguf", ids)
        assert np.abs(quantized - reference).max() < atol and abs(quantized.mean() - reference.mean()) < mean_atol
    with pytest.raises(ValueError, match=r"'Q5_K' is not offered; choose one of \['Q8_0', 'Q4_K_M'\]"):
        quantize(tmp_path / "f32.gguf", tmp_path / "q5.gguf", "Q5_K")
    assert not (tmp_path / "q5.gguf").exists()


def test_a_file_llama_cpp_cannot_load_names_llama_cpps_reason(tmp_path):
    write_gguf(tiny_model(kv_heads=2), tmp_path / "model.gguf", dtype="f32")
    data = (tmp_path / "model.gguf").read_bytes()
    (tmp_path / "model.gguf").write_bytes(data[:len(data) // 2])
    with pytest.raises(RuntimeError, match=r"cannot load .*model\.gguf: .*'token_embd\.weight' data is not within"):
        open_model(tmp_path / "model.gguf", n_threads=1, n_ctx=64)


# --- refusals ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, extra, expected", [
    ("Qwen3Config", {}, ["Qwen3 (model_type 'qwen3')", "q_norm/k_norm", "src/models/deci.cpp",
                         "LLAMA_LOAD_LOCALS in src/llama-model.h", "src/models/qwen3.cpp"]),
    ("Gemma2Config", {"query_pre_attn_scalar": 16}, ["Gemma-2 (model_type 'gemma2')", "src/models/gemma2.cpp",
                                                     "no attn_output/ffn_down bias tensors"]),
    ("MistralConfig", {"sliding_window": 8}, ["Mistral sliding_window=8 is shorter than the context 512",
                                              "no sliding-window attention"]),
])
def test_what_llama_cpp_cannot_compute_is_refused(cls, extra, expected, tmp_path):
    with pytest.raises(ExportError) as refused:
        write_gguf(family_model(cls, **extra), tmp_path / "x.gguf")
    for piece in expected:
        assert piece in str(refused.value), str(refused.value)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary


def test_f16_refuses_values_it_cannot_hold(tmp_path):
    model = tiny_model(kv_heads=2)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = 1e5
    with pytest.raises(ExportError, match=r"blk\.1\.ffn_up\.weight holds 100000.*dtype='f32'"):
        write_gguf(model, tmp_path / "x.gguf", dtype="f16")


def test_missing_llama_cpp_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # `import llama_cpp` now raises ImportError
    with pytest.raises(ImportError, match="llama-cpp-python is not installed: make setup builds it"):
        open_model(tmp_path / "x.gguf", n_threads=1, n_ctx=64)

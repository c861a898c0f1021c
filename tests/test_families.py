"""Every supported decoder family on a tiny random model built from its transformers config class
(no hub): one parametrized fixture runs every method module, the surgery (removal = masking), bias
compensation, the parameter accounting, LoRA recovery and merge, the FLOP count with the family's
real head_dim and lm-eval; one fresh process reloads every family's checkpoint. Families the
surgery cannot cut are refused while the config is parsed. And the query-heads attention unit."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from conftest import REPO, assert_mean_output_kept, greedy_without_cache, tokens

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import collect_activation_stats
from prunebench.config import ConfigError, check_config
from prunebench.evaluation.efficiency import flops_per_token
from prunebench.evaluation.zeroshot import evaluate_zeroshot
from prunebench.pruning import prune_model
from prunebench.pruning.checkpoint import layer_shapes, save_pruned
from prunebench.pruning.structure import LayerKeep, PruningPlan, Shapes, keep_heads, unit_scores
from prunebench.pruning.surgery import RemovedAttention, apply_plan
from prunebench.recovery.lora import train_lora
from prunebench.sources.bos import resolve_bos

COMMON = dict(vocab_size=49152, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, initializer_range=0.1,
              bos_token_id=1, eos_token_id=2, pad_token_id=2)
SLIDING = dict(sliding_window=8, layer_types=["sliding_attention", "full_attention", "sliding_attention"])
# family: (config class, what differs from SmolLM2, whether its tokenizer adds BOS)
FAMILIES = {
    "llama": ("LlamaConfig", dict(head_dim=16), True),
    "mistral": ("MistralConfig", dict(head_dim=16, sliding_window=8), True),
    "qwen2": ("Qwen2Config", dict(), False),  # q/k/v biases
    "qwen3": ("Qwen3Config", dict(head_dim=32), False),  # per-head q_norm/k_norm; head_dim != hidden/heads
    "gemma2": ("Gemma2Config", dict(head_dim=32, query_pre_attn_scalar=32, **SLIDING), True),  # soft-capping
    "gemma3_text": ("Gemma3TextConfig", dict(num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                                             **SLIDING), True),  # one KV head, q/k norms
}
# FLOPs per token at 128 tokens of context, by hand: LM head 2*64*49152 = 6291456; a dense layer
# 2*64*(2q + 2kv) (projections) + 4*q*128 (scores, values) + 6*64*96 (MLP) with q = 4 heads, kv =
# kv heads, times head_dim: 94208 at head_dim 16 (kv 2), 151552 at 32 (kv 2), 143360 at 32 (kv 1).
# The `every_cut` plan: layer 0 keeps 48 MLP channels and no attention (18432), layer 1 goes, layer
# 2 keeps 2 query heads and every kv head: 69632 (16, kv 2), 102400 (32, kv 2), 94208 (32, kv 1).
FLOPS = {"llama": (6574080, 6379520), "mistral": (6574080, 6379520), "qwen2": (6574080, 6379520),
         "qwen3": (6746112, 6412288), "gemma2": (6746112, 6412288), "gemma3_text": (6721536, 6404096)}
METHODS = [("flap", {}), ("flap", {"attention_unit": "query_heads"}), ("wanda_sp", {"attention_unit": "query_heads"}),
           ("magnitude_sp", {}), ("random_sp", {"attention_unit": "query_heads"}), ("llm_pruner", {})]
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def family_model(name: str, seed: int = 0):
    import transformers
    from transformers import AutoModelForCausalLM

    cls, extra, _ = FAMILIES[name]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(getattr(transformers, cls)(**{**COMMON, **extra})).eval()
    with torch.no_grad():  # biases and norm weights start constant: random ones show that they are cut right
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(params=list(FAMILIES))
def family(request, tokenizer, bos_tokenizer):
    """(family, tiny random model, a tokenizer adding BOS as the family's does)."""
    name = request.param
    return name, family_model(name), bos_tokenizer if FAMILIES[name][2] else tokenizer


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def hidden(model, ids) -> torch.Tensor:
    """The decoder's output (the LM head over 49152 tokens adds nothing to compare but time)."""
    with torch.no_grad():
        return model.model(ids).last_hidden_state


def every_cut(model) -> PruningPlan:
    """Every kind of cut at once: layer 0 loses its whole attention and half its MLP, layer 1 goes
    whole, layer 2 keeps half of each KV group's query heads (and every kv head)."""
    shapes = Shapes.of(model)
    half = [g * shapes.group_size + j for g in range(shapes.kv_heads) for j in range(shapes.group_size // 2)]
    return PruningPlan([LayerKeep([], [], list(range(48))),
                        LayerKeep(list(range(shapes.heads)), list(range(shapes.kv_heads)), list(range(96))),
                        LayerKeep(half, list(range(shapes.kv_heads)), list(range(96)))],
                       compensate=True, removed_layers=[1])


def projection_params(model) -> int:
    """Parameters of the seven projections, less the output biases that compensation adds."""
    return sum(p.numel() for n, p in model.named_parameters()
               if n.split(".")[-2] in PROJECTIONS and n not in _output_biases(model))


def _output_biases(model) -> set[str]:
    return {n for n, _ in model.named_parameters() if n.endswith(("o_proj.bias", "down_proj.bias"))}


# --- every method on every family ---------------------------------------------------------------

def test_every_method_removes_what_masking_zeroes(family):
    name, model, _ = family
    shapes = Shapes.of(model)
    assert shapes.prunable_params == projection_params(model)  # the costs count what the model has (biases too)
    ids = tokens(2, 24, seed=1)
    calib = Calibration(activations=collect_activation_stats(model, tokens(8, 32)), tokens=tokens(2, 16), seed=0)
    for module, params in METHODS:
        removed, masked = copy.deepcopy(model), copy.deepcopy(model)
        plan = prune_model(removed, method_module(module), 0.5, calib, params)
        prune_model(masked, method_module(module), 0.5, calib, params, mask=True)
        torch.testing.assert_close(hidden(removed, ids), hidden(masked, ids), atol=1e-5, rtol=1e-5,
                                   msg=f"{name} {module} {params}")
        assert plan.kept_params(shapes) == projection_params(removed), (module, params)
        assert plan.summary(shapes)["removed_fraction"] > 0.3, (module, params)
        for layer, keep in zip(removed.model.layers, plan.layers):
            if keep.q_heads:  # a valid HF attention: whole query-head groups over the kept kv heads
                assert layer.self_attn.num_key_value_groups * len(keep.kv_heads) == len(keep.q_heads)
                assert layer.self_attn.k_proj.out_features == len(keep.kv_heads) * shapes.head_dim


def test_bias_compensation_keeps_the_mean_output(family):
    _, model, _ = family
    ids = tokens(8, 32)
    calib = Calibration(activations=collect_activation_stats(model, ids))
    for unit in ("kv_group", "query_heads"):
        pruned = copy.deepcopy(model)
        plan = prune_model(pruned, method_module("flap"), 0.5, calib, {"attention_unit": unit})
        assert_mean_output_kept(model, pruned, plan, ids)


def test_flops_count_the_family_head_dim(family):
    name, model, _ = family
    assert flops_per_token(model, 128) == FLOPS[name][0]
    pruned = apply_plan(copy.deepcopy(model), every_cut(model), collect_activation_stats(model, tokens(4, 16)))
    assert isinstance(pruned.model.layers[0].self_attn, RemovedAttention)
    assert flops_per_token(pruned, 128) == FLOPS[name][1]


LORA_EXAMPLES = [{"instruction": f"Count to {i}.", "input": "", "output": " ".join(map(str, range(i)))}
                 for i in range(2, 10)]
LORA_SETTINGS = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": list(PROJECTIONS), "steps": 2, "micro_batch": 2,
                 "batch": 2, "cutoff": 96, "lr": 1e-2, "warmup": 0, "val_size": 2, "eval_every": 1,
                 "weight_decay": 0.0, "max_grad_norm": 1.0}


def test_lora_recovery_trains_and_merges(family):
    _, model, tokenizer = family
    pruned = apply_plan(copy.deepcopy(model), every_cut(model), collect_activation_stats(model, tokens(4, 16)))
    assert_lora_trains_and_merges(pruned, tokenizer)


def assert_lora_trains_and_merges(pruned, tokenizer) -> None:
    """LoRA recovery on `pruned` learns, and the merged model is the adapted one, shapes unchanged."""
    shapes = layer_shapes(pruned)
    peft_model, log = train_lora(pruned, tokenizer, LORA_EXAMPLES, LORA_SETTINGS)
    assert log["best_val_loss"] < log["val_loss"][0][1]  # the adapters learned something
    ids = tokens(2, 16, seed=2)
    adapted = logits(peft_model, ids)
    merged = peft_model.merge_and_unload()
    assert not [n for n, _ in merged.named_parameters() if "lora" in n]
    assert layer_shapes(merged) == shapes
    torch.testing.assert_close(logits(merged, ids), adapted, atol=1e-5, rtol=1e-5)


def test_lm_eval_on_the_family_under_its_bos_protocol(family, data_root):
    name, model, tokenizer = family
    bos = resolve_bos("auto", tokenizer, model.config.model_type)
    # the references' text-start where the tokenizer adds BOS; Gemma's BOS at every sequence start
    assert bos == {"llama": "text-start", "mistral": "text-start", "gemma2": "every-window",
                   "gemma3_text": "every-window"}.get(name, "none")
    results = evaluate_zeroshot(model, tokenizer, ["boolq"], data_root, limit=2, batch_size=2, bos=bos)
    assert results["boolq"]["docs"] == 2 and results["boolq"]["value"] in (0, 0.5, 1)
    assert results["boolq"]["bos"] == {"add_bos_token": bos == "every-window",
                                       "requests": "every-window" if bos == "every-window" else "none"}


def test_every_family_reloads_in_a_fresh_process(tmp_path, tokenizer):
    ids = tokens(2, 24, seed=1)
    torch.save(ids, tmp_path / "ids.pt")
    expected = {}
    for name in FAMILIES:
        model = family_model(name)
        pruned = apply_plan(copy.deepcopy(model), every_cut(model), collect_activation_stats(model, tokens(4, 16)))
        save_pruned(pruned, tokenizer, tmp_path / name)
        # generating 10 tokens (with a KV cache after the reload) crosses the sliding windows of 8
        expected[name] = (logits(pruned, ids), greedy_without_cache(pruned, ids[:1, :6], 4))
    script = ("import sys, torch; from prunebench.pruning.checkpoint import load_pruned; "
              "ids = torch.load(sys.argv[1] + '/ids.pt', weights_only=True)\n"
              "for name in sys.argv[2:]:\n"
              "    m = load_pruned(sys.argv[1] + '/' + name)\n"
              "    with torch.no_grad():\n"
              "        out = (m(ids).logits, m.generate(ids[:1, :6], max_new_tokens=4, do_sample=False))\n"
              "    torch.save(out, sys.argv[1] + '/' + name + '.pt')")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *FAMILIES], check=True, cwd=REPO)
    for name, (reference, generated) in expected.items():
        reloaded, regenerated = torch.load(tmp_path / f"{name}.pt", weights_only=True)
        assert (reloaded - reference).abs().max().item() <= 1e-5, name
        assert torch.equal(regenerated, generated), name


# --- refused families ---------------------------------------------------------------------------

REFUSED = {
    "olmo2": ("Olmo2Config", {}, ["OLMo-2 (Olmo2ForCausalLM, model_type 'olmo2') cannot be pruned correctly",
                                  "self_attn.q_norm normalises 64 channels together (4 heads of 16)",
                                  "self_attn.k_norm normalises 32 channels together (2 heads of 16)"]),
    "phi3": ("Phi3Config", {}, ["Phi-3 (Phi3ForCausalLM, model_type 'phi3')",
                                "decoder layers lack self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, "
                                "mlp.gate_proj, mlp.up_proj (self_attn is Phi3Attention with o_proj, qkv_proj; "
                                "mlp is Phi3MLP with gate_up_proj, down_proj, activation_fn)"]),
    "mixtral": ("MixtralConfig", {}, ["Mixtral (MixtralForCausalLM, model_type 'mixtral')",
                                      "decoder layers lack mlp.gate_proj, mlp.up_proj, mlp.down_proj "
                                      "(mlp is MixtralSparseMoeBlock with gate, experts)"]),
    "qwen2_moe": ("Qwen2MoeConfig", {}, ["Qwen2-MoE (Qwen2MoeForCausalLM, model_type 'qwen2_moe')",
                                         "decoder layers lack mlp.gate_proj, mlp.up_proj, mlp.down_proj (mlp is "
                                         "Qwen2MoeSparseMoeBlock with gate, experts, shared_expert, "
                                         "shared_expert_gate)"]),
    "t5": ("T5Config", {}, ["t5 (T5Config, model_type 't5') cannot be pruned correctly: it is not a causal "
                            "language model"]),
}


@pytest.mark.parametrize("family", list(REFUSED))
def test_unsupported_family_is_refused_by_the_config_check(family, tmp_path):
    import transformers
    import yaml

    cls, extra, expected = REFUSED[family]
    getattr(transformers, cls)(**{**COMMON, "vocab_size": 128, **extra}).save_pretrained(tmp_path)  # config only
    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    config["models"] = {"tiny": {"source": f"path:{tmp_path}"}}
    with pytest.raises(ConfigError) as refused:
        check_config(config, verify_data=False)
    message = str(refused.value)
    for piece in [f"model 'tiny': path:{tmp_path}: ", *expected, "Supported families: LLaMA architecture (llama), "
                  "Mistral (mistral), Qwen2/Qwen2.5 (qwen2), Qwen3 (qwen3), Gemma-2 (gemma2), Gemma-3 (text) "
                  "(gemma3_text)"]:
        assert piece in message, message


# --- the query-heads attention unit -------------------------------------------------------------

def test_attention_unit_costs_come_from_the_real_shapes():
    smollm2 = Shapes(layers=30, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536)
    assert smollm2.unit_costs("kv_group") == [294912] * 3  # (2*3 + 2) * 64 * 576
    # a rank: one query head of each of the 3 groups, 3 * 2 * 64 * 576; the last also k and v of the 3 kv heads
    assert smollm2.unit_costs("query_heads") == [221184, 221184, 221184 + 221184]
    assert sum(smollm2.unit_costs("query_heads")) == 3 * 294912
    qwen2 = Shapes(layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16, intermediate=96, qkv_bias=True)
    assert (qwen2.head_cost, qwen2.kv_cost, qwen2.unit_cost) == ((2 * 64 + 1) * 16, 2 * 65 * 16, 2 * 2064 + 2080)


def test_query_heads_drop_each_groups_lowest_heads():
    shapes = Shapes(layers=1, hidden=8, heads=6, kv_heads=2, head_dim=2, intermediate=4)  # 2 groups of 3 heads
    # per head (the sum of its 2 channels): group 0 heads 0, 1, 2 score 5, 1, 3; group 1 heads 3, 4, 5 score 2, 6, 0
    channels = torch.tensor([2.0, 3.0, 0.5, 0.5, 1.0, 2.0, 1.0, 1.0, 3.0, 3.0, 0.0, 0.0])
    assert keep_heads(channels, shapes, "query_heads", 1) == ([0, 2, 3, 4], [0, 1])
    assert keep_heads(channels, shapes, "query_heads", 2) == ([0, 4], [0, 1])
    assert keep_heads(channels, shapes, "query_heads", 3) == ([], [])
    assert keep_heads(channels, shapes, "kv_group", 1) == ([0, 1, 2], [0])  # group 0 sums 9, group 1 sums 8
    # rank r: the r-th lowest head of each group (1 and 0, 3 and 2, 5 and 6), summed over the groups
    assert unit_scores(channels, shapes, "query_heads").tolist() == [1.0, 5.0, 11.0]
    # mean: head means 2.5, 0.5, 1.5 | 1, 3, 0, sorted per group and averaged over the groups
    assert unit_scores(channels, shapes, "query_heads", "mean").tolist() == [0.25, 1.25, 2.75]


@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_flap_with_query_heads_keeps_the_budget_and_every_kv_head(ratio):
    from conftest import tiny_model

    model = tiny_model(kv_heads=2)  # 4 query heads in 2 groups
    shapes = Shapes.of(model)
    plan = prune_model(copy.deepcopy(model), method_module("flap"), ratio,
                       Calibration(activations=collect_activation_stats(model, tokens(8, 32))),
                       {"attention_unit": "query_heads"})
    assert abs(plan.kept_params(shapes) - (1 - ratio) * shapes.prunable_params) <= max(shapes.unit_costs("query_heads"))
    for keep in plan.layers:
        per_group = [sum(h // shapes.group_size == g for h in keep.q_heads) for g in range(shapes.kv_heads)]
        assert len(set(per_group)) == 1  # the same number of query heads in every group
        assert keep.kv_heads == ([0, 1] if keep.q_heads else [])
    assert plan.details["attention_unit"] == "query_heads"


# --- the report ---------------------------------------------------------------------------------

def test_report_names_each_models_family_bos_and_attention_units():
    from test_report import fixture_results

    from prunebench.reporting.protocol import model_notes

    results = fixture_results()  # two tiny LLaMAs whose tokenizer adds no BOS
    methods = "Random, Magnitude-sp (L2), Wanda-sp, LLM-Pruner Element¹, FLAP"
    recorded = ("LLaMA-1/2/3; BOS none (setting auto; perplexity windows none; zero-shot requests none); "
                f"attention unit: KV groups ({methods})")
    assert model_notes(results) == [f"Models — tiny-gqa: {recorded} | tiny-mha: {recorded}."]
    for m in results.metrics.values():  # results written before families and BOS were recorded
        m.pop("family"), m.pop("bos")
    unrecorded = f"family not recorded; BOS not recorded; attention unit: KV groups ({methods})"
    assert model_notes(results) == [f"Models — tiny-gqa: {unrecorded} | tiny-mha: {unrecorded}."]
    for (model, method, _, _), m in results.metrics.items():
        m["family"] = "Gemma-3 (text)" if model == "tiny-gqa" else "LLaMA-1/2/3"
        m["bos"] = {"setting": "auto", "policy": "every-window", "perplexity": "every-window",
                    "zeroshot": {"add_bos_token": True, "requests": "every-window"}}
        if "attention_unit" in ((m.get("pruning") or {}).get("details") or {}):  # width methods only
            m["pruning"]["details"]["attention_unit"] = "query_heads" if method == "flap" else "kv_group"
    gqa = model_notes(results)[0].split(" | ")[0]
    assert gqa == ("Models — tiny-gqa: Gemma-3 (text); BOS every-window (setting auto; perplexity windows "
                   "every-window; zero-shot requests every-window); attention unit: KV groups (Random, "
                   "Magnitude-sp (L2), Wanda-sp, LLM-Pruner Element¹); query heads (FLAP)")

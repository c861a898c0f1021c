"""LLM-Pruner's importance, grouping and layer range, and LoRA recovery, on tiny LLaMAs."""
from __future__ import annotations

import copy
import random

import pytest
import torch
from conftest import tiny_model, tokens

from methods import method_module
from methods.llm_pruner import default_layer_range, group_importance, slice_importance
from prunebench.calibration import Calibration
from prunebench.pruning import prune_model
from prunebench.pruning.checkpoint import load_pruned, save_pruned
from prunebench.pruning.structure import LayerKeep, PruningPlan, Shapes, local_counts, solve_local_ratio
from prunebench.pruning.surgery import apply_plan
from prunebench.recovery.lora import (
    lora_targets,
    recover,
    split_examples,
    tokenize_examples,
    train_lora,
    validation_loss,
)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("kind", ["gqa", "mha"])
def test_every_group_removal_leaves_a_valid_model(kind):
    model = tiny_model(kv_heads=2 if kind == "gqa" else 4)
    shapes = Shapes.of(model)
    ids = tokens(2, 16)
    full = PruningPlan.from_units(shapes, [list(range(shapes.kv_heads))] * shapes.layers,
                                  [list(range(shapes.intermediate))] * shapes.layers)
    for layer in range(shapes.layers):
        for unit in range(shapes.kv_heads):
            units = [list(range(shapes.kv_heads)) for _ in range(shapes.layers)]
            units[layer].remove(unit)
            plan = PruningPlan.from_units(shapes, units, [k.channels for k in full.layers])
            removed, masked = copy.deepcopy(model), copy.deepcopy(model)
            apply_plan(removed, plan)
            apply_plan(masked, plan, mask=True)
            torch.testing.assert_close(logits(removed, ids), logits(masked, ids), atol=1e-5, rtol=1e-5)


def _hand_gradients(model, ids, param):
    """The batch gradient and the per-sample squared-gradient mean, by plain autograd."""
    loss = model(ids, labels=ids).loss
    (g,) = torch.autograd.grad(loss, param)
    fisher = torch.zeros_like(param)
    for sample in ids:
        (gs,) = torch.autograd.grad(model(sample[None], labels=sample[None]).loss, param)
        fisher += gs * gs / len(ids)
    return g, fisher


@pytest.mark.parametrize("importance", ["element1", "element2", "vector"])
def test_importance_equals_hand_computation(importance):
    model = tiny_model(kv_heads=2)
    ids = tokens(3, 12)
    per_channel, share = slice_importance(model, ids, importance, [1])
    assert all(p.requires_grad and p.grad is None for p in model.parameters())  # flags restored, grads freed
    for name, dim in (("self_attn.q_proj", 0), ("self_attn.o_proj", 1), ("mlp.down_proj", 1)):
        w = model.model.layers[1].get_submodule(name).weight
        w.requires_grad_(True)
        g, fisher = _hand_gradients(model, ids, w)
        w.requires_grad_(False)
        w, g, fisher = w.detach().double(), g.double(), fisher.double()
        other = 1 - dim
        expected = {"element1": (w * g).abs().sum(other),
                    "vector": (w * g).sum(other).abs(),
                    "element2": (w * g - 0.5 * w * fisher * w).abs().sum(other)}[importance]
        # float32 gradients summed in different orders: tolerance relative to the slice's scale
        torch.testing.assert_close(per_channel[1][name], expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert (share is None) == (importance != "element2")


def test_aggregations_differ_as_defined():
    shapes = Shapes(layers=1, hidden=8, heads=2, kv_heads=1, head_dim=2, intermediate=2)
    per_channel = {"self_attn.q_proj": torch.tensor([1.0, 2.0, 3.0, 4.0]),  # two query heads of one kv head
                   "self_attn.k_proj": torch.tensor([1.0, 1.0]), "self_attn.v_proj": torch.tensor([2.0, 0.5]),
                   "self_attn.o_proj": torch.tensor([0.5, 1.0, 0.5, 1.0]),
                   "mlp.gate_proj": torch.tensor([1.0, 2.0]), "mlp.up_proj": torch.tensor([3.0, 1.0]),
                   "mlp.down_proj": torch.tensor([2.0, 2.0])}
    # aligned per kv channel: q (1+3, 2+4) = (4, 6); k (1, 1); v (2, .5); o (1, 2)
    expected_attention = {"sum": (4 + 1 + 2 + 1) + (6 + 1 + 0.5 + 2), "mean": (8 / 4) + (9.5 / 4),
                          "max": 4 + 6, "prod": (4 * 1 * 2 * 1) + (6 * 1 * 0.5 * 2), "last": 1 + 2}
    expected_mlp = {"sum": [6, 5], "mean": [2, 5 / 3], "max": [3, 2], "prod": [6, 4], "last": [2, 2]}
    for aggregation in expected_attention:
        attention, mlp = group_importance(per_channel, shapes, aggregation)
        assert attention.tolist() == pytest.approx([expected_attention[aggregation]])
        assert mlp.tolist() == pytest.approx(expected_mlp[aggregation])


def test_layer_range_is_respected_and_scales_with_depth():
    assert default_layer_range(32) == (4, 30)
    assert default_layer_range(30) == (4, 28)
    model = tiny_model(kv_heads=2, layers=4)
    plan = prune_model(model, method_module("llm_pruner"), 0.3, Calibration(tokens=tokens(2, 12)),
                       {"layer_range": [1, 3], "channel_ratio": 0.5})
    shapes = Shapes.of(tiny_model(kv_heads=2, layers=4))
    units, channels = local_counts(shapes, 0.5)
    assert (units, channels) == (1, 48)
    for i, keep in enumerate(plan.layers):
        inside = 1 <= i < 3
        assert len(keep.kv_heads) == shapes.kv_heads - (units if inside else 0)
        assert len(keep.channels) == shapes.intermediate - (channels if inside else 0)
    assert plan.details["layer_range"] == [1, 3] and plan.details["channel_ratio"] == 0.5


def test_solved_channel_ratio_hits_the_parameter_target():
    llama7b = Shapes(layers=32, hidden=4096, heads=32, kv_heads=32, head_dim=128, intermediate=11008)
    def removed(channel_ratio):
        units, channels = local_counts(llama7b, channel_ratio)
        return 26 * (units * llama7b.unit_cost + channels * llama7b.channel_cost) / llama7b.prunable_params

    units, channels = local_counts(llama7b, 0.25)
    assert units == 8 and channels == 2752  # 32 - int(24), 11008 - int(8256)
    assert removed(0.25) == pytest.approx(0.203, abs=0.001)  # the paper's "20%" row: 25% on 26 of 32 layers
    # one shared local ratio moves in jumps of a head per pruned layer: the solver lands within one
    # and no grid ratio lands closer
    solved = solve_local_ratio(llama7b, 0.2, 26)
    assert abs(removed(solved) - 0.2) <= 26 * llama7b.unit_cost / llama7b.prunable_params
    assert all(abs(removed(solved) - 0.2) <= abs(removed(r / 1000) - 0.2) for r in range(1000))


# --- LoRA recovery ---------------------------------------------------------------------------

RECOVERY = {"r": 8, "alpha": 16, "dropout": 0.0, "steps": 25, "micro_batch": 4, "batch": 4, "cutoff": 48,
            "lr": 0.03, "warmup": 2, "val_size": 8, "eval_every": 5, "dtype": "float32",
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


@pytest.fixture(scope="module")
def alpaca(data_root):
    from prunebench.sources.datasets import alpaca_examples

    return alpaca_examples(data_root)[:48]


def _pruned_tiny():
    model = tiny_model(kv_heads=2)
    shapes = Shapes.of(model)
    plan = PruningPlan([LayerKeep([], [], list(range(0, 96, 2))),  # layer 0 loses all attention
                        LayerKeep([0, 1], [0], list(range(60))),
                        LayerKeep(list(range(4)), [0, 1], list(range(96)))])
    apply_plan(model, plan)
    assert shapes.layers == 3
    return model


def test_prompt_tokens_are_masked(tokenizer, alpaca):
    item = tokenize_examples(tokenizer, alpaca[:1], cutoff=512)[0]
    n_prompt = sum(1 for label in item["labels"] if label == -100)
    assert 0 < n_prompt < len(item["input_ids"]) and item["input_ids"][-1] == tokenizer.eos_token_id
    assert item["labels"][n_prompt:] == item["input_ids"][n_prompt:]


def test_lora_lowers_validation_loss_and_merging_keeps_logits(tokenizer, alpaca, tmp_path):
    model = _pruned_tiny()
    assert "model.layers.0.self_attn.o_proj" not in lora_targets(model, RECOVERY["target_modules"])
    peft_model, log = train_lora(copy.deepcopy(model), tokenizer, alpaca, RECOVERY)
    assert log["best_val_loss"] < log["val_loss"][0][1] - 0.3
    # the adapters kept are the best ones seen, not the last
    _, val = split_examples(tokenizer, alpaca, RECOVERY, random.Random(0))
    assert validation_loss(peft_model, val, 4, tokenizer.eos_token_id) == pytest.approx(log["best_val_loss"], rel=1e-5)
    ids = tokens(2, 16)
    unmerged = logits(peft_model, ids)
    merged = peft_model.merge_and_unload().eval()
    torch.testing.assert_close(logits(merged, ids), unmerged, atol=1e-4, rtol=1e-4)
    save_pruned(merged, tokenizer, tmp_path / "tuned")
    torch.testing.assert_close(logits(load_pruned(tmp_path / "tuned"), ids), logits(merged, ids), atol=1e-5, rtol=0)


def test_recover_returns_plain_merged_model(tokenizer, alpaca):
    model, log = recover(_pruned_tiny(), tokenizer, alpaca, dict(RECOVERY, steps=3, eval_every=3))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert log["steps"] == 3 and len(log["val_loss"]) == 2


def test_memory_estimate_counts_weights_fisher_and_activations():
    from methods.llm_pruner import LLAMA_7B, memory_estimate_gb

    layer = 4 * 4096**2 + 3 * 4096 * 11008
    e1, e2 = (memory_estimate_gb(LLAMA_7B, 32000, 26, kind) for kind in ("element1", "element2"))
    assert e1["weights"] == pytest.approx((32 * layer + 2 * 32000 * 4096) * 2 / 1e9)
    assert e1["fisher"] == 0 and e2["fisher"] == pytest.approx(26 * layer * 4 / 1e9)
    assert e2["total"] - e1["total"] == pytest.approx(e2["fisher"])

"""Exact invariants of the shared pruning pieces and of the retraining-free methods
(FLAP, Wanda-sp, magnitude-sp, random) on tiny random LLaMAs, GQA and MHA."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from conftest import REPO, assert_mean_output_kept, greedy_without_cache, tokens

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import ActivationStats, InputMoments, collect_activation_stats
from prunebench.pruning import check_params, prune_model
from prunebench.pruning.checkpoint import layer_shapes, load_pruned, save_pruned
from prunebench.pruning.scores import METRICS
from prunebench.pruning.structure import LayerKeep, PruningPlan, Shapes, uniform_counts
from prunebench.pruning.surgery import RemovedAttention, apply_plan

RETRAINING_FREE = ["flap", "wanda_sp", "magnitude_sp", "random_sp"]


def stats_of(model, n: int = 8) -> ActivationStats:
    return collect_activation_stats(model, tokens(n, 32), batch_size=4)


def logits(model, ids=None) -> torch.Tensor:
    with torch.no_grad():
        return model(tokens(2, 24, seed=1) if ids is None else ids).logits


def pruned(model, module: str, ratio: float, params=None, mask=False, seed=0):
    model = copy.deepcopy(model)
    calib = Calibration(activations=stats_of(model), seed=seed)
    plan = prune_model(model, method_module(module), ratio, calib, params or {}, mask=mask)
    return model, plan


# --- activation statistics and metrics ------------------------------------------------------

def test_input_moments_stream_equals_batch():
    x = torch.randn(3, 50, 7, dtype=torch.float64) * 3 + 1
    acc = InputMoments(7)
    for chunk in x:  # three batches, merged
        acc.update(chunk)
    flat = x.reshape(-1, 7)
    assert acc.count == 150
    torch.testing.assert_close(acc.mean, flat.mean(0))
    torch.testing.assert_close(acc.var, flat.var(0, unbiased=False))
    torch.testing.assert_close(acc.sqnorm, (flat ** 2).sum(0))


def test_metrics_match_hand_computation_on_3x4():
    w = torch.tensor([[1.0, -2.0, 0.0, 3.0],
                      [0.5, 1.0, -1.0, 0.0],
                      [0.0, 2.0, 1.0, -1.0]], dtype=torch.float64)
    x = torch.tensor([[1.0, 0.0, 2.0, -1.0],
                      [3.0, 0.0, 2.0, 1.0]], dtype=torch.float64)  # two tokens, four input channels
    acc = InputMoments(4)
    acc.update(x)
    # by hand: means (2, 0, 2, 0); population variances (1, 0, 0, 1); ||X_j||^2 = (10, 0, 8, 2)
    assert acc.var.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert acc.sqnorm.tolist() == [10.0, 0.0, 8.0, 2.0]
    col_sq = [1 + 0.25 + 0, 4 + 1 + 4, 0 + 1 + 1, 9 + 0 + 1]
    assert METRICS["IFV"](w, acc.var, acc.sqnorm).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert METRICS["WIFV"](w, acc.var, acc.sqnorm).tolist() == [1.25, 0.0, 0.0, 10.0]
    expected_wifn = [(1 + 0.5 + 0) / 3 * 10 ** 0.5, (2 + 1 + 2) / 3 * 0.0, (0 + 1 + 1) / 3 * 8 ** 0.5,
                     (3 + 0 + 1) / 3 * 2 ** 0.5]
    torch.testing.assert_close(METRICS["WIFN"](w, acc.var, acc.sqnorm), torch.tensor(expected_wifn, dtype=torch.float64))
    torch.testing.assert_close(METRICS["L2"](w, None, None), torch.tensor(col_sq, dtype=torch.float64).sqrt())


def test_stats_round_trip(tmp_path, model):
    stats = stats_of(model)
    stats.save(tmp_path / "a.safetensors")
    back = ActivationStats.load(tmp_path / "a.safetensors")
    assert back.tokens == stats.tokens == 8 * 32
    for key in ("attn", "mlp"):
        for a, b in zip(stats.var[key], back.var[key]):
            assert torch.equal(a, b)


# --- surgery ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module", RETRAINING_FREE)
@pytest.mark.parametrize("ratio", [0.3, 0.6])
def test_removal_equals_masking(model, module, ratio):
    removed, plan = pruned(model, module, ratio)
    masked, plan_m = pruned(model, module, ratio, mask=True)
    assert [k.channels for k in plan.layers] == [k.channels for k in plan_m.layers]
    torch.testing.assert_close(logits(removed), logits(masked), atol=1e-5, rtol=1e-5)
    assert sum(p.numel() for p in removed.parameters()) < sum(p.numel() for p in model.parameters())


def test_bias_compensation_restores_mean_output(model):
    ids = tokens(8, 32)
    stats = collect_activation_stats(model, ids)
    pruned_model = copy.deepcopy(model)
    plan = prune_model(pruned_model, method_module("flap"), 0.5, Calibration(activations=stats), {})
    assert plan.compensate
    assert_mean_output_kept(model, pruned_model, plan, ids)


def test_layer_without_heads_runs_and_generates(model):
    shapes = Shapes.of(model)
    everything = list(range(shapes.intermediate))
    plan = PruningPlan([LayerKeep([], [], everything),  # no attention at all in layer 0
                        LayerKeep(list(range(shapes.heads)), list(range(shapes.kv_heads)), []),  # no MLP
                        LayerKeep(list(range(shapes.heads)), list(range(shapes.kv_heads)), everything)])
    removed, masked = copy.deepcopy(model), copy.deepcopy(model)
    apply_plan(removed, plan)
    apply_plan(masked, plan, mask=True)
    assert isinstance(removed.model.layers[0].self_attn, RemovedAttention)
    torch.testing.assert_close(logits(removed), logits(masked), atol=1e-5, rtol=1e-5)
    # generation with a KV cache: same tokens as without a cache
    prompt = tokens(1, 6, seed=3)
    with torch.no_grad():
        out = removed.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=True)
    assert torch.equal(out, greedy_without_cache(removed, prompt, 5))


def _skipping(model, skipped: list[int]):
    """The dense model whose layers `skipped` return their input (forward hooks, no surgery)."""
    skipping = copy.deepcopy(model)
    for i in skipped:
        skipping.model.layers[i].register_forward_hook(lambda _mod, args, _out: args[0])
    return skipping


def test_removed_layers_are_gone_and_equal_skipping_them(model, tmp_path, tokenizer):
    shapes = Shapes.of(model)  # 3 layers
    plan = PruningPlan.without_layers(shapes, [0, 2])
    assert plan.summary(shapes)["removed_fraction"] == pytest.approx(2 / 3, abs=1e-12)
    assert plan.summary(shapes)["kept_heads"] == [0, shapes.heads, 0]
    removed, masked = copy.deepcopy(model), copy.deepcopy(model)
    apply_plan(removed, plan)
    apply_plan(masked, plan, mask=True)
    assert len(removed.model.layers) == removed.config.num_hidden_layers == 1
    assert removed.model.layers[0].self_attn.layer_idx == 0  # renumbered for the KV cache
    reference = logits(_skipping(model, [0, 2]))
    assert torch.equal(logits(removed), reference)
    assert torch.equal(logits(masked), reference)
    save_pruned(removed, tokenizer, tmp_path / "ckpt")
    reloaded = load_pruned(tmp_path / "ckpt")
    assert reloaded.config.num_hidden_layers == 1 and torch.equal(logits(reloaded), reference)
    prompt = tokens(1, 6, seed=3)  # generation with a KV cache over the renumbered layers
    with torch.no_grad():
        out = reloaded.generate(prompt, max_new_tokens=5, do_sample=False, use_cache=True)
    assert torch.equal(out, greedy_without_cache(masked, prompt, 5))


@pytest.mark.parametrize("removed, message", [([3], "distinct indices in 0..2"), ([1, 1], "distinct"),
                                              ([0, 1, 2], "at least one must remain")])
def test_impossible_layer_removals_are_refused(model, removed, message):
    with pytest.raises(ValueError, match=message):
        PruningPlan.without_layers(Shapes.of(model), removed)


# --- structures ------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_al_am_keeps_parameter_budget(model, ratio):
    shapes = Shapes.of(model)
    _, plan = pruned(model, "flap", ratio)
    target = (1 - ratio) * shapes.prunable_params
    assert abs(plan.kept_params(shapes) - target) <= shapes.unit_cost


@pytest.mark.parametrize("module,params", [("flap", {"structure": "UL-UM"}), ("wanda_sp", {}),
                                           ("magnitude_sp", {}), ("random_sp", {}),
                                           ("flap", {"structure": "UL-UM", "match_params": False})])
def test_uniform_structures_remove_exact_counts(model, module, params):
    shapes = Shapes.of(model)
    ratio = 0.6
    _, plan = pruned(model, module, ratio, params)
    units, channels = uniform_counts(shapes, ratio, params.get("match_params", True))
    assert units == int(ratio * shapes.kv_heads)
    for keep in plan.layers:
        assert len(keep.kv_heads) == shapes.kv_heads - units
        assert len(keep.q_heads) == len(keep.kv_heads) * shapes.group_size
        assert len(keep.channels) == shapes.intermediate - channels
    if params.get("match_params", True):
        assert abs(plan.kept_params(shapes) - (1 - ratio) * shapes.prunable_params) <= shapes.layers * shapes.channel_cost


def test_kv_groups_stay_valid_gqa(model):
    removed, plan = pruned(model, "flap", 0.5)
    shapes = Shapes.of(model)
    for layer, keep in zip(removed.model.layers, plan.layers):
        if keep.q_heads:
            # every kept kv head keeps all its query heads, in HF's order
            assert keep.q_heads == [g * shapes.group_size + j for g in keep.kv_heads for j in range(shapes.group_size)]
            assert layer.self_attn.num_key_value_groups == shapes.group_size


@pytest.mark.parametrize("module", RETRAINING_FREE)
def test_same_seed_same_masks(model, module):
    _, a = pruned(model, module, 0.5, seed=0)
    _, b = pruned(model, module, 0.5, seed=0)
    assert [(k.q_heads, k.channels) for k in a.layers] == [(k.q_heads, k.channels) for k in b.layers]


def test_random_depends_on_seed(model):
    _, a = pruned(model, "random_sp", 0.5, seed=0)
    _, b = pruned(model, "random_sp", 0.5, seed=1)
    assert [k.channels for k in a.layers] != [k.channels for k in b.layers]


def test_flap_paper_metric_differs_from_reference_only_in_attention(model):
    _, ref = pruned(model, "flap", 0.5, {"attention_metric": "reference"})
    _, paper = pruned(model, "flap", 0.5, {"attention_metric": "paper"})
    assert ref.details["attention_metric"] == "reference" and paper.details["attention_metric"] == "paper"
    shapes = Shapes.of(model)
    for plan in (ref, paper):
        assert abs(plan.kept_params(shapes) - 0.5 * shapes.prunable_params) <= shapes.unit_cost


def test_unknown_parameter_is_rejected_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'metric'"):
        check_params(method_module("flap"), {"metirc": "WIFV"})
    with pytest.raises(ValueError, match=r"structure='AL-XX'.*'AL-AM'"):
        check_params(method_module("flap"), {"structure": "AL-XX"})


# --- checkpoints -----------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["flap", "random_sp"])
def test_save_reload_in_fresh_process_gives_identical_logits(model, module, tmp_path, tokenizer):
    removed, _ = pruned(model, module, 0.5)
    save_pruned(removed, tokenizer, tmp_path / "ckpt", {"method": module})
    ids = tokens(2, 24, seed=1)
    torch.save(ids, tmp_path / "ids.pt")
    script = ("import torch, sys; from prunebench.pruning.checkpoint import load_pruned; "
              "m = load_pruned(sys.argv[1]); ids = torch.load(sys.argv[2], weights_only=True); "
              "torch.save(m(ids).logits.detach(), sys.argv[3])")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ckpt"), str(tmp_path / "ids.pt"),
                    str(tmp_path / "out.pt")], check=True, cwd=REPO)
    reloaded = torch.load(tmp_path / "out.pt", weights_only=True)
    assert (reloaded - logits(removed, ids)).abs().max().item() <= 1e-5
    assert layer_shapes(load_pruned(tmp_path / "ckpt")) == layer_shapes(removed)


def test_tampered_or_truncated_checkpoint_is_refused(model, tmp_path, tokenizer):
    from prunebench.pruning.checkpoint import CheckpointError

    removed, _ = pruned(model, "random_sp", 0.5)
    save_pruned(removed, tokenizer, tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt or was modified"):
        load_pruned(tmp_path / "ckpt")
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError):
        load_pruned(tmp_path / "ckpt")

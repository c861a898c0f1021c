"""Exact invariants of the shared pruning pieces and of the retraining-free methods
(FLAP, Wanda-sp, magnitude-sp, random) on tiny random LLaMAs, GQA and MHA."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from conftest import REPO, cached_generation_is_greedy, skipping, tokens

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import ActivationStats, InputMoments, collect_activation_stats
from prunebench.pruning import check_params, prune_model
from prunebench.pruning.checkpoint import layer_shapes, load_pruned, save_pruned
from prunebench.pruning.scores import METRICS
from prunebench.pruning.structure import LayerKeep, PruningPlan, Shapes, round_widths, uniform_counts
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


def _dense_inputs(model, ids):
    """The inputs of every o_proj and down_proj on the dense model."""
    captured = {}
    hooks = [layer.get_submodule(name).register_forward_pre_hook(
        lambda _m, args, key=(i, name): captured.__setitem__(key, args[0].reshape(-1, args[0].shape[-1])))
        for i, layer in enumerate(model.model.layers) for name in ("self_attn.o_proj", "mlp.down_proj")]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return captured


def test_bias_compensation_restores_mean_output(model):
    ids = tokens(8, 32)
    stats = collect_activation_stats(model, ids)
    inputs = _dense_inputs(model, ids)
    shapes = Shapes.of(model)
    pruned_model = copy.deepcopy(model)
    plan = prune_model(pruned_model, method_module("flap"), 0.5, Calibration(activations=stats), {})
    assert plan.compensate
    head_dim = shapes.head_dim
    for i, keep in enumerate(plan.layers):
        for name, kept in (("self_attn.o_proj", [h * head_dim + d for h in keep.q_heads for d in range(head_dim)]),
                           ("mlp.down_proj", keep.channels)):
            x = inputs[(i, name)]
            dense_mean = model.model.layers[i].get_submodule(name)(x).mean(0)
            new = pruned_model.model.layers[i].get_submodule(name)
            pruned_mean = new(x[:, kept]).mean(0)
            assert torch.linalg.norm(pruned_mean - dense_mean) <= 1e-4 * torch.linalg.norm(dense_mean) + 1e-7


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
    assert cached_generation_is_greedy(removed)


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
    reference = logits(skipping(model, [0, 2]))
    assert torch.equal(logits(removed), reference)
    assert torch.equal(logits(masked), reference)
    save_pruned(removed, tokenizer, tmp_path / "ckpt")
    reloaded = load_pruned(tmp_path / "ckpt")
    assert reloaded.config.num_hidden_layers == 1 and torch.equal(logits(reloaded), reference)
    assert cached_generation_is_greedy(reloaded, masked)  # the KV cache over the renumbered layers


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


def test_rounding_drops_and_returns_units_by_score_at_the_budget():
    # head_dim 4: a multiple of 4 channels is any number of KV groups, so only channels round
    shapes = Shapes(layers=3, hidden=4, heads=2, kv_heads=2, head_dim=4, intermediate=10)
    scores = [torch.tensor(s, dtype=torch.float64) for s in ([9, 9, 9, 9, 5, 5, 5, 0, 0, 0],
                                                              [9, 9, 9, 9, 1, 0, 0, 0, 0, 0],
                                                              [9, 9, 9, 9, 3, 3, 0, 0, 0, 0])]
    plan = PruningPlan.from_units(shapes, [[0, 1]] * 3, [list(range(7)), list(range(5)), list(range(6))])
    rounded = round_widths(plan, shapes, 4, [torch.ones(2)] * 3, scores)
    # every layer rounds down to its 4 best channels (12 of the 18 kept); one more block of 4 brings
    # the total closest to 18 (16; 20 is no closer); the next 4 of layer 0 (5, 5, 5, 0) have the
    # highest mean z-score (-0.34, against -0.75 for layer 1's 1, 0, 0, 0 and -0.63 for layer 2's)
    assert [k.channels for k in rounded.layers] == [list(range(8)), [0, 1, 2, 3], [0, 1, 2, 3]]
    assert [k.kv_heads for k in rounded.layers] == [[0, 1]] * 3
    shift = rounded.details["rounding"]["budget_shift"]
    assert shift == pytest.approx(2 * shapes.channel_cost / shapes.prunable_params, abs=1e-12)
    # KV groups of width 4 at round_to 8: pairs of groups; a layer left whole is not touched
    shapes = Shapes(layers=3, hidden=4, heads=4, kv_heads=4, head_dim=4, intermediate=8)
    plan = PruningPlan.from_units(shapes, [[0, 1, 2], [1, 2, 3], [0, 1, 2, 3]], [list(range(8))] * 3)
    units = [torch.tensor(u, dtype=torch.float64) for u in ([3, 2, 1, 0], [0, 3, 2, 2.5], [1, 1, 1, 1])]
    rounded = round_widths(plan, shapes, 8, units, [torch.zeros(8)] * 3)
    # 6 groups kept: both layers round down to 2 (their best kept groups), then one pair comes back:
    # layer 1's (groups 2, 0: z 0.10 and -1.43, mean -0.67) before layer 0's (groups 2, 3: mean -0.77)
    assert [k.kv_heads for k in rounded.layers] == [[0, 1], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert rounded.details["rounding"]["budget_shift"] == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize("module", [*RETRAINING_FREE, "llm_pruner"])
@pytest.mark.parametrize("round_to", [8, 32])
def test_round_to_gives_multiples_at_the_budget(model, module, round_to):
    shapes = Shapes.of(model)  # 96 MLP channels: a multiple of 8 and of 32
    model_copy = copy.deepcopy(model)
    calib = Calibration(activations=stats_of(model), tokens=tokens(2, 16), seed=0)
    exact = prune_model(copy.deepcopy(model), method_module(module), 0.3, calib, {})
    plan = prune_model(model_copy, method_module(module), 0.3, calib, {"round_to": round_to})
    assert all(len(k.channels) % round_to == 0 for k in plan.layers)
    before = exact.summary(shapes)["removed_fraction"]
    after = plan.summary(shapes)["removed_fraction"]
    assert plan.details["rounding"] == {"round_to": round_to, "removed_fraction_unrounded": pytest.approx(before),
                                        "budget_shift": pytest.approx(after - before)}
    # the whole model within half a block of channels of the unrounded budget
    assert abs(after - before) <= (round_to / 2) * shapes.channel_cost / shapes.prunable_params + 1e-12
    assert [p.shape for p in model_copy.parameters()] != [p.shape for p in model.parameters()]


def test_rounding_a_uniform_structure_moves_each_layer_to_a_neighbouring_multiple(model):
    _, exact = pruned(model, "wanda_sp", 0.3)
    _, plan = pruned(model, "wanda_sp", 0.3, {"round_to": 8})
    for before, after in zip(exact.layers, plan.layers):
        assert len(after.channels) in (len(before.channels) // 8 * 8, len(before.channels) // 8 * 8 + 8)


def test_round_to_keeps_the_best_channels_by_the_methods_score(model):
    _, plan = pruned(model, "magnitude_sp", 0.3, {"round_to": 8})
    for layer, keep in zip(model.model.layers, plan.layers):
        norms = layer.mlp.down_proj.weight.detach().norm(dim=0)  # magnitude-sp's score: column L2 norm
        assert keep.channels == sorted(torch.argsort(norms, descending=True)[:len(keep.channels)].tolist())


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

"""Minitron width pruning and the hidden-size axis: activation magnitudes computed by hand on a
tiny LLaMA, the widths each axis combination keeps, and hidden-size removal on every supported
family (removal = masking with RMSNorm's mean over the kept channels, parameter counts, the
embedding scale and tied head, reload, cached generation, plain `from_pretrained`)."""
from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys

import pytest
import torch
from conftest import REPO, greedy_without_cache, tiny_model, tokens
from test_families import FAMILIES, assert_lora_trains_and_merges, every_cut, family_model, projection_params

from methods import method_module
from prunebench.calibration import Calibration
from prunebench.calibration.activations import ActivationStats, WindowMagnitude, collect_activation_stats
from prunebench.pruning import check_params, prune_model
from prunebench.pruning.checkpoint import load_pruned, plain_config, save_pruned
from prunebench.pruning.structure import PruningPlan, Shapes, width_counts
from prunebench.pruning.surgery import apply_plan


def logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


# --- importance -----------------------------------------------------------------------------------

def test_window_magnitude_is_the_l2_over_windows_of_the_mean_over_tokens():
    acc = WindowMagnitude(2)
    acc.update(torch.tensor([[[1.0, 2.0], [3.0, 0.0]]]))  # window 0: token means (2, 1)
    acc.update(torch.tensor([[[2.0, 2.0], [0.0, 4.0]]]))  # window 1, in a later batch: (1, 3)
    torch.testing.assert_close(acc.value, torch.tensor([math.sqrt(5), math.sqrt(10)], dtype=torch.float64))


def hand_model():
    """One LLaMA layer, hidden 4 = 2 heads of 2, MLP 4: v, o, gate and up are identities, q/k/down
    zero, so a window repeating one token has every quantity Minitron reads in closed form."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=8, hidden_size=4, intermediate_size=4, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=2, rms_norm_eps=1e-12,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    layer = model.model.layers[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (layer.input_layernorm, layer.post_attention_layernorm, model.model.norm):
            norm.weight.fill_(1)
        for linear in (layer.self_attn.v_proj, layer.self_attn.o_proj, layer.mlp.gate_proj, layer.mlp.up_proj):
            linear.weight.copy_(torch.eye(4))
        model.model.embed_tokens.weight[1] = torch.tensor([2.0, 0, 0, 0])  # rms 1
        model.model.embed_tokens.weight[2] = torch.tensor([0, 2.0, 1, 0])  # rms sqrt(5)/2
    return model


def test_importances_match_the_hand_computed_magnitudes():
    # Window a = token 1 x3, window b = token 2 x3 (identical tokens: attention returns their v).
    # input norm: a (2,0,0,0), b (0,4u,2u,0) with u = 1/sqrt(5); heads = its two halves' norms: a (2, 0),
    # b (4u, 2u); residual e + norm(e): a (4,0,0,0), b (1+2u)(0,2,1,0), normalised to the same as
    # before; MLP activation silu(x) * x of that. Each: sqrt(a^2 + b^2) over the two windows.
    model = hand_model()
    stats = collect_activation_stats(model, torch.tensor([[1, 1, 1], [2, 2, 2]]), batch_size=1)
    u = 1 / math.sqrt(5)
    silu = lambda z: z / (1 + math.exp(-z))  # noqa: E731
    norm_out = [2, 4 * u, 2 * u, 0]
    expected = {"heads": [math.sqrt(4 + 16 * u * u), 2 * u], "hidden_attn": norm_out, "hidden_mlp": norm_out,
                "mlp": [2 * silu(2), 4 * u * silu(4 * u), 2 * u * silu(2 * u), 0]}
    for key, values in expected.items():
        torch.testing.assert_close(stats.magnitude[key][0], torch.tensor(values, dtype=torch.float64),
                                   rtol=1e-6, atol=1e-7, msg=key)
    heads, mlp, hidden = method_module("minitron").importances(Calibration(activations=stats), Shapes.of(model))
    torch.testing.assert_close(hidden, torch.tensor([4, 8 * u, 4 * u, 0], dtype=torch.float64), rtol=1e-6, atol=1e-7)
    # The lowest go. [heads, mlp] at 0.5 (k = 0.5: one head of two): head 1 (2u < sqrt(4 + 16u^2)).
    # All axes at 0.5: the hidden size, a multiple of the 2 heads, is 2 (0.71 x 4 to a multiple of 2):
    # channels 0 and 1, the highest. With [mlp] at 0.4 one MLP channel of 4 stays (layer: 64 attention
    # + 4 x 12 MLP parameters; (0.6 x 112 - 64) / 12 rounds to 0, at least 1 stays): channel 0.
    calib = Calibration(activations=stats)
    plan = prune_model(copy.deepcopy(model), method_module("minitron"), 0.5, calib, {"axes": ["heads", "mlp"]})
    assert plan.layers[0].q_heads == [0] and plan.hidden_channels is None
    plan = prune_model(copy.deepcopy(model), method_module("minitron"), 0.5, calib, {})
    assert plan.hidden_channels == [0, 1]
    plan = prune_model(copy.deepcopy(model), method_module("minitron"), 0.4, calib, {"axes": ["mlp"]})
    assert plan.layers[0].channels == [0] and plan.hidden_channels is None


def test_statistics_keep_the_magnitudes_through_save_and_load(tmp_path):
    model = tiny_model()
    stats = collect_activation_stats(model, tokens(4, 16))
    stats.save(tmp_path / "stats.safetensors")
    loaded = ActivationStats.load(tmp_path / "stats.safetensors")
    for key, layers in stats.magnitude.items():
        for a, b in zip(layers, loaded.magnitude[key]):
            assert torch.equal(a, b), key
    old = ActivationStats(stats.mean, stats.var, stats.sqnorm, stats.tokens)  # saved before magnitudes existed
    old.save(tmp_path / "old.safetensors")
    with pytest.raises(ValueError, match="without .*rerun activation_stats"):
        method_module("minitron").prune(model, 0.5, Calibration(activations=ActivationStats.load(
            tmp_path / "old.safetensors")))


# --- widths ----------------------------------------------------------------------------------------

# The tiny GQA LLaMA: hidden 64, 2 KV groups of 2 heads (head_dim 16), MLP 96; a layer holds 2 x 6144
# attention + 96 x 192 MLP = 30720 parameters. At 0.5: [mlp] keeps (15360 - 12288) / 192 = 16
# channels; [heads, mlp] one group (k = 0.5), (15360 - 6144) / 192 = 48; [hidden] 32 channels; all
# three: k = sqrt(0.5), no group (int(0.29 x 2) = 0), hidden 45.25 to a multiple of the 4 heads = 44,
# then (15360 - 8448) / 132 = 52.4 -> 52 channels (a group at hidden 44: 2*2*44*16 + 2*44*16 = 4224);
# at 0.8 (k = 0.45) one group goes (int(1.1)): hidden 28.6 to a multiple of lcm(4, 2) = 28, then
# (6144 - 2688) / 84 = 41.1 -> 41 channels (a group at hidden 28: 2*2*28*16 + 2*28*16 = 2688).
WIDTHS = {(("mlp",), 0.5): (0, 16, 64), (("heads", "mlp"), 0.5): (1, 48, 64), (("hidden",), 0.5): (0, 96, 32),
          (("heads", "mlp", "hidden"), 0.5): (0, 52, 44), (("heads", "mlp", "hidden"), 0.8): (1, 41, 28),
          (("mlp",), 0.2): (0, 64, 64),
          (("heads", "mlp"), 0.2): (0, 64, 64)}


@pytest.mark.parametrize("axes, ratio", list(WIDTHS))
def test_width_counts_by_hand(axes, ratio):
    assert width_counts(Shapes.of(tiny_model()), ratio, axes) == WIDTHS[(axes, ratio)]


@pytest.mark.parametrize("axes", [["mlp"], ["heads", "mlp"], ["heads", "mlp", "hidden"], ["mlp", "hidden"]])
@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_the_ratio_counts_what_the_pruned_model_has(axes, ratio):
    model = tiny_model()
    shapes = Shapes.of(model)
    calib = Calibration(activations=collect_activation_stats(model, tokens(8, 32)))
    pruned = copy.deepcopy(model)
    plan = prune_model(pruned, method_module("minitron"), ratio, calib, {"axes": axes})
    summary = plan.summary(shapes)
    assert plan.kept_params(shapes) == projection_params(pruned)
    # within one MLP channel per layer, and one hidden channel where it shrinks, of the ratio
    kept_hidden = pruned.config.hidden_size
    tolerance = shapes.layers * 3 * 64 + ("hidden" in axes) * projection_params(pruned) / kept_hidden
    assert abs(summary["removed_fraction"] - ratio) * shapes.prunable_params <= tolerance
    assert summary["kept_hidden"] == kept_hidden and (kept_hidden < 64) == ("hidden" in axes)
    assert summary["embedding_params"]["kept"]["embedding"] == pruned.model.embed_tokens.weight.numel()
    assert summary["embedding_params"]["dense"]["embedding"] == 49152 * 64


def test_axes_are_checked_when_the_config_is_parsed():
    module = method_module("minitron")
    check_params(module, {"axes": ["heads", "mlp", "hidden"], "attention_unit": "query_heads"})
    for bad in (["mlp", "width"], [], ["mlp", "mlp"], "mlp"):
        with pytest.raises(ValueError, match="axes=.* is not allowed; give a non-empty list of distinct values"):
            check_params(module, {"axes": bad})


def test_the_config_entries_pass_the_config_check_and_masking_the_hidden_axis_does_not(tiny_dir):
    import yaml

    from prunebench.config import ConfigError, check_config

    config = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    config["models"] = {"tiny": {"source": f"path:{tiny_dir}"}}
    for file in ("extended", "paper"):
        entry = yaml.safe_load((REPO / "config" / f"{file}.yaml").read_text())["methods"]["minitron"]
        config["methods"] = {"minitron": entry}
        check_config(config, verify_data=False)
    config["methods"] = {"minitron": dict(entry, mask=True)}
    with pytest.raises(ConfigError, match="methods.minitron: mask: true is not possible: the hidden axis has no"):
        check_config(config, verify_data=False)
    config["methods"] = {"minitron": dict(entry, mask=True, params={"axes": ["heads", "mlp"]})}
    check_config(config, verify_data=False)
    config["methods"] = {"minitron": dict(entry, params={"axes": ["mlp", "embedding"]})}
    with pytest.raises(ConfigError, match="methods.minitron.params: parameter axes=\\['mlp', 'embedding'\\]"):
        check_config(config, verify_data=False)


def test_heads_alone_cannot_reach_half_and_the_budget_check_says_so():
    model = tiny_model()
    calib = Calibration(activations=collect_activation_stats(model, tokens(8, 32)))
    with pytest.raises(ValueError, match="removes 0.2000 of the attention\\+MLP parameters"):
        prune_model(model, method_module("minitron"), 0.5, calib, {"axes": ["heads"]})


# --- hidden-size removal on every family ---------------------------------------------------------

def _hidden_norms(model) -> list[torch.nn.Module]:
    return [model.model.norm] + [m for layer in model.model.layers for n, m in layer.named_children()
                                 if n not in ("self_attn", "mlp") and hasattr(m, "weight")]


def masked_with_kept_norms(model, plan: PruningPlan, stats) -> torch.nn.Module:
    """What hidden removal must equal: `plan` masked (heads, channels, layers), the removed hidden
    channels zeroed in the embedding and in every o_proj/down_proj output, and every RMSNorm taking
    its mean square over the kept channels only. With the other channels zero, that mean is d/d' times
    the mean over all d: RMSNorm(s x) / s with s = sqrt(d/d') (the norm's own forward, so its eps
    and its weight form, w or 1 + w, are its own)."""
    reference = apply_plan(copy.deepcopy(model), dataclasses.replace(plan, hidden_channels=None), stats, mask=True)
    d = model.config.hidden_size
    removed = sorted(set(range(d)) - set(plan.hidden_channels))
    s = math.sqrt(d / len(plan.hidden_channels))
    with torch.no_grad():
        reference.model.embed_tokens.weight[:, removed] = 0
        for layer in reference.model.layers:
            for linear in (layer.self_attn.o_proj, layer.mlp.down_proj):
                linear.weight[removed] = 0
                if linear.bias is not None:
                    linear.bias[removed] = 0
    for norm in _hidden_norms(reference):
        norm.register_forward_hook(lambda mod, args, _out: mod.forward(args[0] * s) / s)
    return reference


def hidden_plan(model, stats) -> PruningPlan:
    """Every kind of cut (test_families.every_cut: a layer without attention, a removed layer,
    query-head cuts, compensation biases) with 40 of 64 hidden channels kept, not a prefix."""
    plan = every_cut(model)
    plan.hidden_channels = sorted(torch.randperm(64, generator=torch.Generator().manual_seed(0))[:40].tolist())
    return plan


@pytest.mark.parametrize("name", list(FAMILIES))
def test_hidden_removal_is_masking_with_the_norm_over_kept_channels(name):
    model = family_model(name)
    ids = tokens(2, 24, seed=1)
    stats = collect_activation_stats(model, tokens(8, 32))
    for plan in (hidden_plan(model, stats),
                 method_module("minitron").prune(model, 0.5, Calibration(activations=stats))):
        removed = apply_plan(copy.deepcopy(model), plan, stats)
        reference = masked_with_kept_norms(model, plan, stats)
        assert removed.config.hidden_size == len(plan.hidden_channels)
        torch.testing.assert_close(logits(removed, ids), logits(reference, ids), atol=2e-5, rtol=1e-4, msg=name)
        assert plan.kept_params(Shapes.of(model)) == projection_params(removed)
    # zeroing the channels alone is not removal: the norms' mean still runs over all 64
    naive = masked_with_kept_norms(model, plan, stats)
    for norm in _hidden_norms(naive):
        norm._forward_hooks.clear()
    assert (logits(naive, ids) - logits(removed, ids)).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(FAMILIES))
def test_without_the_hidden_axis_removal_is_plain_masking(name):
    model = family_model(name)
    calib = Calibration(activations=collect_activation_stats(model, tokens(8, 32)))
    removed, masked = copy.deepcopy(model), copy.deepcopy(model)
    params = {"axes": ["heads", "mlp"], "attention_unit": "query_heads"}
    prune_model(removed, method_module("minitron"), 0.5, calib, params)
    prune_model(masked, method_module("minitron"), 0.5, calib, params, mask=True)
    ids = tokens(2, 24, seed=1)
    torch.testing.assert_close(logits(removed, ids), logits(masked, ids), atol=1e-5, rtol=1e-5)


def test_gemma_embedding_scale_follows_the_hidden_size_and_the_rows_absorb_it():
    for name in ("gemma2", "gemma3_text"):
        model = family_model(name)
        assert model.config.tie_word_embeddings
        stats = collect_activation_stats(model, tokens(4, 16))
        plan = method_module("minitron").prune(model, 0.5, Calibration(activations=stats))
        removed = apply_plan(copy.deepcopy(model), plan, stats)
        d, kept = 64, len(plan.hidden_channels)
        embed = removed.model.embed_tokens
        assert float(embed.embed_scale) == pytest.approx(math.sqrt(kept))  # what a reload from the config builds
        # the embedding's output is the dense one's on the kept channels
        ids = tokens(1, 5)
        with torch.no_grad():
            dense_out = model.model.embed_tokens(ids)[..., plan.hidden_channels]
            torch.testing.assert_close(embed(ids), dense_out, rtol=1e-5, atol=1e-6)
        assert removed.lm_head.weight is embed.weight  # still tied
        # the tied head's rows are sqrt(d/kept) larger: the final (1 + w) norm is that much smaller
        torch.testing.assert_close(1 + removed.model.norm.weight,
                                   (1 + model.model.norm.weight[plan.hidden_channels]) * math.sqrt(kept / d))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_hidden_pruned_model_reloads_and_generates_with_its_cache(name, tmp_path, tokenizer):
    model = family_model(name)
    stats = collect_activation_stats(model, tokens(8, 32))
    pruned = apply_plan(copy.deepcopy(model), hidden_plan(model, stats), stats)
    save_pruned(pruned, tokenizer, tmp_path / "m")
    reloaded = load_pruned(tmp_path / "m")
    ids = tokens(2, 24, seed=1)
    assert (logits(reloaded, ids) - logits(pruned, ids)).abs().max().item() <= 1e-5
    prompt = tokens(1, 6, seed=3)
    with torch.no_grad():
        cached = reloaded.generate(prompt, max_new_tokens=10, do_sample=False, use_cache=True)  # crosses window 8
    assert torch.equal(cached, greedy_without_cache(pruned, prompt, 10))


@pytest.mark.parametrize("name", ["llama", "gemma3_text"])
def test_lora_recovery_on_a_hidden_pruned_model(name, tokenizer):
    model = family_model(name)
    stats = collect_activation_stats(model, tokens(8, 32))
    assert_lora_trains_and_merges(apply_plan(copy.deepcopy(model), hidden_plan(model, stats), stats), tokenizer)


def test_minitron_models_load_with_plain_from_pretrained(tmp_path, tokenizer):
    """Uniform widths: the weights and a standard config of the smaller sizes load with transformers
    alone (a fresh process that imports no prunebench) and give the same logits."""
    ids = tokens(2, 24, seed=1)
    torch.save(ids, tmp_path / "ids.pt")
    expected = {}
    for name in FAMILIES:
        model = family_model(name)
        stats = collect_activation_stats(model, tokens(8, 32))
        pruned = copy.deepcopy(model)
        # at 0.8 every axis shrinks: query heads of every group, the hidden size, the MLP
        prune_model(pruned, method_module("minitron"), 0.8, Calibration(activations=stats),
                    {"axes": ["heads", "mlp", "hidden"], "attention_unit": "query_heads"})
        assert pruned.model.layers[0].self_attn.o_proj.in_features < model.model.layers[0].self_attn.o_proj.in_features
        assert pruned.config.hidden_size < 64
        pruned.save_pretrained(tmp_path / name)
        plain_config(pruned).save_pretrained(tmp_path / name)  # replaces the saved config.json
        expected[name] = logits(pruned, ids)
    script = ("import sys, torch; from transformers import AutoModelForCausalLM\n"
              "ids = torch.load(sys.argv[1] + '/ids.pt', weights_only=True)\n"
              "for name in sys.argv[2:]:\n"
              "    m = AutoModelForCausalLM.from_pretrained(sys.argv[1] + '/' + name).eval()\n"
              "    with torch.no_grad():\n"
              "        torch.save(m(ids).logits, sys.argv[1] + '/' + name + '.pt')\n"
              "assert 'prunebench' not in sys.modules")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), *FAMILIES], check=True, cwd=tmp_path)
    for name, reference in expected.items():
        assert (torch.load(tmp_path / f"{name}.pt", weights_only=True) - reference).abs().max().item() <= 1e-5, name


def test_plain_config_refuses_layers_of_different_widths():
    model = tiny_model()
    apply_plan(model, every_cut(model), collect_activation_stats(model, tokens(4, 16)))
    with pytest.raises(ValueError, match="layers \\[0, 1\\] differ from layer 0's"):
        plain_config(model)


def test_hidden_removal_refuses_what_it_cannot_cut():
    model = tiny_model()
    plan = dataclasses.replace(every_cut(model), hidden_channels=list(range(32)), compensate=False)
    with pytest.raises(ValueError, match="hidden-size pruning cannot be masked"):
        apply_plan(copy.deepcopy(model), plan, mask=True)
    model.model.adapter = torch.nn.Linear(64, 64)  # a module the surgery does not know
    with pytest.raises(ValueError, match=r"LLaMA architecture \(LlamaForCausalLM\) cannot lose hidden channels: the surgery "
                                         r"does not cut model.adapter.weight \(64, 64\)"):
        apply_plan(model, plan)

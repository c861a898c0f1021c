"""The depth methods on tiny LLaMAs: ShortGPT's Block Influence against HF's hidden states,
Shortened LLaMA's perplexity criterion against the evaluation's perplexity of the model with the
layer skipped by hooks, the layers they remove, and the depth-pruned model through checkpoints,
the KV cache and LoRA recovery."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import cached_generation_is_greedy, skipping, tiny_model, tokens

from methods import method_module
from methods.shortened_llama import removal_perplexity
from methods.shortgpt import block_influence
from prunebench.calibration import Calibration
from prunebench.evaluation.perplexity import window_nll
from prunebench.pruning import prune_model
from prunebench.pruning.checkpoint import load_pruned, save_pruned
from prunebench.pruning.structure import Shapes, depth_plan, layers_for_ratio
from prunebench.pruning.surgery import layers_removed
from prunebench.recovery.lora import recover


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def hf_block_influence(model, ids) -> torch.Tensor:
    """1 - mean cos between consecutive entries of HF's `hidden_states` (the reference's reading)."""
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    return torch.stack([1 - F.cosine_similarity(a.double(), b.double(), dim=-1).mean() for a, b in zip(hs, hs[1:])])


def test_block_influence_compares_each_layer_with_its_own_output_by_default(model):
    with torch.no_grad():  # a final norm that weighs channels differently (a fresh one is all ones)
        model.model.norm.weight.copy_(torch.linspace(0.2, 3.0, model.config.hidden_size))
    ids = tokens(10, 16)  # two batches of the hooks' 8: the mean runs over every token of both
    released = hf_block_influence(model, ids)  # the released scripts: the last entry is post-norm
    torch.testing.assert_close(block_influence(model, ids, "post_norm"), released, rtol=1e-6, atol=1e-9)
    model.config.tie_last_hidden_states = False  # HF's last hidden state before the final norm
    own_output = hf_block_influence(model, ids)  # the paper's BI: every layer's own output
    assert abs(own_output[-1] - released[-1]) > 1e-3  # the norm changes the last layer's score
    torch.testing.assert_close(block_influence(model, ids), own_output, rtol=1e-6, atol=1e-9)
    plan = prune_model(copy.deepcopy(model), method_module("shortgpt"), 0.3, Calibration(tokens=ids), {})
    assert plan.details["last_layer"] == "output"
    assert plan.details["layer_scores"] == pytest.approx(own_output.tolist(), rel=1e-6)


def test_a_layer_that_changes_nothing_has_no_influence_and_goes_first(model):
    with torch.no_grad():  # layer 1 adds nothing to the residual stream: its output is its input
        model.model.layers[1].self_attn.o_proj.weight.zero_()
        model.model.layers[1].mlp.down_proj.weight.zero_()
    ids = tokens(4, 16)
    bi = block_influence(model, ids)
    assert abs(bi[1].item()) < 1e-12 and (bi[[0, 2]] > 1e-3).all()
    pruned = copy.deepcopy(model)
    plan = prune_model(pruned, method_module("shortgpt"), 0.3, Calibration(tokens=ids), {})
    assert plan.removed_layers == [1] and plan.details["layers_removed"] == 1  # 0.3 x 3 layers: nearest is 1
    assert plan.summary(Shapes.of(model))["removed_fraction"] == pytest.approx(1 / 3, abs=1e-12)
    torch.testing.assert_close(logits(pruned, ids), logits(model, ids), atol=1e-5, rtol=1e-5)


def test_removal_perplexity_is_the_evaluations_perplexity_with_the_layer_skipped(model):
    ids = tokens(3, 16)
    before = logits(model, ids)
    for layer in range(3):
        expected = window_nll(skipping(model, [layer]), ids).mean().exp().item()
        assert removal_perplexity(model, ids, layer) == pytest.approx(expected, rel=1e-5)
    # scoring left the model as it was: layers, indices for the KV cache, config
    assert torch.equal(logits(model, ids), before)
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2]
    assert model.config.num_hidden_layers == 3


def test_layers_removed_is_the_model_without_them_and_restores_it(model):
    ids = tokens(2, 12)
    reference = logits(skipping(model, [0, 2]), ids)
    with layers_removed(model, [0, 2]) as short:
        assert len(short.model.layers) == short.config.num_hidden_layers == 1
        assert short.model.layers[0].self_attn.layer_idx == 0
        assert torch.equal(logits(short, ids), reference)
    assert len(model.model.layers) == 3 and model.model.layers[2].self_attn.layer_idx == 2


def test_ppl_criterion_removes_the_layers_whose_removal_hurts_least():
    model = tiny_model(kv_heads=2, layers=4)
    ids = tokens(4, 16)
    ppl = [window_nll(skipping(model, [i]), ids).mean().exp().item() for i in range(4)]
    plan = prune_model(copy.deepcopy(model), method_module("shortened_llama"), 0.5, Calibration(tokens=ids),
                       {"keep_first": 0, "keep_last": 0})
    assert plan.removed_layers == sorted(sorted(range(4), key=ppl.__getitem__)[:2])
    assert plan.details["layer_scores"] == pytest.approx(ppl, rel=1e-5)


def test_protected_layers_are_never_candidates():
    model = tiny_model(kv_heads=2, layers=6)
    ids = tokens(2, 16)
    module, calib = method_module("shortened_llama"), Calibration(tokens=ids)
    params = {"keep_first": 2, "keep_last": 2}
    plan = prune_model(copy.deepcopy(model), module, 0.34, calib, params)  # nearest to 0.34 x 6: 2 layers
    assert plan.removed_layers == [2, 3]
    with pytest.raises(ValueError, match="needs 3 of 6 layers removed, but only 2 are not protected"):
        prune_model(copy.deepcopy(model), module, 0.5, calib, params)
    with pytest.raises(ValueError, match="keep_first=3, keep_last=3"):
        prune_model(copy.deepcopy(model), module, 0.2, calib, {"keep_first": 3, "keep_last": 3})


def test_the_reference_protects_the_first_four_and_the_last_two_layers_by_default():
    model = tiny_model(kv_heads=2, layers=8)
    ids = tokens(2, 16)
    plan = prune_model(copy.deepcopy(model), method_module("shortened_llama"), 0.25, Calibration(tokens=ids), {})
    # 0.25 x 8 layers: 2 go, and layers 4 and 5 are the only candidates
    assert (plan.details["keep_first"], plan.details["keep_last"], plan.removed_layers) == (4, 2, [4, 5])
    assert plan.details["removal_order"] in ([4, 5], [5, 4])


def test_depth_scores_are_ranked_like_every_other_score():
    """Scores equal at float32 resolution tie, and ties go to the lower index, as `rank_order` does
    for every width method (a float64 argsort would remove layer 2 first)."""
    shapes = Shapes(layers=4, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536)
    scores = torch.tensor([0.5, 0.25 + 2**-40, 0.25, 0.75], dtype=torch.float64)
    plan = depth_plan(shapes, 0.25, scores)
    assert plan.details["removal_order"] == [1, 2, 0, 3] and plan.removed_layers == [1]


@pytest.mark.parametrize("layers, ratio, removed", [(30, 0.2, 6), (30, 0.5, 15), (3, 0.5, 2), (3, 0.2, 1),
                                                    (3, 0.1, 0), (4, 0.3, 1), (3, 0.99, 2)])
def test_whole_layer_count_is_the_nearest_to_the_ratio(layers, ratio, removed):
    shapes = Shapes(layers=layers, hidden=576, heads=9, kv_heads=3, head_dim=64, intermediate=1536)
    assert layers_for_ratio(shapes, ratio) == removed


RECOVERY = {"r": 4, "alpha": 8, "dropout": 0.0, "steps": 2, "micro_batch": 2, "batch": 2, "cutoff": 48, "lr": 0.01,
            "warmup": 1, "val_size": 4, "eval_every": 2, "dtype": "float32", "weight_decay": 0.0, "max_grad_norm": 1.0,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def test_depth_pruned_model_recovers_saves_reloads_and_generates(tokenizer, data_root, tmp_path):
    from prunebench.sources.datasets import alpaca_examples

    model = tiny_model(kv_heads=2, layers=4)
    ids = tokens(4, 16)
    plan = prune_model(model, method_module("shortgpt"), 0.5, Calibration(tokens=ids), {})
    assert len(model.model.layers) == 2 and len(plan.removed_layers) == 2
    tuned, log = recover(model, tokenizer, alpaca_examples(data_root)[:12], RECOVERY)
    assert log["schedule"]["steps"] == 2 and len(tuned.model.layers) == tuned.config.num_hidden_layers == 2
    save_pruned(tuned, tokenizer, tmp_path / "tuned")
    reloaded = load_pruned(tmp_path / "tuned")
    assert reloaded.config.num_hidden_layers == 2
    torch.testing.assert_close(logits(reloaded, ids), logits(tuned, ids), atol=1e-5, rtol=0)
    assert cached_generation_is_greedy(reloaded)  # the KV cache over the renumbered layers


def test_configs_run_the_depth_methods_as_published():
    """config/extended.yaml and config/paper.yaml agree: Shortened LLaMA protects the reference's 4 +
    2 blocks, ShortGPT compares each layer with its own output on 1024-token windows."""
    import yaml
    from conftest import REPO

    for file in ("extended", "paper"):
        methods = yaml.safe_load((REPO / "config" / f"{file}.yaml").read_text())["methods"]
        assert methods["shortened-llama-ppl"]["params"] == {"keep_first": 4, "keep_last": 2}
        assert methods["shortgpt"].get("params", {}).get("last_layer", "output") == "output"
        assert methods["shortgpt"]["calibration"]["seqlen"] == 1024

"""The shared-context scorer gives lm-eval's own numbers: per request, on every task YAML's real
requests, for the dense tiny model of every supported family (sliding windows, soft-capping, one KV
head, per-head norms, biases), a width-pruned and a depth-pruned one; and whole evaluations give
the same accuracies and choices."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import greedy_without_cache, tiny_model
from test_families import FAMILIES, every_cut, family_model

from prunebench.evaluation.scorer import SharedContextLM, _passes
from prunebench.evaluation.scorer_cost import requests_of
from prunebench.evaluation.zeroshot import available_tasks, evaluate_zeroshot, harness
from prunebench.pruning.structure import LayerKeep, PruningPlan, Shapes
from prunebench.pruning.surgery import apply_plan

DOCS = 4  # per task: 8 to 20 requests


def width_pruned():
    model = tiny_model(layers=3)
    return apply_plan(model, dataclasses.replace(every_cut(model), compensate=False, removed_layers=[]))


def depth_pruned():
    model = tiny_model(layers=4)
    full = Shapes.of(model)
    keep = LayerKeep(list(range(full.heads)), list(range(full.kv_heads)), list(range(full.intermediate)))
    return apply_plan(model, PruningPlan([keep] * 4, removed_layers=[1, 2]))


MODELS = {**{name: (lambda name=name: family_model(name)) for name in FAMILIES},
          "width-pruned": width_pruned, "depth-pruned": depth_pruned}


def assert_same_answers(reference: list[tuple[float, bool]], shared: list[tuple[float, bool]]) -> None:
    """Log-likelihoods within 1e-4 nats, or two float32 steps where a sum is large (lm-eval adds up a
    continuation in float32: at 1,100 nats, as a random tiny model gives a long PIQA answer, one
    step is 1.2e-4); `is_greedy` identical."""
    ref, new = np.array([a for a, _ in reference]), np.array([a for a, _ in shared])
    tolerance = np.maximum(1e-4, 2 * np.spacing(np.abs(ref).astype(np.float32)))
    worst = int(np.argmax(np.abs(ref - new) - tolerance))
    assert (np.abs(ref - new) <= tolerance).all(), f"request {worst}: {ref[worst]} vs {new[worst]}"
    assert [g for _, g in reference] == [g for _, g in shared]


@pytest.fixture(scope="module")
def task_requests(installed) -> dict[str, list]:
    return {task: requests_of(task, installed, DOCS) for task in available_tasks()}


@pytest.mark.parametrize("which", list(MODELS))
def test_every_tasks_requests_score_as_lm_eval_scores_them(which, tokenizer, task_requests):
    model = MODELS[which]()
    stock = harness(model, tokenizer, 4, "none", scorer="lm-eval")
    shared = harness(model, tokenizer, 4, "none")
    assert isinstance(shared, SharedContextLM)
    for requests in task_requests.values():
        assert_same_answers(stock.loglikelihood(requests, disable_tqdm=True),
                            shared.loglikelihood(requests, disable_tqdm=True))


@pytest.mark.parametrize("which", ["llama", "gemma3_text", "depth-pruned"])
def test_greedy_continuations_are_recognised(which, tokenizer):
    """Random tiny models never guess a real answer, so `is_greedy` is checked on continuations made
    greedy on purpose: the model's own next 3 tokens after each context (True), and the same with
    the last token changed (False), several continuations per context as in multiple choice."""
    model = MODELS[which]()
    contexts = [torch.randint(0, 49152, (1, n), generator=torch.Generator().manual_seed(n)) for n in (5, 11, 23)]
    requests = []
    for ctx in contexts:
        greedy = greedy_without_cache(model, ctx, 3)[0, ctx.shape[1]:].tolist()
        for cont in (greedy, greedy[:2] + [(greedy[2] + 1) % 49152], greedy[:1]):
            requests.append(((None, None), ctx[0].tolist(), cont))
    answers = SharedContextLM(pretrained=model, tokenizer=tokenizer, batch_size=2,
                              softmax_dtype=torch.float32)._loglikelihood_tokens(requests, disable_tqdm=True)
    assert [g for _, g in answers] == [True, False, True] * 3
    stock = harness(model, tokenizer, 2, "none", scorer="lm-eval")._loglikelihood_tokens(requests, disable_tqdm=True)
    assert_same_answers(stock, answers)


def test_whole_evaluations_give_lm_evals_accuracies_and_choices(tokenizer, installed):
    model = tiny_model()
    tasks = available_tasks()
    runs = {scorer: evaluate_zeroshot(model, tokenizer, tasks, installed, limit=10, batch_size=8, scorer=scorer)
            for scorer in ("lm-eval", "shared-context")}
    for task in tasks:
        stock, shared = runs["lm-eval"][task], runs["shared-context"][task]
        assert shared["value"] == stock["value"] and shared["all"] == pytest.approx(stock["all"])
        assert shared["items"].equals(stock["items"])


def test_passes_keep_their_token_budget_and_order():
    """Sorted lengths cut into passes of at most 4 x batch sequences and 64 x batch padded tokens
    (batch 2: 8 sequences, 128 tokens); a sequence longer than that gets a pass of its own."""
    assert _passes([200, 60, 60, 30, 30, 30, 30, 10, 10, 10, 10, 10, 10], 2) == [
        slice(0, 1), slice(1, 3), slice(3, 7), slice(7, 13)]
    assert _passes([5] * 20, 2) == [slice(0, 8), slice(8, 16), slice(16, 20)]
    assert _passes([], 2) == []

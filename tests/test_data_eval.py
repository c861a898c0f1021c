"""Data registry, perplexity protocol, calibration windows and the lm-eval task YAMLs, on the
real shared data."""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from prunebench.calibration import CalibrationSpec, calibration_windows
from prunebench.evaluation.items import read_items, write_items
from prunebench.evaluation.perplexity import perplexity, window_starts
from prunebench.evaluation.zeroshot import available_tasks, build_tasks, check_limits, evaluate_zeroshot, task_config
from prunebench.provenance import Stopwatch
from prunebench.sources.datasets import DATASETS, DataError, install_dataset, perplexity_text

TASKS = {"boolq": (3270, {2}), "piqa": (1838, {2}), "hellaswag": (10042, {4}), "winogrande": (1267, {2}),
         "arc_easy": (2376, {3, 4, 5}), "arc_challenge": (1172, {3, 4, 5}), "openbookqa": (500, {4})}


def test_missing_and_corrupt_files_are_named(data_root, tmp_path):
    src = tmp_path / "shared"
    shutil.copytree(data_root / "boolq", src / "boolq")
    (src / "boolq" / "dev.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match=r"corrupt data file .*boolq/dev.jsonl"):
        install_dataset("boolq", src, tmp_path / "out" / "boolq")
    assert not (tmp_path / "out" / "boolq").exists()
    with pytest.raises(DataError, match=r"missing data file .*ptb/ptb.test.txt"):
        install_dataset("ptb", src, tmp_path / "out" / "ptb")
    with pytest.raises(DataError, match="unknown dataset 'wikitext103'"):
        install_dataset("wikitext103", src, tmp_path / "x")


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_yaml_loads_real_file(installed, task):
    docs_expected, choices_allowed = TASKS[task]
    obj = build_tasks([task], installed)[task]
    docs = list(obj.test_docs())
    assert len(docs) == docs_expected
    for doc in docs[:: max(1, len(docs) // 200)]:
        choices = obj.doc_to_choice(doc)
        assert len(choices) in choices_allowed
        if task == "winogrande":  # partial scoring: the gold index is the context choice
            assert obj.doc_to_text(doc) in (0, 1) and obj.doc_to_target(doc)
        else:
            assert 0 <= obj.doc_to_target(doc) < len(choices)
            assert obj.doc_to_text(doc)
    # what guessing scores, as the YAML states it for the tables' notes: the split's mean of 1/choices
    chance = sum(1 / len(obj.doc_to_choice(doc)) for doc in docs) / len(docs)
    assert task_config(task)["metadata"]["chance"] == pytest.approx(chance, abs=5e-5)


def test_wikitext2_and_ptb_texts_follow_the_papers(data_root):
    wiki = perplexity_text("wikitext2", data_root)
    raw = (data_root / "wikitext2" / "wiki.test.raw").read_text()
    assert wiki.count("\n\n") >= 4357  # 4358 HF rows joined by "\n\n"
    assert wiki.replace("\n", "").replace(" ", "") == raw.replace("\n", "").replace(" ", "")
    ptb = perplexity_text("ptb", data_root)  # the validation split, as both references evaluate
    raw = (data_root / "ptb" / "ptb.valid.txt").read_text().splitlines()
    assert ptb.split("\n\n") == [line.strip() for line in raw] and len(raw) == 3370  # SOURCES.md
    assert len(perplexity_text("ptb_test", data_root).split("\n\n")) == 3761


def test_windows_are_non_overlapping_and_cover_the_text():
    starts = window_starts(1000, 128)
    assert starts == [0, 128, 256, 384, 512, 640, 768]  # the 104-token tail is dropped, as the papers
    sub = window_starts(100 * 128 + 5, 128, max_windows=10)
    assert len(sub) == 10 and len(set(sub)) == 10 and sub[0] == 0 and sub[-1] == 90 * 128
    assert all(b - a >= 128 for a, b in zip(sub, sub[1:]))


class BigramModel(torch.nn.Module):
    """logits[t] = table[token t]: a model whose perplexity can be computed by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table)

    def forward(self, ids):
        return type("Out", (), {"logits": self.table[ids]})()


def test_perplexity_equals_hand_computation():
    torch.manual_seed(0)
    table = torch.randn(5, 5)
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 2, 4, 1, 3, 3, 1, 0])  # 13 tokens: 3 windows of 4
    logp = torch.log_softmax(table, dim=-1)
    nll = [-logp[ids[s + t], ids[s + t + 1]].item() for s in (0, 4, 8) for t in range(3)]
    result = perplexity(BigramModel(table), ids, seqlen=4, batch_size=2)
    assert result["windows"] == 3 and result["windows_total"] == 3
    assert math.isclose(result["ppl"], math.exp(sum(nll) / len(nll)), rel_tol=1e-6)
    per_window = torch.tensor(nll).view(3, 3).mean(1).double()
    assert math.isclose(result["nll_stderr"], (per_window.std() / math.sqrt(3)).item(), rel_tol=1e-6)
    items = result["items"]  # every window's mean NLL, named by its first token's offset
    assert list(items["item"]) == [0, 4, 8] and set(items["kind"]) == {"perplexity"}
    assert items["value"].to_numpy() == pytest.approx(per_window.numpy(), rel=1e-6)


@pytest.mark.parametrize("corpus", ["c4", "bookcorpus"])
def test_calibration_windows_are_deterministic(tokenizer, data_root, corpus):
    spec = CalibrationSpec(corpus, nsamples=6, seqlen=64, seed=0)
    a = calibration_windows(tokenizer, spec, data_root, "auto", "llama")
    b = calibration_windows(tokenizer, spec, data_root, "auto", "llama")
    c = calibration_windows(tokenizer, CalibrationSpec(corpus, 6, 64, seed=1), data_root, "auto", "llama")
    assert a.shape == (6, 64) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert CalibrationSpec.from_id(spec.id) == spec
    # the window is real corpus text
    assert tokenizer.decode(a[0, 5:20]).strip() in " ".join(
        __import__("prunebench.sources.datasets", fromlist=["x"]).corpus_documents(corpus, data_root))


def test_limit_checks():
    assert check_limits(["boolq", "piqa"], 10) == {"boolq": 10, "piqa": 10}
    assert check_limits(["boolq"], None) == {"boolq": None}
    with pytest.raises(ValueError, match="limit 600 for 'openbookqa' is outside 1..500"):
        check_limits(["openbookqa"], {"openbookqa": 600})
    with pytest.raises(ValueError, match="unknown zero-shot task 'mmlu'"):
        check_limits(["mmlu"], None)
    assert len(available_tasks()) == 7


def test_zeroshot_through_lm_eval_keeps_its_sample_log(installed, tokenizer, data_root):
    """Each document's outcome is lm-eval's: its logged correctness averages to lm-eval's score, the
    chosen answer is right exactly where lm-eval counts it right, the gold is the data file's."""
    from conftest import tiny_model

    tasks = ["piqa", "arc_challenge", "winogrande"]
    results = evaluate_zeroshot(tiny_model(), tokenizer, tasks, installed, limit=12, batch_size=8)
    assert results["piqa"]["metric"] == "acc" and results["arc_challenge"]["metric"] == "acc_norm"
    for task in tasks:
        r, items = results[task], results[task]["items"]
        assert r["docs"] == 12 == len(items) == items["item"].nunique() and r["stderr"] is not None
        assert r["value"] == pytest.approx(items["value"].mean(), abs=1e-12)
        assert ((items["chosen"] == items["gold"]) == (items["value"] == 1)).all()
    labels = (data_root / "piqa" / "valid-labels.lst").read_text().split()
    piqa = results["piqa"]["items"]
    assert list(piqa["gold"]) == [int(labels[i]) for i in piqa["item"]]


def test_items_round_trip_exactly(tmp_path):
    torch.manual_seed(0)
    model, ids = BigramModel(torch.randn(7, 7)), torch.randint(0, 7, (203,))
    items = perplexity(model, ids, seqlen=8, max_windows=5)["items"]
    write_items(tmp_path / "items.csv", [items])
    back = read_items(tmp_path / "items.csv")
    assert back.equals(items) and back["gold"].isna().all()


def test_full_pass_gives_the_subsample_and_the_full_test_set():
    torch.manual_seed(0)
    model, ids = BigramModel(torch.randn(7, 7)), torch.randint(0, 7, (203,))  # 25 windows of 8
    watch = Stopwatch()
    both = perplexity(model, ids, seqlen=8, batch_size=3, max_windows=5, full=True, watch=watch)
    assert set(watch.times) == set(watch.cpu) == {"forward"}  # the forward passes, timed for throughput
    subsample = perplexity(model, ids, seqlen=8, batch_size=3, max_windows=5)
    full = perplexity(model, ids, seqlen=8, batch_size=3)
    assert (both["windows"], both["full"]["windows"], both["full"]["windows_total"]) == (5, 25, 25)
    assert both["ppl"] == pytest.approx(subsample["ppl"], rel=1e-12)
    assert both["full"]["ppl"] == pytest.approx(full["ppl"], rel=1e-12) and both["ppl"] != full["ppl"]
    assert "full" not in perplexity(model, ids, seqlen=8, max_windows=None, full=True)  # nothing to add


def test_the_dense_models_full_task_sets_come_beside_the_subsample(installed, tokenizer):
    """`full_zeroshot`: every document of the task under "full" (OBQA: 500), the subsample's
    numbers and items as without it; a later seeded draw of 500 of 500 documents is the same set."""
    from conftest import tiny_model

    from prunebench.evaluation.evaluate import evaluate

    settings = {"perplexity": {"datasets": [], "seqlen": 32, "batch_size": 4},
                "zeroshot": {"tasks": ["openbookqa"], "limit": 6, "seed": 0, "batch_size": 8, "scorer": "shared-context"}}
    model = tiny_model()
    sub, sub_items = evaluate(model, tokenizer, settings, installed)
    both, both_items = evaluate(model, tokenizer, settings, installed, full_zeroshot=True)
    full = evaluate_zeroshot(model, tokenizer, ["openbookqa"], installed, limit=500, batch_size=8)["openbookqa"]
    assert both["zeroshot"]["openbookqa"]["full"] == {"value": full["value"], "stderr": full["stderr"], "docs": 500}
    assert both["zeroshot"]["openbookqa"]["value"] == sub["zeroshot"]["openbookqa"]["value"]
    assert both_items[0].equals(sub_items[0]) and len(both_items[0]) == 6
    assert "full" not in sub["zeroshot"]["openbookqa"]

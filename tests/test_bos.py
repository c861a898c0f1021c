"""The BOS protocol: the token ids of every perplexity and calibration window under each policy,
with a BOS-adding word-level tokenizer whose ids are known by hand, and what lm-eval's harness was
really given, read back and recorded."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from prunebench.calibration import CalibrationSpec, calibration_windows
from prunebench.evaluation.evaluate import evaluate
from prunebench.evaluation.zeroshot import evaluate_zeroshot
from prunebench.sources.bos import adds_bos, read_back, resolve_bos

# "w3 w4 ... w12": ten words, ids 3..12; the tokenizer puts <s> (id 1) before a text by default
TEXT = " ".join(f"w{i}" for i in range(3, 13))


@pytest.fixture(scope="module")
def words():
    """A word-level tokenizer adding BOS like LLaMA's: <unk> 0, <s> 1, </s> 2, w3..w63 -> 3..63."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, 64)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


class Recorder(torch.nn.Module):
    """A language model that remembers every batch of token ids it is given."""

    def __init__(self, model_type: str, vocab: int = 64):
        super().__init__()
        self.table = torch.nn.Parameter(torch.zeros(vocab, vocab))
        self.config = SimpleNamespace(vocab_size=vocab, model_type=model_type)
        self.seen: list[list[list[int]]] = []

    def forward(self, ids):
        self.seen.append(ids.tolist())
        return SimpleNamespace(logits=self.table[ids])


PPL_WINDOWS = {  # seqlen 4: the 2 windows of the text, by hand
    "none": [[3, 4, 5, 6], [7, 8, 9, 10]],
    "text-start": [[1, 3, 4, 5], [6, 7, 8, 9]],  # the tokenizer's default on the whole text
    "every-window": [[1, 3, 4, 5, 6], [1, 7, 8, 9, 10]],  # BOS, then seqlen tokens
}
# `auto` by family, this tokenizer adding BOS: the references' text-start for LLaMA-2/3 and Mistral
# (FLAP lib/data.py, LLM-Pruner ppl_dataset.py), BOS at every window for Gemma (lm-eval forces it)
AUTO = {"llama": "text-start", "mistral": "text-start", "qwen2": "text-start", "gemma2": "every-window",
        "gemma3_text": "every-window"}


@pytest.mark.parametrize("policy, model_type", [(p, "llama") for p in PPL_WINDOWS] + [("auto", t) for t in AUTO])
def test_perplexity_windows_and_the_recorded_protocol(policy, model_type, words, monkeypatch):
    monkeypatch.setattr("prunebench.evaluation.evaluate.perplexity_text", lambda name, root: TEXT)
    model = Recorder(model_type)
    settings = {"perplexity": {"datasets": ["wikitext2"], "seqlen": 4, "batch_size": 8},
                "zeroshot": {"tasks": []}}
    out, _ = evaluate(model, words, settings, data_root=None, bos=policy)
    resolved = AUTO[model_type] if policy == "auto" else policy
    assert model.seen[0] == PPL_WINDOWS[resolved]  # the first call: every perplexity window in one batch
    assert out["perplexity"]["wikitext2"]["bos"] == resolved
    assert out["bos"] == {"setting": policy, "policy": resolved, "perplexity": resolved, "zeroshot": None}
    assert out["perplexity"]["wikitext2"]["tokens"] == (11 if resolved == "text-start" else 10)


@pytest.fixture
def one_document(monkeypatch):
    """The calibration corpus replaced by one document of twelve words, w3..w14."""
    monkeypatch.setattr("prunebench.calibration.windows.corpus_documents",
                        lambda corpus, root: [" ".join(f"w{i}" for i in range(3, 15))])


def test_calibration_windows_follow_the_policy(words, one_document):
    spec = CalibrationSpec("c4", nsamples=8, seqlen=4, seed=0)
    runs = {policy: calibration_windows(words, spec, None, policy, "llama").tolist()
            for policy in ("none", "text-start", "every-window", "auto")}
    gemma = calibration_windows(words, spec, None, "auto", "gemma3_text").tolist()
    bare, default = list(range(3, 15)), [1, *range(3, 15)]

    def slices(ids: list[int]) -> list[list[int]]:
        return [ids[o:o + 4] for o in range(len(ids) - 3)]

    assert all(w in slices(bare) for w in runs["none"])
    assert all(w[0] == 1 and w[1:] in slices(bare) for w in runs["every-window"])
    assert [w[1:] for w in runs["every-window"]] == runs["none"]  # the same draws, BOS in front
    assert runs["auto"] == runs["text-start"] and gemma == runs["every-window"]
    assert all(w in slices(default) for w in runs["text-start"])  # slices of the text with its BOS
    assert read_back([w[0] for w in runs["none"]], 1) == "none"
    assert read_back([w[0] for w in runs["every-window"]], 1) == "every-window"


def test_read_back_names_what_the_windows_start_with():
    assert read_back([1, 1, 1], 1) == "every-window"
    assert read_back([1, 7, 9], 1) == "text-start"
    assert read_back([7, 9], 1) == read_back([7, 9], None) == "none"
    assert read_back([7, 1, 1], 1) == "2 of 3 windows start with BOS"


def test_auto_follows_the_family_and_the_tokenizer_and_every_window_needs_a_bos(words, tokenizer, bos_tokenizer):
    assert (adds_bos(words), adds_bos(bos_tokenizer), adds_bos(tokenizer)) == (True, True, False)
    assert [resolve_bos("auto", bos_tokenizer, t) for t in ("llama", "mistral", "gemma2", "gemma3_text")] == \
        ["text-start", "text-start", "every-window", "every-window"]
    assert resolve_bos("auto", tokenizer, "llama") == "none"  # SmolLM2's tokenizer adds no BOS
    assert resolve_bos("auto", tokenizer, "gemma2") == "every-window"  # Gemma gets it whatever its tokenizer does
    with pytest.raises(ValueError, match="'auto' depends on the model's family: pass its config's model_type"):
        resolve_bos("auto", bos_tokenizer)
    no_bos = SimpleNamespace(bos_token_id=None)
    with pytest.raises(ValueError, match="'every-window' needs a BOS token, and this tokenizer has none"):
        resolve_bos("every-window", no_bos)
    with pytest.raises(ValueError, match=r"bos policy 'always' is not allowed; choose one of \['auto', "):
        resolve_bos("always", tokenizer)


@pytest.mark.parametrize("policy, which, expected, model_type", [
    ("every-window", "bos", {"add_bos_token": True, "requests": "every-window"}, "llama"),
    ("text-start", "bos", {"add_bos_token": False, "requests": "none"}, "llama"),  # the papers' lm-eval 0.3
    ("none", "bos", {"add_bos_token": False, "requests": "none"}, "llama"),
    ("every-window", "plain", {"add_bos_token": True, "requests": "every-window"}, "llama"),  # BOS forced on
    ("auto", "bos", {"add_bos_token": False, "requests": "none"}, "llama"),  # text-start
    ("auto", "plain", {"add_bos_token": True, "requests": "every-window"}, "gemma2"),  # as lm-eval 0.4 forced it
])
def test_lm_eval_gets_and_records_the_policy(policy, which, expected, model_type, tokenizer, bos_tokenizer, data_root):
    from conftest import tiny_model

    tok = bos_tokenizer if which == "bos" else tokenizer
    model = tiny_model()
    model.config.model_type = model_type  # the family `auto` reads; the tiny LLaMA runs the same
    first_tokens = []
    model.register_forward_pre_hook(lambda _m, args, kwargs: first_tokens.extend(
        (args[0] if args else kwargs["input_ids"])[:, 0].tolist()), with_kwargs=True)
    # lm-eval's own loop runs one request per sequence, BOS (if any) first; the shared-context scorer
    # runs the same requests left-padded (tests/test_scorer.py shows that it scores them alike)
    results = evaluate_zeroshot(model, tok, ["boolq"], data_root, limit=2, batch_size=4, bos=policy,
                                scorer="lm-eval")
    assert results["boolq"]["bos"] == expected
    assert first_tokens and all((t == 1) == (expected["requests"] == "every-window") for t in first_tokens)
    assert adds_bos(tok) == (which == "bos")  # the caller's tokenizer is left as it was

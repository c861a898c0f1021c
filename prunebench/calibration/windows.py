"""Calibration batches: `nsamples` seeded random windows of `seqlen` tokens from a named corpus.

As in the seeds' data loaders (FLAP/Wanda `get_c4`, LLM-Pruner `get_examples`): draw a random
document long enough for a window, then a random window inside it. A sentence-per-line corpus
(BookCorpus here) joins consecutive sentences from a random start until the text is long enough.
The model's BOS policy applies (prunebench.sources.bos): documents are tokenized with the
tokenizer's default special tokens under text-start, bare otherwise, and under every-window each
window is BOS followed by `seqlen` tokens.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from ..sources.bos import encode as encode_text
from ..sources.bos import resolve_bos
from ..sources.datasets import CORPORA, corpus_documents
from .activations import ActivationStats

__all__ = ["CalibrationSpec", "Calibration", "calibration_windows"]


@dataclass(frozen=True)
class CalibrationSpec:
    corpus: str
    nsamples: int
    seqlen: int
    seed: int = 0

    @property
    def id(self) -> str:
        """The cache key (the model's tokenizer is the other half: it is in the path)."""
        return f"{self.corpus}-{self.nsamples}x{self.seqlen}-seed{self.seed}"

    @classmethod
    def from_id(cls, ident: str) -> "CalibrationSpec":
        corpus, shape, seed = ident.rsplit("-", 2)
        nsamples, seqlen = shape.split("x")
        return cls(corpus, int(nsamples), int(seqlen), int(seed.removeprefix("seed")))

    def describe(self) -> str:
        return f"{CORPORA[self.corpus].description}, {self.nsamples}x{self.seqlen} tokens, seed {self.seed}"


@dataclass
class Calibration:
    """What a pruning method may read: the dense model's activation statistics, the calibration
    windows themselves (for gradient-based importance) and the seed."""

    activations: ActivationStats | None = None
    tokens: torch.Tensor | None = None
    seed: int = 0


def calibration_windows(tokenizer, spec: CalibrationSpec, data_root, bos: str, model_type: str) -> torch.Tensor:
    """LongTensor [nsamples, seqlen] ([nsamples, 1 + seqlen] under every-window); the same spec,
    tokenizer, BOS policy and model family (`auto` depends on it) always give the same tensor."""
    docs = corpus_documents(spec.corpus, data_root)
    rng = random.Random(spec.seed)
    policy = resolve_bos(bos, tokenizer, model_type)
    encode = lambda text: encode_text(tokenizer, text, policy)  # noqa: E731
    prefix = [tokenizer.bos_token_id] if policy == "every-window" else []
    sentences = CORPORA[spec.corpus].layout == "sentences"
    windows = []
    for _ in range(spec.nsamples):
        for _attempt in range(100 * len(docs)):
            start = rng.randrange(len(docs))
            ids = _joined(docs, start, encode, spec.seqlen) if sentences else encode(docs[start])
            if len(ids) > spec.seqlen:
                break
        else:
            raise ValueError(f"corpus {spec.corpus!r} has no text of more than {spec.seqlen} tokens")
        offset = rng.randint(0, len(ids) - spec.seqlen - 1)
        windows.append(prefix + ids[offset:offset + spec.seqlen])
    return torch.tensor(windows, dtype=torch.long)


def _joined(lines: list[str], start: int, encode, seqlen: int) -> list[int]:
    text, end = lines[start], start + 1
    while len(encode(text)) <= seqlen and end < len(lines):
        text, end = text + " " + lines[end], end + 1
    return encode(text)

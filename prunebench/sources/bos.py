"""The BOS protocol of a model (its config entry `bos`): whether perplexity windows, calibration
windows and zero-shot requests begin with the model's beginning-of-sequence token.

  text-start    both papers' code: the tokenizer's default on the whole text, so with a BOS-adding
                tokenizer only the first perplexity window starts with BOS; calibration windows are
                drawn from documents tokenized the same way; zero-shot requests carry none (the
                papers' lm-eval 0.3 encoded without special tokens)
  every-window  every perplexity and calibration window and every zero-shot request begins with
                BOS, the window then holding `seqlen` text tokens after it
  none          no BOS anywhere
  auto          what the references do with this model: every-window for the families documented to
                need BOS at every sequence start (EVERY_WINDOW_FAMILIES), else text-start when the
                tokenizer adds a BOS token by default (LLaMA-2/3, Mistral: FLAP's lib/data.py and
                LLM-Pruner's ppl_dataset.py tokenize the joined test text with the tokenizer's
                default), else none

What was run is read back from the token ids themselves (`read_back`) and recorded with the results.
"""
from __future__ import annotations

from collections.abc import Sequence

__all__ = ["BOS_POLICIES", "EVERY_WINDOW_FAMILIES", "adds_bos", "resolve_bos", "encode", "read_back"]

BOS_POLICIES = ("auto", "text-start", "every-window", "none")
# model_types that `auto` gives BOS at every sequence start: lm-eval 0.4.x's HFLM forced
# add_bos_token for any "gemma" model_type ("Gemma underperforms without it"); without it
# Gemma-3-270M's WikiText-2 perplexity is 362 instead of 46.
EVERY_WINDOW_FAMILIES = ("gemma", "gemma2", "gemma3", "gemma3_text")


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts its BOS token before a text by default (read from its output)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("The")["input_ids"][:1] == [bos]


def resolve_bos(policy: str, tokenizer, model_type: str | None = None) -> str:
    """The policy that applies to this tokenizer and model family (`model_type` of the model's
    config, which `auto` needs); every-window needs a BOS token."""
    if policy not in BOS_POLICIES:
        raise ValueError(f"bos policy {policy!r} is not allowed; choose one of {list(BOS_POLICIES)}")
    if policy == "auto":
        if model_type is None:
            raise ValueError("bos policy 'auto' depends on the model's family: pass its config's model_type")
        if model_type not in EVERY_WINDOW_FAMILIES:
            return "text-start" if adds_bos(tokenizer) else "none"
        policy = "every-window"
    if policy == "every-window" and tokenizer.bos_token_id is None:
        raise ValueError("bos policy 'every-window' needs a BOS token, and this tokenizer has none "
                         "(bos_token is unset); use 'none'")
    return policy


def encode(tokenizer, text: str, policy: str) -> list[int]:
    """The token ids of `text`: with the tokenizer's default special tokens under text-start, bare
    otherwise (every-window puts BOS before each window, not before the text)."""
    return tokenizer(text, add_special_tokens=policy == "text-start")["input_ids"]


def read_back(first_tokens: Sequence[int], bos_token_id: int | None) -> str:
    """The protocol that was run, from the first token of each window in order: every-window,
    text-start (the first window only), none, or how many windows started with BOS."""
    starts = [bos_token_id is not None and t == bos_token_id for t in first_tokens]
    if all(starts):
        return "every-window"
    if not any(starts):
        return "none"
    if starts[0] and not any(starts[1:]):
        return "text-start"
    return f"{sum(starts)} of {len(starts)} windows start with BOS"

"""A zero-shot scorer that computes only what lm-eval keeps.

lm-eval's HF model runs every request as context + continuation from scratch and applies the LM
head and log-softmax at every position, although it reads only the continuation's; a 4-choice
question runs its context 4 times. `SharedContextLM` is that model with one method replaced
(`_loglikelihood_tokens`); tasks, metrics, aggregation and sample logs stay lm-eval's:

- each distinct context runs once, left-padded in a batch of contexts (the layout `generate` uses,
  so every family's masks, sliding windows and caches apply unchanged), and the head runs on its
  last position only (`logits_to_keep=1`): that is the first continuation token's distribution;
- continuations longer than one token run as a second batch on copies of their context's KV cache,
  the head only at their real positions (`logits_to_keep` as a boolean mask).

Each request is truncated from the left exactly as lm-eval does (context + continuation at most
`max_length` + 1 tokens), so it scores the same tokens under the same positions.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

__all__ = ["SharedContextLM"]

Request = tuple[tuple[str, str] | None, list[int], list[int]]
# A pass holds up to 4 x batch sequences and batch x 64 tokens with padding: a CPU's matrix units
# want a few hundred tokens per pass, and sequences sorted by length pad little. Shared contexts go
# in passes 4 times larger, so that their continuations, sorted again, pad less.
ROWS_PER_BATCH, TOKENS_PER_ROW = 4, 64
SHARED_SCALE = 4


class SharedContextLM(HFLM):
    """lm-eval's HF model whose log-likelihoods reuse each context's KV cache for all of its
    continuations and run the LM head only where a log-likelihood is read."""

    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        if self.backend != "causal":
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        by_context: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, (_, context, continuation) in enumerate(requests):
            by_context[self._scored_context(context, continuation)].append(i)
        batch = override_bs or (self.batch_size if isinstance(self.batch_size, int) else 8)
        # A context with one continuation runs as one sequence; a shared one once, before its
        # continuations. Each kind longest first, as lm-eval orders its batches, cut into passes of
        # similar lengths (`_passes`).
        alone = sorted((c for c, ids in by_context.items() if len(ids) == 1),
                       key=lambda c: (-len(c) - len(requests[by_context[c][0]][2]), c))
        shared = sorted((c for c, ids in by_context.items() if len(ids) > 1), key=lambda c: (-len(c), c))
        answers: list[tuple[float, bool] | None] = [None] * len(requests)
        chunks = [(self._score_alone, alone[p]) for p in
                  _passes([len(c) + len(requests[by_context[c][0]][2]) for c in alone], batch)]
        chunks += [(self._score_shared, shared[p]) for p in _passes([len(c) for c in shared], batch, SHARED_SCALE)]
        for score, contexts in tqdm(chunks, disable=disable_tqdm or self.rank != 0, desc="Scoring contexts"):
            rows = [(i, c, requests[i][2]) for c in contexts for i in by_context[c]]
            for (i, _, _), answer in zip(rows, score(rows, batch)):
                answers[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
        return answers

    def _scored_context(self, context: list[int], continuation: list[int]) -> tuple[int, ...]:
        """The context lm-eval's model sees: the request cut from the left to max_length + 1 tokens."""
        if not context or not 0 < len(continuation) <= self.max_length:
            raise ValueError(f"a request needs a context and 1..{self.max_length} continuation tokens; got "
                             f"{len(context)} and {len(continuation)}")
        return tuple((context + continuation)[-(self.max_length + 1):][:-len(continuation)])

    def _answer(self, logp: torch.Tensor, continuation: list[int]) -> tuple[float, bool]:
        """(log-likelihood, is_greedy) of `continuation` from the log-probabilities at its positions."""
        target = torch.tensor(continuation, device=logp.device)
        return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())

    def _log_softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1, dtype=self.softmax_dtype)

    @torch.no_grad()
    def _score_alone(self, rows: list[tuple[int, tuple[int, ...], list[int]]], _batch: int):
        """Requests whose context no other request shares: context + continuation (but its last
        token) right-padded in one pass, the head only at the continuation's positions."""
        width = max(len(c) + len(cont) - 1 for _, c, cont in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        keep = torch.zeros((len(rows), width), dtype=torch.bool)
        for row, (_, context, cont) in enumerate(rows):
            ids[row, :len(context) + len(cont) - 1] = torch.tensor(list(context) + cont[:-1])
            keep[row, len(context) - 1:len(context) + len(cont) - 1] = True
        # right padding needs no mask: a causal model's real positions never see the pads after them
        out = self.model(input_ids=ids.to(self.device), use_cache=False, logits_to_keep=keep.to(self.device))
        logp = self._log_softmax(out.logits).split(keep.sum(1).tolist())
        return [self._answer(lp, cont) for lp, (_, _, cont) in zip(logp, rows)]

    @torch.no_grad()
    def _score_shared(self, rows: list[tuple[int, tuple[int, ...], list[int]]], batch: int):
        """Requests grouped by shared context: the contexts left-padded in one pass (the layout
        `generate` uses, so every family's masks, sliding windows and caches apply), the head on
        their last position only; then the continuations' later tokens, longest first in batches
        of `batch`, each on a copy of its context's KV cache."""
        contexts = list(dict.fromkeys(c for _, c, _ in rows))
        width = max(len(c) for c in contexts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(contexts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(contexts), width), dtype=torch.long)
        for row, context in enumerate(contexts):
            ids[row, width - len(context):] = torch.tensor(context)
            mask[row, width - len(context):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                         use_cache=True, logits_to_keep=1)
        first = self._log_softmax(out.logits)  # the first continuation token's distribution
        later: dict[int, torch.Tensor] = {}  # row -> log-probabilities of its continuation's later tokens
        longer = sorted((r for r, (_, _, cont) in enumerate(rows) if len(cont) > 1), key=lambda r: -len(rows[r][2]))
        for span in _passes([len(rows[r][2]) - 1 for r in longer], batch):
            part = longer[span]
            source = [contexts.index(rows[r][1]) for r in part]
            later.update(zip(part, self._continue(out.past_key_values, mask, source, [rows[r][2] for r in part])))
        answers = []
        for r, (_, context, cont) in enumerate(rows):
            logp = first[contexts.index(context)][None]
            answers.append(self._answer(torch.cat([logp, later[r]]) if r in later else logp, cont))
        return answers

    def _continue(self, cache, ctx_mask: torch.Tensor, source: list[int], continuations: list[list[int]]):
        """Each continuation but its last token, on a copy of its context's cache (`source`: the
        context's row): the log-probabilities of its tokens after the first, [tokens - 1, vocab] each."""
        index = torch.tensor(source, device=self.device)
        cache = _rows_of(cache, index)
        width = max(len(cont) - 1 for cont in continuations)
        ids = torch.zeros((len(continuations), width), dtype=torch.long)
        real = torch.zeros((len(continuations), width), dtype=torch.bool)
        for row, cont in enumerate(continuations):
            ids[row, :len(cont) - 1] = torch.tensor(cont[:-1])
            real[row, :len(cont) - 1] = True
        ids, real, ctx_mask = ids.to(self.device), real.to(self.device), ctx_mask[index]
        positions = ctx_mask.sum(1, keepdim=True) + torch.arange(width, device=self.device)
        out = self.model(input_ids=ids, attention_mask=torch.cat([ctx_mask, real.long()], 1),
                         position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=real)
        return self._log_softmax(out.logits).split(real.sum(1).tolist())


def _passes(lengths: list[int], batch: int, scale: int = 1) -> list[slice]:
    """Consecutive spans of `lengths` (sorted longest first) of at most ROWS_PER_BATCH x `batch`
    x `scale` sequences whose padded size, the first one's length times their number, stays within
    TOKENS_PER_ROW x `batch` x `scale` tokens (one sequence at least)."""
    spans, start = [], 0
    while start < len(lengths):
        end = start + 1
        while (end < len(lengths) and end - start < ROWS_PER_BATCH * batch * scale
               and lengths[start] * (end + 1 - start) <= TOKENS_PER_ROW * batch * scale):
            end += 1
        spans.append(slice(start, end))
        start = end
    return spans


def _rows_of(cache, index: torch.Tensor):
    """A new cache holding the rows `index` of `cache` (repeats allowed), which stays as it was: a
    dynamic cache layer rebinds its tensors when it selects or grows, never writes into them, so
    shallow copies of the cache and its layers suffice."""
    rows = copy.copy(cache)
    rows.layers = [copy.copy(layer) for layer in cache.layers]
    rows.batch_select_indices(index)
    return rows

"""Shortened LLaMA, PPL criterion (Kim et al., arXiv 2402.02834): remove the decoder layers whose
removal hurts the calibration perplexity least.

For each layer, the model without that one layer computes its perplexity on the calibration
windows (exp of the mean next-token NLL over every predicted token, as the reference's
`anal_block_sensitivity_ppl.py`); the layers of lowest perplexity-when-removed go whole, one-shot,
until the parameter target is met. `keep_first`/`keep_last` exclude the first and last layers from
the candidates; the default, 4 and 2, is the reference's: the paper introduces the heuristic for its
Taylor+ criterion, but `block_prune.py` applies it to every criterion unless `--no_plus_heuristic`.
The counts are fixed whatever the depth (no scaling rule is published).
"""
from __future__ import annotations

import torch

from prunebench.calibration import Calibration
from prunebench.pruning.structure import PruningPlan, Shapes, depth_plan
from prunebench.pruning.surgery import layers_removed

NEEDS = "tokens"


def prune(model, ratio: float, calib: Calibration, *, keep_first: int = 4, keep_last: int = 2) -> PruningPlan:
    shapes = Shapes.of(model)
    if keep_first < 0 or keep_last < 0 or keep_first + keep_last >= shapes.layers:
        raise ValueError(f"keep_first={keep_first}, keep_last={keep_last}: they must be >= 0 and leave some of "
                         f"the {shapes.layers} layers as candidates")
    ppl = torch.tensor([removal_perplexity(model, calib.tokens, i) for i in range(shapes.layers)], dtype=torch.float64)
    protected = (*range(keep_first), *range(shapes.layers - keep_last, shapes.layers))
    return depth_plan(shapes, ratio, ppl, protected, criterion="perplexity with the layer removed",
                      keep_first=keep_first, keep_last=keep_last, calibration_tokens=list(calib.tokens.shape))


@torch.inference_mode()
def removal_perplexity(model, tokens: torch.Tensor, layer: int, batch_size: int = 8) -> float:
    """Perplexity of `tokens` [n, seqlen] on the model without decoder layer `layer`."""
    device = next(model.parameters()).device
    nll = 0.0
    with layers_removed(model, [layer]):
        for start in range(0, len(tokens), batch_size):
            batch = tokens[start:start + batch_size].to(device)
            nll += model(batch, labels=batch, use_cache=False).loss.double().item() * len(batch)
    return float(torch.tensor(nll / len(tokens)).exp())

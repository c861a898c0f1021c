"""ShortGPT (Men et al., arXiv 2403.03853): remove the decoder layers of least Block Influence.

BI_i = 1 - mean over calibration tokens of cos(x_i, x_{i+1}), between the hidden state entering
decoder layer i and the one leaving it, from one forward pass of the dense model; the layers of
lowest BI are removed whole (one-shot) until the parameter target is met.

The last layer: the paper's BI compares every layer's input with that layer's own output, the last
one included (`last_layer="output"`, the default). The released scripts (icip-cas/ShortGPT
`shortgpt.py` and the unofficial sramshetty/ShortGPT `short_hf.py` it derives from) read HF's
`output_hidden_states`, whose last entry is the final norm's output: `"post_norm"` reproduces that.
Calibration: those scripts feed whole PG19 validation books, in consecutive 256-token chunks
(icip-cas `run_shortgpt.py`) or in 1024-token windows slid by 256 (`short_hf.py`); the configs use
windows as long as the model's context and the budget allow. Padding: the calibration windows are
fixed-length slices of the corpus, so every position is a real token and the mean runs over all of
them (the reference pads a batch and averages the pad positions in; with its batch of one book
there are none).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from prunebench.calibration import Calibration
from prunebench.pruning.structure import PruningPlan, Shapes, depth_plan

NEEDS = "tokens"


def prune(model, ratio: float, calib: Calibration, *,
          last_layer: Literal["output", "post_norm"] = "output") -> PruningPlan:
    shapes = Shapes.of(model)
    bi = block_influence(model, calib.tokens, last_layer)
    return depth_plan(shapes, ratio, bi, criterion="block influence", last_layer=last_layer,
                      calibration_tokens=list(calib.tokens.shape))


@torch.inference_mode()
def block_influence(model, tokens: torch.Tensor, last_layer: str = "output", batch_size: int = 8) -> torch.Tensor:
    """BI of every decoder layer [layers], float64, accumulated by hooks batch by batch (no hidden
    state is kept beyond its layer)."""
    layers = model.model.layers
    sums = torch.zeros(len(layers), dtype=torch.float64)
    inputs: dict[int, torch.Tensor] = {}

    def accumulate(i: int, output: torch.Tensor) -> None:
        cos = F.cosine_similarity(inputs.pop(i).double(), output.double(), dim=-1)
        sums[i] += (1 - cos).sum().item()

    def on_output(i: int, out) -> None:
        if i < len(layers) - 1 or last_layer == "output":
            accumulate(i, out[0] if isinstance(out, tuple) else out)

    def on_input(i: int, args: tuple, kwargs: dict) -> None:
        inputs[i] = args[0] if args else kwargs["hidden_states"]

    hooks = [layer.register_forward_pre_hook(lambda _m, args, kwargs, i=i: on_input(i, args, kwargs), with_kwargs=True)
             for i, layer in enumerate(layers)]
    hooks += [layer.register_forward_hook(lambda _m, _args, out, i=i: on_output(i, out))
              for i, layer in enumerate(layers)]
    if last_layer == "post_norm":
        hooks.append(model.model.norm.register_forward_hook(lambda _m, _args, out: accumulate(len(layers) - 1, out)))
    device = next(model.parameters()).device
    try:
        for start in range(0, len(tokens), batch_size):  # the decoder alone: BI reads no logits (8 windows
            # of 1024 tokens of Gemma's 262k vocabulary are 8.6 GB of them)
            model.model(tokens[start:start + batch_size].to(device), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return sums / tokens.numel()

"""Per-input-channel scores of `o_proj` and `down_proj`: the columns whose removal takes a head
or an MLP channel away. FLAP's three metrics, Wanda's |W|*||X||, and the plain column norm.
"""
from __future__ import annotations

import torch

from ..calibration.activations import ActivationStats

__all__ = ["METRICS", "input_channel_scores"]


def _ifv(w, var, sqnorm):
    return var  # fluctuation of the input channel


def _wifv(w, var, sqnorm):
    return var * w.pow(2).sum(dim=0)  # ... weighted by the squared norm of its weight column


def _wifn(w, var, sqnorm):
    return (w.abs() * sqnorm.sqrt()).mean(dim=0)  # mean_i |W_ij| * ||X_j||_2 (Wanda's metric)


def _l2(w, var, sqnorm):
    return w.pow(2).sum(dim=0).sqrt()  # weight column L2 norm: no data


METRICS = {"IFV": _ifv, "WIFV": _wifv, "WIFN": _wifn, "L2": _l2}
NEEDS_DATA = {"IFV", "WIFV", "WIFN"}


def input_channel_scores(model, metric: str, stats: ActivationStats | None = None
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(attention scores [heads*head_dim], MLP scores [intermediate]) per layer, float64."""
    if metric in NEEDS_DATA and stats is None:
        raise ValueError(f"metric {metric} needs activation statistics")
    score = METRICS[metric]
    out: dict[str, list[torch.Tensor]] = {"attn": [], "mlp": []}
    for i, layer in enumerate(model.model.layers):
        for key, linear in (("attn", layer.self_attn.o_proj), ("mlp", layer.mlp.down_proj)):
            w = linear.weight.detach().double().cpu()
            var = stats.var[key][i] if stats else None
            sqnorm = stats.sqnorm[key][i] if stats else None
            out[key].append(score(w, var, sqnorm))
    return out["attn"], out["mlp"]

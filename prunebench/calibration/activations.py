"""Activation statistics of the dense model: one calibration pass, hooks on the inputs of every
`o_proj` and `down_proj`, per input channel in float64: mean, variance and squared L2 norm.

FLAP reads mean (bias compensation) and variance (fluctuation); Wanda-sp reads the norm. The
windows are streamed in batches, so memory does not grow with the number of samples.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..io import load_tensors, save_tensors

__all__ = ["InputMoments", "ActivationStats", "collect_activation_stats"]

MODULES = {"attn": "self_attn.o_proj", "mlp": "mlp.down_proj"}


class InputMoments:
    """Running per-channel moments of a linear layer's input (Chan et al.'s pairwise merge)."""

    def __init__(self, dim: int):
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dtype=torch.float64)  # sum of squared deviations from the mean
        self.sqnorm = torch.zeros(dim, dtype=torch.float64)  # ||X_j||^2 over all tokens

    def update(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).to(device="cpu", dtype=torch.float64)
        n = x.shape[0]
        batch_mean = x.mean(dim=0)
        delta = batch_mean - self.mean
        total = self.count + n
        self.m2 += ((x - batch_mean) ** 2).sum(dim=0) + delta ** 2 * (self.count * n / total)
        self.mean += delta * (n / total)
        self.sqnorm += (x * x).sum(dim=0)
        self.count = total

    @property
    def var(self) -> torch.Tensor:
        """Population variance over all calibration tokens (the fluctuation of the channel)."""
        return self.m2 / self.count


@dataclass
class ActivationStats:
    """Per layer and module ("attn" = o_proj input, "mlp" = down_proj input): mean, var, sqnorm."""

    mean: dict[str, list[torch.Tensor]]
    var: dict[str, list[torch.Tensor]]
    sqnorm: dict[str, list[torch.Tensor]]
    tokens: int

    def save(self, path, metadata: dict | None = None) -> None:
        tensors = {f"{stat}.{module}.{i}": t
                   for stat in ("mean", "var", "sqnorm")
                   for module, layers in getattr(self, stat).items()
                   for i, t in enumerate(layers)}
        save_tensors(path, tensors, dict(metadata or {}, tokens=self.tokens))

    @classmethod
    def load(cls, path) -> "ActivationStats":
        tensors, meta = load_tensors(path)
        n_layers = 1 + max(int(k.rsplit(".", 1)[1]) for k in tensors)
        stats = {stat: {m: [tensors[f"{stat}.{m}.{i}"] for i in range(n_layers)] for m in MODULES}
                 for stat in ("mean", "var", "sqnorm")}
        return cls(**stats, tokens=int(meta["tokens"]))


@torch.inference_mode()
def collect_activation_stats(model, windows: torch.Tensor, batch_size: int = 8) -> ActivationStats:
    """Run the calibration windows through the dense decoder (no LM head) and gather the moments."""
    layers = model.model.layers
    moments = {m: [InputMoments(layer.get_submodule(path).in_features) for layer in layers]
               for m, path in MODULES.items()}
    hooks = [layer.get_submodule(path).register_forward_pre_hook(
                 lambda _mod, args, acc=moments[m][i]: acc.update(args[0]))
             for m, path in MODULES.items() for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    try:
        for start in tqdm(range(0, len(windows), batch_size), desc="activation statistics", mininterval=10):
            model.model(windows[start:start + batch_size].to(device), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return ActivationStats(
        mean={m: [acc.mean for acc in accs] for m, accs in moments.items()},
        var={m: [acc.var for acc in accs] for m, accs in moments.items()},
        sqnorm={m: [acc.sqnorm for acc in accs] for m, accs in moments.items()},
        tokens=moments["attn"][0].count,
    )

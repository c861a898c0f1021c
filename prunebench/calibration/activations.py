"""Activation statistics of the dense model: one calibration pass, hooks on the inputs of every
`o_proj` and `down_proj`, per input channel in float64: mean, variance and squared L2 norm; and
the activation magnitudes Minitron ranks width by (`magnitude`).

FLAP reads mean (bias compensation) and variance (fluctuation); Wanda-sp reads the norm; Minitron
the magnitudes. The windows are streamed in batches, so memory does not grow with the number of
samples.

Magnitudes use Minitron's aggregation (Muralidharan et al. 2024, arXiv 2407.14679, Sec. 2 and
Table 11; NVIDIA ModelOpt's hooks): per calibration window the mean over its tokens, then the L2
norm over the windows, per unit and layer:
  heads        the L2 norm of each attention head's output (its slice of the o_proj input), per token
  mlp          |intermediate activation| (the down_proj input), per channel
  hidden_attn  |the norm output feeding q/k/v| (input_layernorm), per hidden channel
  hidden_mlp   |the norm output feeding gate/up| (LLaMA's post_attention_layernorm, Gemma's
               pre_feedforward_layernorm), per hidden channel
The norms are read at the projections' inputs, so every family's pre-norms are found by the same
hooks (Gemma's post-norms, which scale branch outputs, feed no projection and are not read).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from ..io import load_tensors, save_tensors
from ..sources.models import head_dim_of

__all__ = ["InputMoments", "WindowMagnitude", "ActivationStats", "collect_activation_stats", "MAGNITUDES"]

MODULES = {"attn": "self_attn.o_proj", "mlp": "mlp.down_proj"}
# magnitude -> the module whose input it reads
MAGNITUDES = {"heads": "self_attn.o_proj", "mlp": "mlp.down_proj", "hidden_attn": "self_attn.q_proj",
              "hidden_mlp": "mlp.gate_proj"}


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


class WindowMagnitude:
    """Minitron's (batch=L2, seq=mean) aggregate of per-token unit magnitudes [windows, tokens, units]:
    sqrt(sum over windows of (mean over the window's tokens)^2), accumulated window by window."""

    def __init__(self, units: int):
        self.sum_sq = torch.zeros(units, dtype=torch.float64)

    def update(self, per_token: torch.Tensor) -> None:
        self.sum_sq += per_token.to(device="cpu", dtype=torch.float64).mean(dim=1).pow(2).sum(dim=0)

    @property
    def value(self) -> torch.Tensor:
        return self.sum_sq.sqrt()


@dataclass
class ActivationStats:
    """Per layer and module ("attn" = o_proj input, "mlp" = down_proj input): mean, var, sqnorm;
    per layer and MAGNITUDES key: Minitron's activation magnitude (None in statistics saved before
    it was collected)."""

    mean: dict[str, list[torch.Tensor]]
    var: dict[str, list[torch.Tensor]]
    sqnorm: dict[str, list[torch.Tensor]]
    tokens: int
    magnitude: dict[str, list[torch.Tensor]] | None = None

    def save(self, path, metadata: dict | None = None) -> None:
        stats = ("mean", "var", "sqnorm") + (("magnitude",) if self.magnitude else ())
        tensors = {f"{stat}.{module}.{i}": t
                   for stat in stats
                   for module, layers in getattr(self, stat).items()
                   for i, t in enumerate(layers)}
        save_tensors(path, tensors, dict(metadata or {}, tokens=self.tokens))

    @classmethod
    def load(cls, path) -> "ActivationStats":
        tensors, meta = load_tensors(path)
        n_layers = 1 + max(int(k.rsplit(".", 1)[1]) for k in tensors)
        stats = {stat: {m: [tensors[f"{stat}.{m}.{i}"] for i in range(n_layers)] for m in MODULES}
                 for stat in ("mean", "var", "sqnorm")}
        magnitude = ({m: [tensors[f"magnitude.{m}.{i}"] for i in range(n_layers)] for m in MAGNITUDES}
                     if "magnitude.heads.0" in tensors else None)
        return cls(**stats, tokens=int(meta["tokens"]), magnitude=magnitude)


@torch.inference_mode()
def collect_activation_stats(model, windows: torch.Tensor, batch_size: int = 8) -> ActivationStats:
    """Run the calibration windows through the dense decoder (no LM head) and gather the moments."""
    layers = model.model.layers
    moments = {m: [InputMoments(layer.get_submodule(path).in_features) for layer in layers]
               for m, path in MODULES.items()}
    hooks = [layer.get_submodule(path).register_forward_pre_hook(
                 lambda _mod, args, acc=moments[m][i]: acc.update(args[0]))
             for m, path in MODULES.items() for i, layer in enumerate(layers)]
    head_dim = head_dim_of(model.config)
    per_token = {  # [windows, tokens, channels] -> [windows, tokens, units], in float64
        "heads": lambda x: x.double().unflatten(-1, (-1, head_dim)).norm(dim=-1),
        "mlp": lambda x: x.double().abs(), "hidden_attn": lambda x: x.double().abs(),
        "hidden_mlp": lambda x: x.double().abs()}
    units = lambda m, linear: linear.in_features // head_dim if m == "heads" else linear.in_features  # noqa: E731
    magnitudes = {m: [WindowMagnitude(units(m, layer.get_submodule(path))) for layer in layers]
                  for m, path in MAGNITUDES.items()}
    hooks += [layer.get_submodule(path).register_forward_pre_hook(
                  lambda _mod, args, acc=magnitudes[m][i], f=per_token[m]: acc.update(f(args[0])))
              for m, path in MAGNITUDES.items() for i, layer in enumerate(layers)]
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
        magnitude={m: [acc.value for acc in accs] for m, accs in magnitudes.items()},
    )

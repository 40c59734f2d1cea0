"""Activations of the MLP and of the DIN activation unit, including Dice (Zhou et al., KDD 2018, Sec. 4.3 / Eq. 9).

One factory, ``make_activation(name, num_features)``, serves both.

Dice is a PReLU whose rectification point follows the data:

    p(s) = sigmoid((s - E[s]) / sqrt(Var[s] + eps))
    f(s) = p(s) * s + (1 - p(s)) * alpha * s

E[s] and Var[s] are per-feature statistics: of the current mini-batch in training (gradients flow
through them, as in batch norm) and running averages in eval. ``alpha`` is a learned per-feature
slope, initialised to 0. eps = 1e-9 follows the authors' released code; the running averages use
the Keras/TensorFlow momentum convention (running = momentum * running + (1 - momentum) * batch,
momentum = 0.99), not torch's BatchNorm one. Variances are the biased (population) ones in both
places, exactly as the formula reads.

Inside an attention unit the rows are history positions, some of them padding, so ``forward``
takes an optional mask and computes the batch statistics from the real positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dinbench.layers import ACTIVATIONS


class Dice(nn.Module):
    """Dice over the last dimension: x [N, H] or [B, L, H] (any leading shape) -> same shape.

    ``mask`` (optional, shape = x.shape[:-1], True = real) excludes padded rows from the batch
    statistics in training; padded rows are still transformed (their output is simply unused).
    """

    def __init__(self, num_features: int, eps: float = 1e-9, momentum: float = 0.99) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.alpha = nn.Parameter(torch.zeros(num_features))  # [H], 0 = starts as a smooth "gated ReLU"
        self.register_buffer("running_mean", torch.zeros(num_features))  # [H]
        self.register_buffer("running_var", torch.ones(num_features))  # [H]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            mean, var = self._batch_stats(x, mask)  # [H], [H]
        else:
            mean, var = self.running_mean, self.running_var
        p = torch.sigmoid((x - mean) / torch.sqrt(var + self.eps))  # [..., H]
        return p * x + (1 - p) * self.alpha * x

    def _batch_stats(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.reshape(-1, self.num_features)  # [N, H]
        if mask is None:
            real = torch.ones(flat.shape[0], 1, dtype=torch.bool, device=x.device)  # [N, 1]
        else:
            real = mask.reshape(-1, 1)  # [N, 1]
        count = real.sum()  # number of real rows (0 for an all-padding batch)
        n = count.clamp(min=1).to(x.dtype)
        # torch.where, not multiplication: padded rows may hold anything (even inf) and must not leak
        mean = torch.where(real, flat, 0.0).sum(0) / n  # [H]
        var = torch.where(real, (flat - mean) ** 2, 0.0).sum(0) / n  # [H], biased
        with torch.no_grad():  # running averages; left alone when there was no real row at all
            m = self.momentum
            seen = count > 0
            self.running_mean.copy_(torch.where(seen, m * self.running_mean + (1 - m) * mean, self.running_mean))
            self.running_var.copy_(torch.where(seen, m * self.running_var + (1 - m) * var, self.running_var))
        return mean, var

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class PReLU(nn.Module):
    """PReLU with one slope per feature of the last dimension: f(x) = x if x > 0 else weight * x, weight [H]
    initialised to 0.25. (torch's nn.PReLU puts its slopes on dim 1, which for [B, L, H] would be L; on
    [B, H] the two compute the same values and gradients, bit for bit, and share the parameter name
    ``weight``, so models saved with nn.PReLU in their MLP load unchanged.)"""

    def __init__(self, num_features: int, init: float = 0.25) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((num_features,), init))  # [H]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., H] -> [..., H]. torch's PReLU kernel (its slopes on dim 1) over x viewed as [-1, H]:
        the same values as torch.where(x > 0, x, weight * x), forward and backward, at a third of the
        time on the CPU (measured: 0.55 ms per where over the MLP's [1024, 200], 10 per step)."""
        return F.prelu(x.reshape(-1, x.shape[-1]), self.weight).view(x.shape)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "alpha" in state_dict:  # saved before 0.2, when the attention unit's slope was "alpha"
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "alpha")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def make_activation(name: str, num_features: int) -> nn.Module:
    """'sigmoid' | 'prelu' (one slope per feature) | 'relu' | 'dice' -> a fresh module over [..., num_features]."""
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "prelu":
        return PReLU(num_features)
    if name == "relu":
        return nn.ReLU()
    if name == "dice":
        return Dice(num_features)
    raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")

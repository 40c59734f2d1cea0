"""The MLP block: Linear -> activation per hidden layer -> output (the DIN paper's BaseModel MLP).

Activation PReLU by default (the paper's BaseModel); ``dice`` and ``sigmoid`` are the other
choices the paper and its code use. Activations come from ``dinbench.layers.activations``.
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.layers.activations import make_activation


class MLP(nn.Module):
    """[B, in_dim] -> [B] logits (``out_dim=1``) or [B, out_dim]. Hidden sizes default to (200, 80)."""

    def __init__(
        self, in_dim: int, hidden: tuple[int, ...] = (200, 80), activation: str = "prelu", out_dim: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(in_dim, size), make_activation(activation, size)]
            in_dim = size
        layers.append(nn.Linear(in_dim, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y.squeeze(-1) if self.out_dim == 1 else y

"""The prediction MLP of the DIN paper's BaseModel: Linear -> PReLU per hidden layer -> 1 logit."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """[B, in_dim] -> [B] logits. Hidden sizes default to the paper's (200, 80)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...] = (200, 80)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(in_dim, size), nn.PReLU(size)]
            in_dim = size
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

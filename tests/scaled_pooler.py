"""A new pooler with one option, written as a user would add one: this file holds everything about
it; ``register`` is the one registry line (made by the tests, so the real registry stays as it is).

``init_worker`` is a sweep worker's initializer that registers it first, so a sweep's worker
processes know it too (as they would know a pooler added to dinbench/poolers/)."""

from __future__ import annotations

import torch

from dinbench import poolers
from dinbench.options import Option, positive_number
from dinbench.poolers.base import Pooler


class ScaledAverage(Pooler):
    description = "masked mean times a factor"
    packs = True
    options = (Option("scale", 1.0, "factor on the mean.", float, check=positive_number),)

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.dim, self.scale = dim, scale
        self.shift = torch.nn.Parameter(torch.zeros(()))

    def pool_packed(self, query, packed, age=None):
        m = packed.mask.to(packed.keys.dtype)  # [B, L]
        weights = self.scale * m / m.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, L]
        return packed.weighted_sum(weights) + self.shift, weights  # [B, D], [B, L]


def register() -> None:
    poolers.REGISTRY["scaled"] = poolers.Entry(ScaledAverage)


def init_worker(*args) -> None:
    from dinbench import sweep

    register()
    sweep._init_worker(*args)

"""``time-decay``: recency-weighted mean of the history (candidate-independent).

    weight_l ∝ exp(-ln2 · age_l / half_life) = 2^(-age_l / half_life),  normalised over the real positions

so a behaviour one half-life older counts half as much. As half_life → ∞ every weight becomes equal
and the pooler turns into ``average``; as half_life → 0 it turns into ``last``.

decay_age:
    "position" (default)  age = rank from the most recent real position (0 for the most recent,
                          1 for the one before, ...), computed from the mask; the ``age`` tensor is
                          ignored. Padding between real positions does not count.
    "time"                age = the ``age`` tensor (target time minus behaviour time, e.g. seconds);
                          half_life is in the same unit.

learn_decay=True makes log(half_life) a trained parameter (initialised from ``half_life``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dinbench.poolers import about
from dinbench.poolers.base import Pooler, normalize_scores

from dinbench.poolers.about import AGE_UNITS


class TimeDecayPooler(Pooler, about=about.TIME_DECAY):
    """keys [B, L, D], mask [B, L], age [B, L] or None -> pooled [B, D], weights [B, L] (sum to 1, 0 if empty).

    Options (defaults in ``options``): half_life 5.0, decay_age 'position', learn_decay False.
    """

    def __init__(self, dim: int, half_life: float, decay_age: str, learn_decay: bool) -> None:
        super().__init__()
        if not (half_life > 0 and math.isfinite(half_life)):
            raise ValueError(f"half_life must be a positive number (got {half_life})")
        if decay_age not in AGE_UNITS:
            raise ValueError(f"unknown decay_age {decay_age!r}; choose one of {', '.join(AGE_UNITS)}")
        self.dim, self.age_unit, self.learn = dim, decay_age, learn_decay
        log_half_life = torch.tensor(math.log(half_life))
        if learn_decay:
            self.log_half_life = nn.Parameter(log_half_life)
        else:
            self.register_buffer("log_half_life", log_half_life)

    @property
    def uses_age(self) -> bool:  # type: ignore[override]
        return self.age_unit == "time"

    @property
    def half_life(self) -> float:
        return float(self.log_half_life.detach().exp())

    packs = True

    def pool_packed(self, query, packed, age=None):
        mask, dtype = packed.mask, packed.keys.dtype
        if self.age_unit == "position":
            real = mask.to(dtype)  # [B, L]
            age = real.flip(1).cumsum(1).flip(1) - real  # [B, L]: real positions after l (0 = most recent)
        elif age is None:
            raise ValueError("time-decay with decay_age='time' needs the age tensor (target time - behaviour time)")
        age = age.to(dtype).masked_fill(~mask, 0.0)  # padding may hold anything; keep it out of the gradient
        scores = -math.log(2.0) * age / self.log_half_life.exp()  # [B, L], log of the unnormalised weights
        weights = normalize_scores(scores, mask, "softmax")  # [B, L]: exp, normalised over real positions
        return packed.weighted_sum(weights), weights

"""The DIN activation unit (Zhou et al., KDD 2018, Fig. 2): an MLP that scores a key k against a query q
from [q, k, q - k, q ⊙ k]. Shared by ``din`` (scoring the history) and ``dien`` (scoring the extracted
interest states); one factory and one scoring function, so both compute the same unit.

The layers are returned as ``(first, rest)`` and held by the pooler itself (``self.first``,
``self.rest``), which keeps din's state-dict keys (``first.weight``, ``rest.1.weight``, ...) as they
were when the unit lived inside it.

The first layer is evaluated in split form, the same linear map with less work:
W [q, k, q-k, q⊙k] = (Wq + Wd) q + (Wk - Wd) k + Wp (q ⊙ k), where the q-part is computed once per row
instead of once per key.
"""

from __future__ import annotations

import torch
from torch import nn

from dinbench.layers import ACTIVATIONS
from dinbench.layers.activations import make_activation


def unit_layers(dim: int, hidden: tuple[int, ...], activation: str,
                score_bias: bool = True) -> tuple[nn.Linear, nn.ModuleList]:
    """The unit over keys of width ``dim``: (first Linear [4 dim -> hidden[0]], rest = [act, Linear, act,
    ..., Linear -> 1]) (the rest laid out as an nn.Sequential would be, run by ``scores`` so that Dice
    layers get the mask). ``score_bias=False``: the last Linear has no bias (a softmax over the scores
    ignores a shift common to a row's scores, so that bias would never get a gradient).
    Raises ValueError for an unknown activation or no hidden layer."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    if not hidden:
        raise ValueError("the DIN activation unit needs at least one hidden layer")
    sizes = (4 * dim, *hidden)
    first = nn.Linear(sizes[0], sizes[1])
    rest: list[nn.Module] = [make_activation(activation, sizes[1])]
    for a, b in zip(sizes[1:-1], sizes[2:]):
        rest += [nn.Linear(a, b), make_activation(activation, b)]
    rest.append(nn.Linear(sizes[-1], 1, bias=score_bias))
    return first, nn.ModuleList(rest)


def split_weights(first: nn.Linear, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first layer's weight in split form: (W_query [H, D] = Wq + Wd, W_key [H, D] = Wk - Wd, W_prod = Wp)."""
    w_q, w_k, w_d, w_p = first.weight.split(dim, dim=1)  # each [H, D]
    return w_q + w_d, w_k - w_d, w_p


def scores(first: nn.Linear, rest: nn.ModuleList, query: torch.Tensor, keys: torch.Tensor,
           row: torch.Tensor) -> torch.Tensor:
    """query [B, D], keys [N, D] (any N keys), row [N] long (the query row of each key) -> scores [N].

    Rows are gathered with ``index_select`` (its backward adds in a fixed order, so seeded runs repeat
    exactly on CPU). Dice statistics are taken over the N keys given (callers pass real keys only)."""
    w_query, w_key, w_prod = split_weights(first, query.shape[-1])
    per_row = torch.addmm(first.bias, query, w_query.T)  # [B, H], once per row
    h = torch.addmm(per_row.index_select(0, row), keys, w_key.T)  # [N, H]: per-row part + (Wk - Wd) k
    h = torch.addmm(h, keys * query.index_select(0, row), w_prod.T)  # + Wp (q ⊙ k)
    for layer in rest:
        h = layer(h)  # Dice statistics over the N keys given
    return h.squeeze(-1)  # [N]

"""Poolers: padding has no influence, empty histories stay finite, weights are normalised as documented."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dinbench import poolers
from dinbench.errors import DinbenchError
from helpers import padded_case, with_ids

SPECS = tuple(poolers.expand("all"))  # every registered pooler and variant
DIM = 8  # divisible by multihead's default 4 heads
FEW = settings(max_examples=25, deadline=None)


def _pooler(spec: str, seed: int = 0):
    torch.manual_seed(seed)
    p = poolers.build(spec, DIM)
    p.eval()
    return with_ids(p)  # sim:hard selects by category: ids that travel with the keys


def _case(seed: int, batch: int, layout: str, width: int = 9, short: int = 5):
    return padded_case(seed, batch, layout, DIM, width, short)


@pytest.mark.parametrize("spec", SPECS)
@FEW
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 6), layout=st.sampled_from(["right", "left", "interleaved"]))
def test_padding_never_changes_the_output(spec, seed, batch, layout):
    pooler = _pooler(spec, seed % 1000)
    query, (k5, m5), (k9, m9), lens, positions = _case(seed, batch, layout)
    age5, age9 = torch.rand(m5.shape) * 10, torch.rand(m9.shape) * 1e6  # age is garbage at padding too
    with torch.no_grad():
        out5, w5 = pooler(query, k5, m5, age5)
        out9, w9 = pooler(query, k9, m9, age9)
    assert out5.shape == out9.shape == (batch, DIM)
    assert torch.isfinite(out5).all() and torch.isfinite(out9).all()
    torch.testing.assert_close(out9, out5, atol=1e-6, rtol=1e-6)
    if w5 is None:  # poolers without per-position weights (max, none)
        assert w9 is None
        return
    assert (w5[~m5] == 0).all() and (w9[~m9] == 0).all()
    for b, pos in enumerate(positions):
        torch.testing.assert_close(w9[b, pos], w5[b, : lens[b]], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spec", SPECS)
def test_empty_history_is_finite(spec):
    pooler = _pooler(spec)
    query = torch.randn(3, DIM)
    keys = torch.randn(3, 4, DIM) * 10
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[2, 1] = True  # one row with a single real position next to two empty rows
    query.requires_grad_(True)
    keys.requires_grad_(True)
    out, weights = pooler(query, keys, mask)
    assert torch.isfinite(out).all()
    assert (out[:2] == 0).all()  # nothing to pool -> zero vector
    if weights is not None:
        assert torch.isfinite(weights).all() and (weights[:2] == 0).all()
    if not out.requires_grad:  # 'none' ignores its inputs altogether
        return
    out.sum().backward()  # and the gradients are finite too (softmax over all-masked rows)
    assert torch.isfinite(keys.grad).all()
    assert query.grad is None or torch.isfinite(query.grad).all()  # average ignores the candidate
    for p in pooler.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


@FEW
@given(seed=st.integers(0, 2**32 - 1), layout=st.sampled_from(["right", "left", "interleaved"]))
def test_softmax_and_average_weights_sum_to_one(seed, layout):
    query, _, (keys, mask), lens, _ = _case(seed, 5, layout)
    nonempty = torch.from_numpy(lens > 0)
    for spec in ("average", "din:softmax"):
        with torch.no_grad():
            out, w = _pooler(spec, seed % 1000)(query, keys, mask)
        assert (w >= 0).all()
        sums = w.sum(dim=1)
        torch.testing.assert_close(sums[nonempty], torch.ones(int(nonempty.sum())), atol=1e-5, rtol=0)
        assert (sums[~nonempty] == 0).all()
        # pooled = sum of weights x keys over the real positions
        torch.testing.assert_close(out, torch.einsum("bl,bld->bd", w * mask, keys), atol=1e-4, rtol=1e-5)
    with torch.no_grad():
        _, w = _pooler("average")(query, keys, mask)
    expected = mask.float() / mask.float().sum(1, keepdim=True).clamp(min=1)
    torch.testing.assert_close(w, expected)


def test_din_none_keeps_raw_scores_softmax_normalises_them():
    torch.manual_seed(0)
    none = poolers.build("din:none", DIM)
    soft = poolers.build("din:softmax", DIM)
    soft.load_state_dict(none.state_dict())  # same activation unit, different normalisation
    query, keys = torch.randn(4, DIM), torch.randn(4, 7, DIM)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        _, w_none = none(query, keys, mask)
        _, w_soft = soft(query, keys, mask)
    # din:none weights are the activation unit's raw scores: they do not sum to 1 ...
    assert not torch.allclose(w_none.sum(1), torch.ones(4), atol=1e-3)
    # ... and softmax over the real positions of those scores is exactly din:softmax
    expected = torch.softmax(w_none.masked_fill(~mask, float("-inf")), dim=1)
    torch.testing.assert_close(w_soft, expected, atol=1e-6, rtol=1e-6)


def test_din_depends_on_the_candidate_average_does_not():
    torch.manual_seed(1)
    keys = torch.randn(2, 5, DIM)
    mask = torch.ones(2, 5, dtype=torch.bool)
    q1, q2 = torch.randn(2, DIM), torch.randn(2, DIM)
    for spec, depends in (("average", False), ("din:none", True), ("din:softmax", True)):
        p = _pooler(spec)
        with torch.no_grad():
            a, _ = p(q1, keys, mask)
            b, _ = p(q2, keys, mask)
        assert (not torch.allclose(a, b)) == depends, spec
        assert p.uses_candidate == depends


def test_registry_specs_and_errors():
    assert poolers.canonical("din") == "din:none"  # the paper's choice is the default variant
    assert poolers.canonical("average") == "average"
    assert poolers.expand("all")[:4] == ["none", "last", "sum", "average"]
    assert poolers.expand("din, din:none,average") == ["din:none", "average"]
    with pytest.raises(DinbenchError, match="average, max, time-decay, dot, bilinear, din, multihead"):
        poolers.parse_spec("attention")
    with pytest.raises(DinbenchError, match="din:none, din:softmax"):
        poolers.parse_spec("din:bogus")
    with pytest.raises(DinbenchError):
        poolers.parse_spec("average:softmax")
    with pytest.raises(DinbenchError):
        poolers.expand(" , ")
    assert isinstance(poolers.build("din:softmax", DIM), poolers.Pooler)
    assert poolers.build("din:softmax", DIM).normalization == "softmax"

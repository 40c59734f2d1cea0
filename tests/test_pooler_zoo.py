"""The pooler zoo: properties every pooler shares, what each one computes, Dice, and the registry.

tests/test_poolers.py checks padding invariance and empty histories for every registered spec with
its default options; this file adds the same for non-default options (Dice, outer product, time
ages, learned half-life) and the per-pooler properties.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dinbench import poolers
from dinbench.errors import DinbenchError
from dinbench.layers.activations import Dice, make_activation
from dinbench.poolers.base import normalize_scores, weighted_sum
from helpers import padded_case, with_ids

DIM = 8
FEW = settings(max_examples=25, deadline=None)
LAYOUTS = st.sampled_from(["right", "left", "interleaved"])
SEEDS = st.integers(0, 2**32 - 1)

ALL = poolers.expand("all")
# non-default constructor options, checked beside the registry defaults
EXTRAS = [
    ("time-decay", {"decay_age": "time", "half_life": 3.0}),
    ("time-decay", {"learn_decay": True}),
    ("din:none", {"attention_activation": "dice"}),
    ("din:softmax", {"attention_activation": "dice", "outer_product": True}),
    ("din:none", {"attention_activation": "prelu", "outer_product": True}),
    ("multihead:none", {"heads": 2}),
    ("bst", {"layers": 2, "position": "time"}),
    ("bst", {"heads": 1, "position": "none"}),
    ("sim:soft", {"top_k": 3}),  # fewer retrieved than real positions: the retrieval matters
    ("sim:hard", {"top_k": 2, "attention_activation": "dice"}),
    ("eta", {"top_k": 3, "hash_bits": 8}),
    ("dien", {"gru_hidden": 6}),  # projections between the GRUs' width and the keys'
    ("dien:agru", {"gru_hidden": 6, "aux_weight": 0.0}),
    ("dien:aigru", {"attention_activation": "dice"}),
]
CONFIGS = [(spec, {}) for spec in ALL] + EXTRAS
ATTENTION = ("dot", "bilinear", "din", "multihead", "bst", "sim", "eta", "dien")
# order-free: the output ignores the order of the history (attention poolers here use no age)
ORDER_FREE = [(s, {}) for s in ALL if not poolers.REGISTRY[s.split(":")[0]].cls.uses_order] + [
    ("time-decay", {"decay_age": "time"}),  # the ages move with their positions
    ("din:none", {"attention_activation": "dice"}),
    ("bst", {"position": "none"}),  # the transformer alone is permutation-equivariant
    ("bst", {"position": "time", "layers": 2}),  # the ages move with their positions
    ("sim:soft", {"top_k": 3}),  # top-3 by inner product: a set, whatever the order (random keys: no ties)
]


def _id(config) -> str:
    spec, options = config
    return spec + "".join(f"-{k}={v}" for k, v in options.items())


def _build(spec: str, options: dict, seed: int = 0, train: bool = False):
    torch.manual_seed(seed)
    pooler = poolers.build(spec, DIM, **options)
    return with_ids(pooler.train(train))  # sim:hard selects by category: ids that travel with the keys


def _ages(seed: int, lens, positions, short: int, width: int):
    """Real ages (older = larger) laid out like padded_case's keys; garbage at the padding of age9."""
    rng = np.random.default_rng(seed + 1)
    batch = len(lens)
    real = -np.sort(-rng.uniform(0, 100, size=(batch, short)), axis=1)  # descending: oldest first
    age5 = np.zeros((batch, short), dtype=np.float32)
    age9 = (rng.uniform(0, 1e6, size=(batch, width))).astype(np.float32)
    for b, (n, pos) in enumerate(zip(lens, positions)):
        age5[b, :n] = real[b, short - n :]  # the n most recent
        age9[b, pos] = real[b, short - n :]
    return torch.from_numpy(age5), torch.from_numpy(age9)


def _batch(seed: int, batch: int = 4, length: int = 7):
    """A random batch with interleaved padding (at least 2 real positions per row) and ages in [10, 30)."""
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, DIM, generator=g)  # [B, D]
    keys = torch.randn(batch, length, DIM, generator=g)  # [B, L, D]
    mask = torch.rand(batch, length, generator=g) < 0.6  # [B, L]
    mask[:, [1, -2]] = True
    age = 10 + 20 * torch.rand(batch, length, generator=g).sort(dim=1, descending=True).values  # oldest first
    return query, keys, mask, age


# ---------------------------------------------------------------- properties every pooler shares


@pytest.mark.parametrize("config", EXTRAS + [("din:softmax", {"attention_activation": "dice"})], ids=_id)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@FEW
@given(seed=SEEDS, batch=st.integers(1, 6), layout=LAYOUTS)
def test_padding_never_changes_the_output_with_options(config, train, seed, batch, layout):
    spec, options = config
    query, (k5, m5), (k9, m9), lens, positions = padded_case(seed, batch, layout, DIM)
    age5, age9 = _ages(seed, lens, positions, k5.shape[1], k9.shape[1])
    pooler = _build(spec, options, seed % 1000, train)  # train: Dice uses batch statistics of real positions
    with torch.no_grad():
        out5, w5 = pooler(query, k5, m5, age5)
        out9, w9 = pooler(query, k9, m9, age9)
    assert torch.isfinite(out5).all() and torch.isfinite(out9).all()
    torch.testing.assert_close(out9, out5, atol=1e-5, rtol=1e-5)
    assert (w9[~m9] == 0).all()
    for b, pos in enumerate(positions):
        torch.testing.assert_close(w9[b, pos], w5[b, : lens[b]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", EXTRAS, ids=_id)
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("all_empty", [False, True], ids=["some-empty", "all-empty"])
def test_empty_history_is_finite_with_options(config, train, all_empty):
    spec, options = config
    pooler = _build(spec, options, train=train)
    query = torch.randn(3, DIM, requires_grad=True)
    keys = (torch.randn(3, 4, DIM) * 10).requires_grad_(True)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    if not all_empty:
        mask[2, 1] = True
    age = torch.rand(3, 4) * 1e6
    out, weights = pooler(query, keys, mask, age)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out[:2] == 0).all() and (weights[:2] == 0).all()
    out.sum().backward()
    assert torch.isfinite(keys.grad).all()
    assert query.grad is None or torch.isfinite(query.grad).all()  # time-decay ignores the candidate
    for p in pooler.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()
    for b in pooler.buffers():  # Dice's running statistics stay finite (and untouched when all empty)
        assert torch.isfinite(b).all()


@FEW
@given(seed=SEEDS, layout=LAYOUTS)
def test_normalised_weights_sum_to_one_and_pool_the_keys(seed, layout):
    query, _, (keys, mask), lens, positions = padded_case(seed, 5, layout, DIM)
    _, age = _ages(seed, lens, positions, 5, keys.shape[1])
    nonempty = torch.from_numpy(lens > 0)
    for spec, options in CONFIGS:
        with torch.no_grad():
            out, w = _build(spec, options, seed % 1000)(query, keys, mask, age)
        if w is None:
            continue
        if spec.endswith(":softmax") or spec in ("average", "last", "time-decay") or spec.startswith("dien"):
            assert (w >= 0).all(), spec
            sums = w.sum(dim=1)
            torch.testing.assert_close(sums[nonempty], torch.ones(int(nonempty.sum())), atol=1e-5, rtol=0)
            assert (sums[~nonempty] == 0).all(), spec
        if not spec.startswith(("multihead", "bst", "dien")):  # every other weighted pooler is sum_l w_l k_l
            torch.testing.assert_close(out, torch.einsum("bl,bld->bd", w, keys), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("config", ORDER_FREE, ids=_id)
@FEW
@given(seed=SEEDS)
def test_order_free_poolers_ignore_the_history_order(config, seed):
    spec, options = config
    query, keys, mask, age = _batch(seed)
    mask[1] = False  # an empty row too
    perm = torch.rand(mask.shape, generator=torch.Generator().manual_seed(seed)).argsort(dim=1)  # [B, L] per row
    pooler = _build(spec, options, seed % 1000)
    with torch.no_grad():
        out, w = pooler(query, keys, mask, age)
        out_p, w_p = pooler(query, keys.gather(1, perm[..., None].expand_as(keys)), mask.gather(1, perm), age.gather(1, perm))
    torch.testing.assert_close(out_p, out, atol=1e-5, rtol=1e-5)
    if w is not None:
        torch.testing.assert_close(w_p, w.gather(1, perm), atol=1e-6, rtol=1e-5)  # equivariant weights


@pytest.mark.parametrize("config", CONFIGS, ids=_id)
def test_only_attention_poolers_depend_on_the_candidate(config):
    spec, options = config
    pooler = _build(spec, options)
    _, keys, mask, age = _batch(0)
    q1, q2 = torch.randn(4, DIM), torch.randn(4, DIM)
    with torch.no_grad():
        a, _ = pooler(q1, keys, mask, age)
        b, _ = pooler(q2, keys, mask, age)
    attention = spec.split(":")[0] in ATTENTION
    assert pooler.uses_candidate == attention
    assert (not torch.allclose(a, b)) == attention


@pytest.mark.parametrize("config", [c for c in CONFIGS if list(_build(*c).parameters())], ids=_id)
def test_gradients_reach_every_parameter(config):
    spec, options = config
    pooler = _build(spec, options, train=True)
    query, keys, mask, age = _batch(3)
    out, _ = pooler(query, keys, mask, age)
    (out * torch.randn_like(out)).sum().backward()
    # the scorer's output bias shifts every score of a row alike, which softmax ignores: no gradient
    exempt = {f"rest.{len(pooler.rest) - 1}.bias"} if spec == "din:softmax" else set()
    # dien's projection for its auxiliary loss, which needs negatives (the padded forward has none):
    # tests/test_dien.py checks that the auxiliary loss reaches it
    exempt |= {"aux_project.weight"} if spec.startswith("dien") else set()
    for name, p in pooler.named_parameters():
        if name in exempt:
            continue
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert (p.grad != 0).any(), name


# ---------------------------------------------------------------- what each pooler computes


def test_none_sum_max_compute_what_they_say():
    query, keys, mask, _ = _batch(5)
    mask[2] = False
    with torch.no_grad():
        none, w_none = _build("none", {})(query, keys, mask)
        total, w_sum = _build("sum", {})(query, keys, mask)
        top, w_max = _build("max", {})(query, keys, mask)
    assert (none == 0).all() and w_none is None and w_max is None
    assert torch.equal(w_sum, mask.float())
    for b in range(len(mask)):
        real = keys[b][mask[b]]  # [n, D]
        torch.testing.assert_close(total[b], real.sum(0))
        torch.testing.assert_close(top[b], real.max(0).values if len(real) else torch.zeros(DIM))


@FEW
@given(seed=SEEDS, batch=st.integers(1, 6), layout=LAYOUTS)
def test_last_picks_the_most_recent_real_position(seed, batch, layout):
    query, _, (keys, mask), lens, positions = padded_case(seed, batch, layout, DIM)
    with torch.no_grad():
        out, w = _build("last", {})(query, keys, mask)
    for b, pos in enumerate(positions):
        expected = torch.zeros(keys.shape[1])
        if len(pos):
            expected[pos[-1]] = 1.0
            torch.testing.assert_close(out[b], keys[b, pos[-1]])
        else:
            assert (out[b] == 0).all()
        assert torch.equal(w[b], expected)


@FEW
@given(seed=SEEDS, batch=st.integers(1, 6), layout=LAYOUTS, half_life=st.floats(0.5, 20.0))
def test_time_decay_by_position_halves_per_half_life(seed, batch, layout, half_life):
    query, _, (keys, mask), lens, positions = padded_case(seed, batch, layout, DIM)
    garbage_age = torch.rand(mask.shape) * 1e6  # ignored in position mode
    with torch.no_grad():
        _, w = _build("time-decay", {"half_life": half_life})(query, keys, mask, garbage_age)
    for b, pos in enumerate(positions):
        rank = np.arange(len(pos))[::-1].copy()  # 0 for the most recent real position
        expected = 2.0 ** (-rank / half_life)
        expected = torch.from_numpy(expected / expected.sum()).float()
        torch.testing.assert_close(w[b, pos], expected, atol=1e-6, rtol=1e-5)
        assert (w[b, pos].diff() > 0).all()  # weights fall with age (rise towards the most recent)


def test_time_decay_by_time_uses_the_age_tensor():
    query, keys, mask, age = _batch(7)
    mask[:, 3] = True
    age[:, 3] = age[:, 2] - 4.0  # position 3 is exactly one half-life younger than position 2
    mask[:, 2] = True
    with torch.no_grad():
        _, w = _build("time-decay", {"decay_age": "time", "half_life": 4.0})(query, keys, mask, age)
    torch.testing.assert_close(w[:, 3] / w[:, 2], torch.full((4,), 2.0))
    for b in range(len(mask)):  # weights fall with age
        real_w, real_age = w[b][mask[b]], age[b][mask[b]]
        order = real_age.argsort()
        assert (real_w[order].diff() <= 0).all()
    with pytest.raises(ValueError, match="age"):
        _build("time-decay", {"decay_age": "time"})(query, keys, mask, None)


@pytest.mark.parametrize("age_unit", ["position", "time"])
def test_time_decay_approaches_average_as_half_life_grows(age_unit):
    query, keys, mask, age = _batch(8)  # ages 10..30: half-lives of 1e9 are "infinite" against them
    mask[0] = False
    with torch.no_grad():
        avg, w_avg = _build("average", {})(query, keys, mask)
        far, w_far = _build("time-decay", {"decay_age": age_unit, "half_life": 1e9})(query, keys, mask, age)
        near, _ = _build("time-decay", {"decay_age": age_unit, "half_life": 1.0})(query, keys, mask, age)
    torch.testing.assert_close(far, avg, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_far, w_avg, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(near, avg, atol=1e-3)


def test_time_decay_learns_its_half_life_only_when_asked():
    fixed = _build("time-decay", {"half_life": 7.0})
    assert list(fixed.parameters()) == [] and fixed.half_life == pytest.approx(7.0)
    learned = _build("time-decay", {"half_life": 7.0, "learn_decay": True})
    assert [n for n, _ in learned.named_parameters()] == ["log_half_life"]
    assert learned.half_life == pytest.approx(7.0)


def test_dot_scores_and_bilinear_starts_near_dot():
    query, keys, mask, _ = _batch(9)
    with torch.no_grad():
        _, w_dot = _build("dot:none", {})(query, keys, mask)
        expected = torch.einsum("bd,bld->bl", query, keys) / math.sqrt(DIM) * mask
        torch.testing.assert_close(w_dot, expected)
        bilinear = _build("bilinear:none", {})
        _, w_bil = bilinear(query, keys, mask)
        torch.testing.assert_close(w_bil, w_dot, atol=0.1, rtol=0.1)  # near, not equal (small noise)
        assert not torch.equal(w_bil, w_dot)
        bilinear.weight.copy_(torch.eye(DIM) / math.sqrt(DIM))  # exactly the scaled dot product
        for norm in ("none", "softmax"):
            bilinear.normalization = norm
            out_b, w_b = bilinear(query, keys, mask)
            out_d, w_d = _build(f"dot:{norm}", {})(query, keys, mask)
            torch.testing.assert_close(w_b, w_d)
            torch.testing.assert_close(out_b, out_d)
        bilinear.weight.copy_(torch.randn(DIM, DIM))
        _, w_b = bilinear(query, keys, mask)
        expected = torch.einsum("bi,ij,blj->bl", query, bilinear.weight, keys)
        torch.testing.assert_close(w_b, normalize_scores(expected, mask, "softmax"))


@pytest.mark.parametrize("norm", ["softmax", "none"])
def test_multihead_matches_a_per_head_reference(norm):
    pooler = _build(f"multihead:{norm}", {})
    query, keys, mask, _ = _batch(10)
    mask[3] = False
    with torch.no_grad():
        out, w = pooler(query, keys, mask)
        d = DIM // pooler.heads
        q, k, v = pooler.w_q(query), pooler.w_k(keys), pooler.w_v(keys)
        heads, per_head = [], []
        for h in range(pooler.heads):
            s = slice(h * d, (h + 1) * d)
            scores = torch.einsum("bd,bld->bl", q[:, s], k[..., s]) / math.sqrt(d)  # [B, L]
            w_h = normalize_scores(scores, mask, norm)
            per_head.append(w_h)
            heads.append(weighted_sum(w_h, v[..., s]))  # [B, d]
        torch.testing.assert_close(out, pooler.w_o(torch.cat(heads, dim=-1)), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(w, torch.stack(per_head).mean(0), atol=1e-6, rtol=1e-5)
        assert (out[3] == 0).all()
    with pytest.raises(DinbenchError, match="heads"):
        poolers.build("multihead", DIM, heads=3)


def test_multihead_with_one_head_and_identity_projections_is_dot():
    pooler = _build("multihead:softmax", {"heads": 1})
    with torch.no_grad():
        for lin in (pooler.w_q, pooler.w_k, pooler.w_v, pooler.w_o):
            lin.weight.copy_(torch.eye(DIM))
        query, keys, mask, _ = _batch(11)
        out, w = pooler(query, keys, mask)
        out_d, w_d = _build("dot:softmax", {})(query, keys, mask)
    torch.testing.assert_close(out, out_d)
    torch.testing.assert_close(w, w_d)


@pytest.mark.parametrize("activation", ["sigmoid", "prelu", "relu", "dice"])
@pytest.mark.parametrize("outer", [False, True])
def test_din_split_form_matches_the_plain_activation_unit(activation, outer):
    """The split first layer (+ the einsum outer-product term) equals one Linear over explicit features."""
    pooler = _build("din:none", {"attention_activation": activation, "outer_product": outer}).eval()
    query, keys, mask, _ = _batch(12)
    with torch.no_grad():
        for m in pooler.modules():  # non-trivial running statistics for Dice in eval
            if isinstance(m, Dice):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.alpha.uniform_(-0.5, 0.5)
        _, w = pooler(query, keys, mask)
        q = query.unsqueeze(1).expand_as(keys)  # [B, L, D]
        feats = [q, keys, q - keys, q * keys]
        weight = [pooler.first.weight]
        if outer:
            feats.append(torch.einsum("bli,blj->blij", q, keys).flatten(2))  # [B, L, D*D], q_i k_j at i*D+j
            weight.append(pooler.outer.flatten(1))  # [H, D*D]
        h = torch.cat(feats, -1) @ torch.cat(weight, 1).T + pooler.first.bias  # [B, L, H]
        for layer in pooler.rest:
            h = layer(h)  # eval: Dice uses running statistics, the mask does not matter
        torch.testing.assert_close(w, h.squeeze(-1) * mask, atol=1e-5, rtol=1e-5)


def test_din_defaults_are_unchanged():
    pooler = poolers.build("din", DIM)
    assert pooler.normalization == "none" and pooler.activation == "sigmoid" and pooler.outer is None
    assert pooler.first.out_features == 80 and pooler.rest[1].out_features == 40
    # the same state-dict layout as before (an nn.Sequential over [act, Linear, act, Linear])
    assert list(pooler.state_dict()) == ["first.weight", "first.bias", "rest.1.weight", "rest.1.bias",
                                         "rest.3.weight", "rest.3.bias"]
    with_outer = poolers.build("din", DIM, outer_product=True)
    assert with_outer.outer.shape == (80, DIM, DIM)
    assert sum(isinstance(m, Dice) for m in poolers.build("din", DIM, attention_activation="dice").modules()) == 2


# ---------------------------------------------------------------- Dice


def _dice_reference(x, mean, var, alpha, eps=1e-9):
    p = torch.sigmoid((x - mean) / torch.sqrt(var + eps))
    return p * x + (1 - p) * alpha * x


def test_dice_train_mode_uses_masked_batch_statistics():
    torch.manual_seed(0)
    dice = Dice(5).train()
    with torch.no_grad():
        dice.alpha.uniform_(-1, 1)
    x = torch.randn(3, 6, 5) * 2 + 1
    mask = torch.rand(3, 6) < 0.6
    mask[0, 0] = True
    x_padded = x.masked_fill(~mask.unsqueeze(-1), 1e4)  # huge values at padding must not matter
    out = dice(x_padded, mask)
    real = x[mask]  # [n, 5]
    mean, var = real.mean(0), real.var(0, unbiased=False)
    expected = _dice_reference(x, mean, var, dice.alpha)
    torch.testing.assert_close(out[mask], expected[mask], atol=1e-5, rtol=1e-5)
    # running statistics: momentum 0.99 from (0, 1)
    torch.testing.assert_close(dice.running_mean, 0.01 * mean)
    torch.testing.assert_close(dice.running_var, 0.99 + 0.01 * var)
    # α is trained
    out[mask].sum().backward()
    assert dice.alpha.grad is not None and (dice.alpha.grad != 0).all()


def test_dice_without_mask_and_in_eval_mode():
    torch.manual_seed(1)
    dice = Dice(4)
    x = torch.randn(10, 4) * 3
    out = dice(x)  # [N, H], every row counts
    torch.testing.assert_close(out, _dice_reference(x, x.mean(0), x.var(0, unbiased=False), dice.alpha))
    dice.eval()
    with torch.no_grad():
        dice.running_mean.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
        dice.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 9.0]))
        dice.alpha.fill_(0.3)
    before = dice.running_mean.clone()
    y = torch.randn(2, 3, 4)
    out = dice(y, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(out, _dice_reference(y, dice.running_mean, dice.running_var, dice.alpha))
    assert torch.equal(dice.running_mean, before)  # eval never updates the statistics
    # α = 1: the identity, whatever the gate
    with torch.no_grad():
        dice.alpha.fill_(1.0)
    torch.testing.assert_close(dice(y), y)


def test_dice_all_padding_batch_is_finite_and_keeps_running_stats():
    dice = Dice(3).train()
    x = torch.randn(2, 4, 3, requires_grad=True)
    out = dice(x, torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(dice.running_mean, torch.zeros(3)) and torch.equal(dice.running_var, torch.ones(3))


def test_make_activation():
    assert isinstance(make_activation("dice", 7), Dice)
    x = torch.randn(5, 7)
    prelu = make_activation("prelu", 7)
    assert prelu.weight.shape == (7,)
    torch.testing.assert_close(prelu(x), torch.where(x > 0, x, 0.25 * x))
    torch.testing.assert_close(prelu(x[None].expand(3, 5, 7)), prelu(x)[None].expand(3, 5, 7))  # [B, L, H]
    torch.testing.assert_close(make_activation("relu", 7)(x), x.clamp(min=0))
    torch.testing.assert_close(make_activation("sigmoid", 7)(x), torch.sigmoid(x))
    with pytest.raises(ValueError, match="dice"):
        make_activation("tanh", 7)


# ---------------------------------------------------------------- registry


def test_registry_order_variants_and_defaults():
    assert list(poolers.REGISTRY) == ["none", "last", "sum", "average", "max", "time-decay", "dot", "bilinear",
                                      "din", "multihead", "bst", "sim", "eta", "dien"]
    assert ALL == ["none", "last", "sum", "average", "max", "time-decay", "dot:softmax", "dot:none",
                   "bilinear:softmax", "bilinear:none", "din:none", "din:softmax", "multihead:softmax",
                   "multihead:none", "bst", "sim:soft", "sim:hard", "eta", "dien:augru", "dien:agru", "dien:aigru"]
    for name in ("dot", "bilinear", "multihead"):
        assert poolers.canonical(name) == f"{name}:softmax"
    assert poolers.canonical("din") == "din:none"
    assert poolers.canonical("sim") == "sim:soft"  # the paper's better variant offline; needs no ids
    assert poolers.canonical("dien") == "dien:augru"  # the paper's evolution is the default variant
    assert set(poolers.DEFAULT_POOLERS) <= set(poolers.expand("all"))
    assert {"average", "din:none", "din:softmax"} <= set(poolers.DEFAULT_POOLERS)
    for name, entry in poolers.REGISTRY.items():
        assert entry.cls.description, name
        params = list(inspect.signature(entry.cls.__init__).parameters)
        assert params[1] == "dim", name
        assert (entry.variant_option in params) == bool(entry.variants), name


def test_declared_options_are_exactly_the_constructor_keywords():
    """One declaration per option: what a pooler declares is what its constructor takes, by name."""
    for name, entry in poolers.REGISTRY.items():
        params = [p for p in inspect.signature(entry.cls.__init__).parameters
                  if p not in ("self", "dim", entry.variant_option, "noise")]
        assert [o.name for o in poolers.options(name)] == params, name


def test_build_passes_options_and_rejects_bad_ones():
    assert poolers.build("time-decay", DIM, half_life=2.0).half_life == pytest.approx(2.0)
    din = poolers.build("din:softmax", DIM, attention_activation="dice", outer_product=True, attention_hidden=(16,))
    assert din.normalization == "softmax" and din.outer.shape == (16, DIM, DIM)
    assert [o.name for o in poolers.options("time-decay")] == ["half_life", "decay_age", "learn_decay"]
    bad = [
        (("average",), {"half_life": 3.0}, "no option 'half_life'"),
        (("time-decay",), {"halflife": 3.0}, "half_life, decay_age, learn_decay"),
        (("din",), {"normalization": "softmax"}, "din:softmax"),
        (("time-decay",), {"decay_age": "days"}, "decay-age"),
        (("time-decay",), {"half_life": 0.0}, "half-life"),
        (("din",), {"attention_activation": "tanh"}, "dice"),
        (("dot:none",), {"normalization": "softmax"}, "variant"),
    ]
    for args, options, fragment in bad:
        with pytest.raises(DinbenchError, match=fragment) as info:
            poolers.build(*args, DIM, **options)
        assert "\n" not in str(info.value)

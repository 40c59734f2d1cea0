"""The fast paths compute the same model: packed histories, folded attention algebra, fused optimizers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinbench import poolers
from dinbench.batches import make_store
from dinbench.config import RunConfig
from dinbench.model.ctr import CTRModel
from dinbench.model.regularization import MiniBatchL2
from dinbench.poolers.packed import Packed
from dinbench.optim import make_optimizer
from dinbench.train import train_run
from helpers import takes_ids

ALL = poolers.expand("all")


def _batch(tiny, n=96, max_len=20):
    store = make_store(tiny)
    samples = store.samples(tiny.splits["train"], max_len)
    idx = np.random.default_rng(0).permutation(len(samples))[:n]
    return store.batch(samples, idx)


def _padded_reference(model: CTRModel, batch):
    """The model as it was before packing: every position of [B, L] embedded, the pooler's padded forward."""
    q = model.embeddings(batch.item, batch.category)  # [B, D]
    keys = model.embeddings(batch.hist_item, batch.hist_category)  # [B, L, D]
    ids = dict(items=batch.hist_item, categories=batch.hist_category, query_items=batch.item,
               query_categories=batch.category) if takes_ids(model.poolers[0]) else {}  # sim:hard selects by them
    if len(model.poolers) == 1:
        pooled, weights = model.poolers[0](q, keys, batch.mask, batch.age, **ids)
    else:
        e = model.embedding_dim
        parts = [p(q[:, s], keys[:, :, s], batch.mask, batch.age, **ids)
                 for p, s in zip(model.poolers, (slice(0, e), slice(e, None)))]
        pooled = torch.cat([parts[0][0], parts[1][0]], dim=-1)
        weights = None if parts[0][1] is None else (parts[0][1] + parts[1][1]) / 2
    return model.mlp(torch.cat([q, pooled], dim=-1)), weights


@pytest.mark.parametrize("groups", ["joint", "separate"])
@pytest.mark.parametrize("spec", ALL)
def test_packed_model_equals_the_padded_model_with_gradients(tiny, spec, groups):
    torch.manual_seed(0)
    model = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build(spec, d),
                     embedding_dim=4, mlp_hidden=(16, 8), attention_groups=groups)
    batch = _batch(tiny)
    assert batch.mask.sum(1).min() < batch.mask.shape[1]  # padding present: the test means something
    logits, weights = model(batch)
    grads = torch.autograd.grad(logits.sum(), list(model.parameters()), allow_unused=True)
    ref_logits, ref_weights = _padded_reference(model, batch)
    ref_grads = torch.autograd.grad(ref_logits.sum(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    if ref_weights is None:
        assert weights is None
    else:
        torch.testing.assert_close(weights, ref_weights, atol=1e-6, rtol=1e-5)
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        if r is None:
            assert g is None or not g.any(), name
        else:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4, msg=name)


def test_batch_row_and_pos_list_the_real_positions_row_major(tiny):
    batch = _batch(tiny)
    row, pos = batch.mask.nonzero(as_tuple=True)
    assert torch.equal(batch.row, row) and torch.equal(batch.pos, pos)
    assert batch.row.dtype == batch.pos.dtype == torch.long
    assert len(batch.row) == int(batch.mask.sum())


def test_packed_helpers_match_dense_arithmetic():
    torch.manual_seed(1)
    keys = torch.randn(5, 7, 3)
    mask = torch.rand(5, 7) < 0.5
    mask[2] = False  # an empty history
    packed = Packed.from_padded(keys, mask)
    assert packed.keys.shape == (int(mask.sum()), 3)
    dense = keys * mask.unsqueeze(-1)
    torch.testing.assert_close(packed.padded_keys(), dense)
    torch.testing.assert_close(packed.segment_sum(packed.keys), dense.sum(1))
    w = torch.rand(5, 7)
    torch.testing.assert_close(packed.weighted_sum(w), (w.unsqueeze(-1) * dense).sum(1))
    assert (packed.weighted_sum(w)[2] == 0).all()
    torch.testing.assert_close(packed.narrow(slice(1, 3)).keys, packed.keys[:, 1:3])


@pytest.mark.parametrize("fillers", [False, True])
def test_unnormalised_attention_skips_the_padded_round_trip_with_the_same_numbers(fillers):
    """``attend(..., 'none')`` pools with each position's own score; pooled, weights and the scores'
    gradient are the padded route's (``normalize_scores`` over [B, L]) bit for bit, also with a static
    batch's fillers (listed padding positions, which must weigh 0)."""
    from dinbench.poolers.base import attend, normalize_scores

    torch.manual_seed(2)
    keys, mask = torch.randn(6, 9, 4), torch.rand(6, 9) < 0.6
    mask[3] = False  # an empty history
    packed = Packed.from_padded(keys, mask)
    if fillers:  # two fillers at row 3's padding, as BehaviourStore.batch_static lists them
        at = int((packed.row < 3).sum())
        packed.keys = torch.cat([packed.keys[:at], torch.randn(2, 4), packed.keys[at:]])
        packed.row = torch.cat([packed.row[:at], torch.tensor([3, 3]), packed.row[at:]])
        packed.pos = torch.cat([packed.pos[:at], torch.tensor([0, 1]), packed.pos[at:]])
        packed.real = torch.cat([torch.ones(at, dtype=torch.bool), torch.zeros(2, dtype=torch.bool),
                                 torch.ones(len(packed.keys) - at - 2, dtype=torch.bool)])
    out = []
    for route in ("direct", "padded"):
        scores = torch.randn(len(packed.keys), generator=torch.Generator().manual_seed(4)).requires_grad_()
        if route == "direct":
            pooled, weights = attend(packed, scores, "none")
        else:
            weights = normalize_scores(packed.to_padded(scores), packed.mask, "none")
            pooled = packed.weighted_sum(weights)
        pooled.square().sum().backward()
        out.append((pooled, weights, scores.grad))
    for a, b in zip(*out):
        assert torch.equal(a, b)
    assert (out[0][1][~mask] == 0).all() and (out[0][0][3] == 0).all()


def test_a_sparse_table_is_looked_up_once_for_candidates_and_history(monkeypatch):
    """Candidates and history share one lookup of a sparse-gradient table (one sparse gradient, history
    entries first); the embeddings are those of two lookups, the summed gradient equal up to rounding;
    a dense table keeps its two lookups."""
    from dinbench import optimizers
    from dinbench.model.embeddings import FeatureEmbeddings

    monkeypatch.setattr(optimizers, "SPARSE_MIN_ROWS", 20)  # the item table (31 rows) sparse, the category one (6) dense
    torch.manual_seed(0)
    emb = FeatureEmbeddings(30, 5, 4, 0.1, sparse=True)
    assert emb.item.sparse and not emb.category.sparse
    gen = torch.Generator().manual_seed(1)
    qi, ki = torch.tensor([3, 3, 7, 29, 3, 12]), torch.randint(1, 31, (15,), generator=gen)  # candidate 3 thrice
    qc, kc = torch.randint(1, 6, (6,), generator=gen), torch.randint(1, 6, (15,), generator=gen)
    q, keys = emb.query_and_keys(qi, qc, ki, kc)
    assert torch.equal(q, emb(qi, qc)) and torch.equal(keys, emb(ki, kc))
    w_q, w_k = torch.randn(6, 8, generator=gen), torch.randn(15, 8, generator=gen)
    ((q * w_q).sum() + (keys * w_k).sum()).backward()
    grad = emb.item.weight.grad
    assert grad.is_sparse and torch.equal(grad._indices()[0], torch.cat([ki, qi]))  # one tensor, history first
    assert not emb.category.weight.grad.is_sparse
    expected = torch.zeros(31, 4).index_add_(0, qi, w_q[:, :4]).index_add_(0, ki, w_k[:, :4])
    torch.testing.assert_close(grad.to_dense(), expected, rtol=0, atol=1e-6)
    emb.zero_grad(set_to_none=True)  # with the padding id among the ids, its row still gets no gradient
    q, keys = emb.query_and_keys(qi, qc, torch.cat([ki[:5], torch.tensor([0]), ki[5:]]), torch.cat([kc[:5], kc[:1], kc[5:]]))
    assert (keys[5, :4] == 0).all()
    ((q * w_q).sum() + (keys * torch.randn(16, 8, generator=gen)).sum()).backward()
    assert (emb.item.weight.grad.to_dense()[0] == 0).all() and emb.item.weight.grad.to_dense()[1:].abs().sum() > 0


def test_a_pooler_without_a_packed_implementation_still_works_through_padding():
    """Third-party poolers written against the README's padded interface keep working in the model."""

    class First(poolers.Pooler):
        def __init__(self, dim):
            super().__init__()

        def forward(self, query, keys, mask, age=None):
            first = mask.int().argmax(dim=1, keepdim=True)  # [B, 1]
            weights = torch.zeros_like(keys[..., 0]).scatter(1, first, 1.0) * mask
            return poolers.base.weighted_sum(weights, keys), weights

    torch.manual_seed(0)
    keys = torch.randn(4, 6, 8)
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]]).bool()
    pooler = First(8)
    out, w = pooler.pool_packed(torch.randn(4, 8), Packed.from_padded(keys, mask))
    torch.testing.assert_close(out, keys[:, 0] * mask[:, :1])
    assert w.shape == (4, 6)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_fused_optimizer_takes_the_same_steps(optimizer):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.PReLU(5), torch.nn.Linear(5, 1))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.PReLU(5), torch.nn.Linear(5, 1))
    twin.load_state_dict(model.state_dict())
    fast = make_optimizer(optimizer, model, 0.01)
    assert fast.defaults.get("fused") is True
    plain = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(twin.parameters(), lr=0.01)
    x = torch.randn(32, 6)
    for _ in range(5):
        for m, opt in ((model, fast), (twin, plain)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- precision, threads, devices


def test_unknown_precision_is_one_clear_error(cli):
    from helpers import assert_user_error

    invoke, _, _ = cli
    assert_user_error(invoke("run", "--precision", "fp16"), "--precision", "fp16", "fp32, bf16")


def test_precision_is_recorded_and_bf16_trains_on_cpu(tiny):
    from dinbench.train import fit

    cfg = RunConfig(pooler="din:softmax", epochs=1, batch_size=128, embedding_dim=4, mlp_hidden=(8,), max_len=10)
    assert cfg.precision == "fp32" and cfg.to_dict()["precision"] == "fp32"
    fitted = fit(RunConfig(**{**cfg.to_dict(), "precision": "bf16"}), tiny)
    gauc = fitted.history[0]["valid"]["gauc"]
    assert 0.5 < gauc <= 1.0
    assert all(p.dtype == torch.float32 for p in fitted.model.parameters())  # autocast: weights stay fp32


@pytest.mark.parametrize("spec", ["din:softmax", "multihead", "dot"])
def test_a_seeded_run_is_identical_with_two_threads(tiny, spec):
    """Per-row tensors are spread to positions with index_select: x[row]'s backward accumulates with
    atomic adds on several CPU threads, which made seeded `din` runs differ from run to run."""
    from dinbench.train import fit

    torch.set_num_threads(2)  # the conftest fixture puts 1 back after the test
    cfg = RunConfig(pooler=spec, epochs=1, batch_size=128, embedding_dim=4, mlp_hidden=(8,), max_len=20, lr=0.03)
    a, b = fit(cfg, tiny), fit(cfg, tiny)
    assert a.history[0]["valid"] == b.history[0]["valid"]
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


def test_old_records_without_precision_compare_equal_to_fp32():
    from dinbench.config import comparable

    new = RunConfig().to_dict()
    old = {k: v for k, v in new.items() if k != "precision"}
    assert comparable(old) == comparable(new)
    assert comparable({**new, "precision": "bf16"}) != comparable(new)


def test_default_threads_are_half_the_usable_cores_from_one_to_four(monkeypatch):
    from dinbench import runtime
    from dinbench.errors import DinbenchError

    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert runtime.default_threads() == 1
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(1)), raising=False)
    assert runtime.default_threads() == 1
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(6)), raising=False)
    assert runtime.default_threads() == 3
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert runtime.default_threads() == 4
    assert runtime.set_threads(None) == 4 and torch.get_num_threads() == 4
    assert runtime.set_threads(1) == 1 and torch.get_num_threads() == 1
    with pytest.raises(DinbenchError, match="--threads must be at least 1"):
        runtime.set_threads(0)


# ---------------------------------------------------------------- length-bucketed batches


def test_bucketing_keeps_every_row_once_per_epoch_is_seeded_and_groups_lengths():
    from dinbench.batches import batch_indices, bucketed_batch_indices

    lengths = np.random.default_rng(3).integers(0, 51, size=10_007)
    epoch = bucketed_batch_indices(lengths, 64, np.random.default_rng(7), window=4)
    rows = np.concatenate(epoch)
    assert len(rows) == len(lengths) and np.array_equal(np.sort(rows), np.arange(len(lengths)))  # each row once
    assert all(len(b) <= 64 for b in epoch)
    again = bucketed_batch_indices(lengths, 64, np.random.default_rng(7), window=4)
    assert all(np.array_equal(a, b) for a, b in zip(epoch, again))  # same seed, same batches
    other = bucketed_batch_indices(lengths, 64, np.random.default_rng(8), window=4)
    assert not all(np.array_equal(a, b) for a, b in zip(epoch, other))  # another seed, other batches
    # less padding than plain shuffled batches: the point of bucketing
    plain = batch_indices(len(lengths), 64, np.random.default_rng(7))
    padded = lambda batches: sum(len(b) * lengths[b].max() for b in batches)  # noqa: E731
    assert padded(epoch) < 0.7 * padded(plain)


def test_bucketing_stays_off_by_default():
    assert RunConfig().bucket is False


AGE_READERS = [("time-decay", {"decay_age": "time"}), ("bst", {"position": "time"})]


@pytest.mark.parametrize("spec", ALL)
def test_a_model_that_reads_no_padded_history_scores_a_lean_batch_the_same(tiny, spec):
    """Training and scoring skip the batch's [B, L] columns for a model whose ``needs_padded`` is False:
    its logits and weights on such a batch are the same, bit for bit, as on the full batch."""
    torch.manual_seed(0)
    model = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build(spec, d), embedding_dim=4, mlp_hidden=(16, 8))
    assert not model.needs_padded
    store = make_store(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    idx = np.random.default_rng(0).permutation(len(samples))[:96]
    model.eval()
    logits, weights = model(store.batch(samples, idx))
    lean_logits, lean_weights = model(store.batch(samples, idx, padded=False))
    assert torch.equal(logits, lean_logits)
    assert (weights is None and lean_weights is None) or torch.equal(weights, lean_weights)


@pytest.mark.parametrize("spec, opts", AGE_READERS)
def test_poolers_that_weigh_by_age_get_padded_batches(tiny, spec, opts, tmp_path):
    model = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build(spec, d, **opts), embedding_dim=4)
    assert model.needs_padded
    store = make_store(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    with pytest.raises(ValueError, match="needs the age tensor"):  # what a lean batch would do to it
        model(store.batch(samples, np.arange(32), padded=False))
    model(store.batch(samples, np.arange(32)))
    cfg = RunConfig(dataset="synthetic", pooler=spec, pooler_options=opts, epochs=1, embedding_dim=4, mlp_hidden=(8,),
                    batch_size=128, max_len=20)
    _, record = train_run(cfg, tiny, tmp_path)  # training and scoring hand it the padded history
    assert 0 < record["test"]["auc"] < 1
    three = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build("average", d), embedding_dim=4,
                     architecture="three-tower")
    assert three.needs_padded  # its cross features count the padded history's ids


def test_the_minibatch_l2_of_packed_ids_equals_that_of_padded_ids(tiny):
    store = make_store(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    batch = store.batch(samples, np.arange(64))
    torch.manual_seed(0)
    items, cats = torch.nn.Embedding(tiny.n_items + 1, 4), torch.nn.Embedding(tiny.n_categories + 1, 4)
    reg = MiniBatchL2(np.arange(tiny.n_items + 1) + 1.0, np.arange(tiny.n_categories + 1) + 1.0, weight=0.3)
    padded = reg(items, cats, torch.cat([batch.item[:, None], batch.hist_item], 1),
                 torch.cat([batch.category[:, None], batch.hist_category], 1))
    packed = reg(items, cats, torch.cat([batch.item, batch.packed_item]), torch.cat([batch.category, batch.packed_category]))
    assert torch.equal(padded, packed)

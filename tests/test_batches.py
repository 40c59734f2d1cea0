"""The device gather (``BehaviourStore.batch``) against the numpy oracle of earlier versions: identical
batches, field by field (dtype and values, row/pos included), for random, bucketed and edge-case rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinbench.batches import Batch, NumpyOracle, batch_indices, bucketed_batch_indices, length_sorted_indices, make_store


def assert_same_batch(got: Batch, want: Batch) -> None:
    for name, expected in want.__dict__.items():
        actual = getattr(got, name)
        if expected is None:  # the static batch's fields
            assert actual is None, name
            continue
        assert actual.dtype == expected.dtype, name
        assert actual.shape == expected.shape, name
        assert torch.equal(actual.cpu(), expected), name


@pytest.fixture(scope="module")
def stores(tiny):
    return make_store(tiny, "cpu"), NumpyOracle(tiny)


@pytest.mark.parametrize("max_len", [1, 3, 50])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_device_gather_equals_the_numpy_oracle(tiny, stores, split, max_len):
    store, oracle = stores
    samples = store.samples(tiny.splits[split], max_len)
    rng = np.random.default_rng(max_len)
    cases = [rng.permutation(len(samples))[:size] for size in (1, 2, 7, 128, len(samples))]
    cases += bucketed_batch_indices(samples.hist_len, 64, rng, window=4)[:5]  # rows of similar lengths
    cases += length_sorted_indices(samples.hist_len, 100)[:2]  # evaluation's order: shortest first
    cases.append(np.flatnonzero(samples.hist_len == samples.hist_len.max())[:3])
    for idx in cases:
        assert_same_batch(store.batch(samples, idx), oracle.batch(samples, idx))
        assert_same_batch(store.batch(samples, store.rows(idx)), oracle.batch(samples, idx))


def test_empty_histories_a_batch_of_one_and_repeated_rows(tiny, stores):
    store, oracle = stores
    frame = tiny.splits["train"].copy()
    frame.loc[frame.index[::7], "hist_end"] = 0  # samples at a user's first behaviour: no history
    samples = store.samples(frame, 20)
    empty = np.flatnonzero(samples.hist_len == 0)
    full = np.flatnonzero(samples.hist_len > 0)
    for idx in (empty[:1], empty[:5], full[:1], np.r_[empty[:2], full[:3], empty[2:3]], np.r_[full[:2], full[:2]]):
        got, want = store.batch(samples, idx), oracle.batch(samples, idx)
        assert_same_batch(got, want)
    only_empty = store.batch(samples, empty[:3])
    assert only_empty.mask.shape == (3, 1) and not only_empty.mask.any() and only_empty.row.numel() == 0


def test_slices_of_an_uploaded_epoch_order_gather_the_same_batches(tiny, stores):
    store, oracle = stores
    samples = store.samples(tiny.splits["train"], 20)
    batches = bucketed_batch_indices(samples.hist_len, 32, np.random.default_rng(1), window=3)
    order = store.rows(np.concatenate(batches))  # one upload per epoch
    start = 0
    for idx in batches:
        part = order[start:start + len(idx)]
        assert np.array_equal(part.host, idx) and torch.equal(part.device.cpu(), torch.from_numpy(idx))
        assert_same_batch(store.batch(samples, part), oracle.batch(samples, idx))
        start += len(idx)


def test_the_store_keeps_ids_in_int32_and_batches_in_the_model_dtypes(tiny, stores):
    store, _ = stores
    assert store.item.dtype == store.category.dtype == torch.int32
    samples = store.samples(tiny.splits["test"], 50)
    for name in ("hist_start", "hist_len", "target_time"):  # 4 bytes a sample each, where the values fit
        assert getattr(samples, name).dtype == np.int32 and getattr(samples.on_device, name).dtype == torch.int32, name
    batch = store.batch(samples, np.arange(8), padded=True)
    assert batch.packed_item.dtype == batch.row.dtype == batch.pos.dtype == torch.long and batch.age.dtype == torch.float32
    subset = samples.subset(np.array([5, 0, 3]))
    assert subset.user.tolist() == samples.user[[5, 0, 3]].tolist()
    assert_same_batch(store.batch(subset, np.arange(3)), store.batch(samples, np.array([5, 0, 3])))


def test_on_the_cpu_the_device_samples_are_the_host_arrays_not_copies(tiny, stores):
    """A CPU run holds each split's sample columns once: the 'device' tensors share the host arrays'
    memory (a copy would double 36 bytes a sample: gigabytes at Taobao size), with the same values;
    an epoch's order likewise. A read-only column (pandas copy-on-write) is copied once, not shared."""
    store, _ = stores
    samples = store.samples(tiny.splits["train"], 20)
    for name in ("item", "category", "label", "hist_start", "hist_len", "target_time"):
        host, dev = getattr(samples, name), getattr(samples.on_device, name)
        assert np.array_equal(dev.numpy(), host), name
        if host.flags.writeable:
            assert np.shares_memory(dev.numpy(), host), name
    assert all(np.shares_memory(getattr(samples.on_device, n).numpy(), getattr(samples, n))
               for n in ("hist_start", "hist_len", "target_time"))  # computed here, so always writable
    order = store.rows(np.arange(len(samples))[::-1].copy())
    assert np.shares_memory(order.device.numpy(), order.host)
    frozen = np.arange(5, dtype=np.int64)
    frozen.flags.writeable = False
    kept = store.rows(frozen)
    assert torch.equal(kept.device, torch.arange(5)) and not np.shares_memory(kept.device.numpy(), frozen)


def test_an_epoch_s_batches_are_joined_without_a_copy_where_they_are_slices_in_order():
    """joined: batch_indices' batches are consecutive slices of one permutation, which is their join (no
    copy of 8 bytes a sample); anything else (shuffled, partial, bucketed batches) is concatenated."""
    from dinbench.batches import joined

    rng = np.random.default_rng(0)
    batches = batch_indices(1000, 64, rng)
    order = joined(batches)
    assert np.shares_memory(order, batches[0]) and np.array_equal(order, np.concatenate(batches))
    for other in (batches[::-1], batches[1:], batches[:-1], [b.copy() for b in batches],
                  bucketed_batch_indices(rng.integers(0, 30, 1000), 64, rng, window=3)):
        got = joined(other)
        assert got.dtype == np.int64 and np.array_equal(got, np.concatenate(other))
    assert not np.shares_memory(joined(batches[::-1]), batches[0])
    assert joined([]).shape == (0,)


def test_the_gather_never_reads_the_device(tiny, stores):
    """On the meta device tensors have shapes but no data, so anything that waits for the device's
    values (``.item()``, ``nonzero``, a shape taken from data) fails there: a batch gathered on it
    proves the gather queues its work without a host sync, as it must on CUDA."""
    store, oracle = stores
    meta = make_store(tiny, "meta")
    for max_len in (3, 50):
        samples, on_meta = store.samples(tiny.splits["train"], max_len), meta.samples(tiny.splits["train"], max_len)
        idx = np.random.default_rng(0).permutation(len(samples))[:100]
        got, want = meta.batch(on_meta, meta.rows(idx)[10:60]), oracle.batch(samples, idx[10:60])
        for name, expected in want.__dict__.items():
            actual = getattr(got, name)
            if expected is None:
                continue
            assert actual.device.type == "meta" and actual.dtype == expected.dtype and actual.shape == expected.shape


def test_the_epoch_loss_is_summed_without_reading_the_device():
    from dinbench.train import EpochLoss

    loss = EpochLoss(0.0, torch.device("meta"))
    for step in range(1, 4):
        loss.add(torch.tensor(0.5, device="meta"), 256, step)  # would fail on meta if it read a value
    assert loss.total.device.type == "meta"


def test_a_batch_without_the_padded_history_is_the_same_batch_less_those_columns(tiny, stores):
    """``padded=False`` (what training and scoring ask for when the model reads no [B, L] history)
    skips exactly the padded columns: every other field, the packed ids included, is the same."""
    store, _ = stores
    samples = store.samples(tiny.splits["train"], 20)
    idx = np.random.default_rng(3).permutation(len(samples))[:77]
    full, lean = store.batch(samples, idx), store.batch(samples, idx, padded=False)
    padded_only = {"hist_item", "hist_category", "age", "hist_neg_item", "hist_neg_category"}
    for name, value in full.__dict__.items():
        if name in padded_only:
            assert getattr(lean, name) is None, name
        elif value is not None:
            assert torch.equal(getattr(lean, name), value), name
    assert full.hist_item is not None and full.packed_item.numel() == int(full.mask.sum()) > 0
    assert torch.equal(full.packed_item, full.hist_item[full.mask])  # the real positions, row-major


def test_packed_negatives_are_the_padded_negatives_at_the_real_positions(tiny):
    store = make_store(tiny)
    store.draw_negatives(tiny, seed=3)
    samples = store.samples(tiny.splits["train"], 20)
    idx = np.arange(50)
    full, lean = store.batch(samples, idx, negatives=True), store.batch(samples, idx, negatives=True, padded=False)
    assert torch.equal(full.packed_neg_item, full.hist_neg_item[full.mask])
    assert torch.equal(full.packed_neg_category, full.hist_neg_category[full.mask])
    assert torch.equal(lean.packed_neg_item, full.packed_neg_item) and lean.hist_neg_item is None


@pytest.mark.parametrize("high", [51, 1 << 16, 1 << 20])  # 16-bit keys (radix) and wider ones
def test_evaluation_batches_are_the_stable_length_order_in_slices(high):
    lengths = np.random.default_rng(high).integers(0, high, 5_003).astype(np.int32)
    batches = length_sorted_indices(lengths, 1_000)
    assert [len(b) for b in batches] == [1_000] * 5 + [3]
    order = np.concatenate(batches)
    # shortest first, ties in row order: the merge sort's (one stable order exists)
    np.testing.assert_array_equal(order, sorted(range(len(lengths)), key=lambda i: (lengths[i], i)))

"""Samples -> padded tensors, gathered on the training device from the ragged behaviour store.

Histories are never materialised as a dense [rows x max_len] matrix. A sample points at its
user's behaviours (``abs_end`` = row of the target in the behaviours table, history = the
``hist_len`` rows before it); a batch gathers exactly those rows with tensor index ops and pads
to the batch's own longest history.

Where the data lives: ``make_store(prepared, device)`` moves the behaviours table (item, category,
time) to ``device`` once, and ``store.samples`` gives each split's sample arrays on the device too
(``SampleSet.on_device``), beside the numpy arrays host code reads (metrics, bucketing, batch widths,
analyses). A batch is then gathered on the device with one code path for CPU and CUDA and without a
host sync: its width (longest history) and its number of real positions N come from the numpy
``hist_len``, and the index order of a whole epoch goes to the device once (``store.rows``).
``NumpyOracle`` is the numpy gather of earlier versions, kept only as the test oracle (and for
benchmarks/gather.py): both give identical batches (tests/test_batches.py).

Layout of a batch's history: oldest first, left-aligned, padding on the right (mask False). It comes
in two forms: packed, the ids of the N real positions (row-major), which is all the model embeds; and
padded [B, L] columns (ids, ages), gathered only when asked for (``padded=True``, the default: the
analyses read them, and poolers that weigh by age need ``age``). Training and scoring ask for them
only when the model needs them (``needs_padded``): the [B, L] gathers cost B * L positions for N
real ones (51,200 for ~8,600 on amazon-beauty), 8 % of a step of ``average`` there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dinbench.prepared.contract import Prepared
from dinbench.prepared.protocol import sample_negatives

INT32_MAX = np.iinfo(np.int32).max
NEGATIVES_STREAM = 0xD1E7  # the negatives' generator: seeded by (this, the run's seed), apart from batch order


@dataclass
class DeviceSamples:
    """A split's sample arrays on the store's device (what the gather reads); N = samples."""

    item: torch.Tensor  # [N] int32 candidate item
    category: torch.Tensor  # [N] int32 candidate category
    label: torch.Tensor  # [N] float32 0/1
    hist_start: torch.Tensor  # [N] int32 (int64 where the values need it), as the three below
    hist_len: torch.Tensor  # [N]
    target_time: torch.Tensor  # [N]

    def subset(self, rows: torch.Tensor) -> "DeviceSamples":
        return DeviceSamples(*(t[rows] for t in self.__dict__.values()))


@dataclass
class SampleSet:
    """One split's samples as flat numpy arrays (for host code), with histories truncated to
    ``max_len``, and the same arrays on the store's device (``on_device``, for gathering)."""

    user: np.ndarray  # [N] int32
    item: np.ndarray  # [N] int32 candidate item
    category: np.ndarray  # [N] int32 candidate category
    label: np.ndarray  # [N] float32 0/1
    hist_start: np.ndarray  # [N] int32 (int64 where needed) first history row in the behaviours table
    hist_len: np.ndarray  # [N] int32 number of history rows (<= max_len)
    target_time: np.ndarray  # [N] int32 (int64 where needed) time of the target behaviour
    on_device: DeviceSamples

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, rows: np.ndarray) -> "SampleSet":
        """The samples ``rows`` (in that order), on the host and on the device."""
        host = {k: v[rows] for k, v in self.__dict__.items() if k != "on_device"}
        device_rows = torch.tensor(np.asarray(rows, dtype=np.int64), device=self.on_device.label.device)
        return SampleSet(**host, on_device=self.on_device.subset(device_rows))


@dataclass
class Batch:
    """Tensors of one mini-batch. B = rows, L = longest history in the batch (>= 1), N = listed
    history positions (the real ones, row-major; a static batch adds fillers)."""

    item: torch.Tensor  # [B] long
    category: torch.Tensor  # [B] long
    mask: torch.Tensor  # [B, L] bool, True at real positions
    label: torch.Tensor  # [B] float
    row: torch.Tensor  # [N] long, batch row of each listed history position (row-major, N = mask.sum())
    pos: torch.Tensor  # [N] long, its position in [0, L)
    packed_item: torch.Tensor  # [N] long, item id of each listed position (what the model embeds)
    packed_category: torch.Tensor  # [N] long, its category id
    # the padded history, None unless asked for (BehaviourStore.batch(padded=True), the default):
    hist_item: torch.Tensor | None = None  # [B, L] long, 0 at padding
    hist_category: torch.Tensor | None = None  # [B, L] long, 0 at padding
    age: torch.Tensor | None = None  # [B, L] float, target time - behaviour time (0 at padding)
    # a static batch (batch_static) also lists padding positions, to a fixed N:
    counts: torch.Tensor | None = None  # [B] long, positions listed per row (None: mask.sum(1))
    real: torch.Tensor | None = None  # [N] bool, True at the listed positions that are real (None: all)
    # a pooler's auxiliary loss (Pooler.needs_negatives): each history position's sampled negative
    # (BehaviourStore.draw_negatives), gathered only when asked for (``negatives=True``); else None
    packed_neg_item: torch.Tensor | None = None  # [N] long
    packed_neg_category: torch.Tensor | None = None  # [N] long
    hist_neg_item: torch.Tensor | None = None  # [B, L] long, 0 at padding (with ``padded`` only)
    hist_neg_category: torch.Tensor | None = None  # [B, L] long, 0 at padding (with ``padded`` only)


@dataclass
class Rows:
    """Row indices of samples, on the host (numpy, for widths and sizes) and on the device (for
    gathering). Slicing gives views of both: an epoch's order is uploaded once and cut into batches."""

    host: np.ndarray  # [B] int64
    device: torch.Tensor  # [B] long, the same indices on the store's device

    def __len__(self) -> int:
        return len(self.host)

    def __getitem__(self, part: slice) -> "Rows":
        return Rows(self.host[part], self.device[part])


def make_store(prepared: Prepared, device: torch.device | str = "cpu") -> "BehaviourStore":
    """The behaviour store that training, evaluation and the analyses draw their batches from, with
    the behaviours table on ``device`` (moved there once, here)."""
    return BehaviourStore(prepared, device)


def _compact(values: np.ndarray) -> np.ndarray:
    """int32 when every value fits (half the memory: 100 M behaviours x 3 columns), else int64."""
    if len(values) == 0 or (values.min() >= -INT32_MAX and values.max() <= INT32_MAX):
        return values.astype(np.int32)
    return values.astype(np.int64)


class BehaviourStore:
    """The behaviours table as flat columns on ``device`` (int32 where the values fit), indexable by row.

    ``item``, ``category``, ``time``: [rows] tensors on ``device``. Host code that needs the columns
    in numpy reads them from ``prepared.behaviours``.
    """

    def __init__(self, prepared: Prepared, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        beh = prepared.behaviours
        self.item = torch.from_numpy(_compact(beh["item"].to_numpy(np.int64))).to(self.device)  # [rows]
        self.category = torch.from_numpy(_compact(beh["category"].to_numpy(np.int64))).to(self.device)  # [rows]
        self.time = torch.from_numpy(_compact(beh["time"].to_numpy(np.int64))).to(self.device)  # [rows]
        self.user_start = prepared.user_start
        self._behaviours = beh  # for the samples' target times (host)
        self.neg_item: torch.Tensor | None = None  # [rows] per behaviour: a sampled negative (draw_negatives)
        self.neg_category: torch.Tensor | None = None  # [rows] its category

    def draw_negatives(self, prepared: Prepared, seed: int) -> None:
        """Draw, once, one negative per behaviour row: an item its user never touched (any split), uniform
        over the items, with the rejection sampler of the sample protocol (dinbench.prepared.protocol),
        from a generator seeded by ``seed`` (the run's) on a stream of its own. Batches gather them like
        ``hist_item`` when asked (``negatives=True``). The prepared files and fingerprint are untouched."""
        beh = prepared.behaviours
        users, items = beh["user"].to_numpy(np.int64), beh["item"].to_numpy(np.int64)
        rng = np.random.default_rng([NEGATIVES_STREAM, seed])
        neg = sample_negatives(users, items, users, prepared.n_items, rng).astype(np.int64)  # [rows]
        category = np.zeros(prepared.n_items + 1, dtype=np.int64)  # item id -> category id (0: padding)
        category[prepared.items["item"].to_numpy(np.int64)] = prepared.items["category"].to_numpy(np.int64)
        self.neg_item = torch.from_numpy(_compact(neg)).to(self.device)
        self.neg_category = torch.from_numpy(_compact(category[neg])).to(self.device)

    def samples(self, frame: pd.DataFrame, max_len: int) -> SampleSet:
        user = frame["user"].to_numpy(np.int32)
        hist_end = frame["hist_end"].to_numpy(np.int64)
        abs_end = self.user_start[user] + hist_end  # row of the target behaviour
        hist_len = np.minimum(hist_end, max_len)
        host = dict(
            user=user,
            item=frame["item"].to_numpy(np.int32),
            category=frame["category"].to_numpy(np.int32),
            label=frame["label"].to_numpy(np.float32),
            # int32 where the values fit (12 bytes a sample less: 2 GB at Taobao's 173 M training samples)
            hist_start=_compact(abs_end - hist_len),
            hist_len=_compact(hist_len),
            target_time=_compact(self._behaviours["time"].to_numpy(np.int64)[abs_end]),
        )
        on_device = DeviceSamples(**{k: self._on_device(host[k]) for k in
                                     ("item", "category", "label", "hist_start", "hist_len", "target_time")})
        return SampleSet(**host, on_device=on_device)

    def rows(self, idx: np.ndarray) -> Rows:
        """Sample indices ``idx`` on the host and the device: one copy to the device (none on the CPU)."""
        host = np.asarray(idx, dtype=np.int64)
        return Rows(host, self._on_device(host))

    def _on_device(self, values: np.ndarray) -> torch.Tensor:
        """A host array on the store's device. On the CPU the tensor shares the array's memory instead of
        copying it (a split's six columns take 24 bytes a sample: 0.8 GB for a 20 M-row Taobao
        fraction's 34.6 M training samples); neither side is written after this. A read-only array (a
        pandas column under copy-on-write) is copied, as torch's tensors are writable."""
        if self.device.type != "cpu":
            return torch.tensor(values, device=self.device)
        values = np.ascontiguousarray(values)  # (no copy when it is already)
        return torch.from_numpy(values if values.flags.writeable else values.copy())

    def batch(self, s: SampleSet, rows: Rows | np.ndarray, negatives: bool = False, padded: bool = True) -> Batch:
        """The batch of samples ``rows`` of ``s``, gathered on the store's device.

        No host sync: the batch width L and the number of real positions N are read from the host
        ``hist_len``; ``row``/``pos`` come from ``repeat_interleave`` with its output size given
        (``nonzero`` would wait for the device). Every gather is an ``index_select`` (on CPU several
        times faster than advanced indexing). A numpy ``rows`` is uploaded first (one copy).
        ``negatives``: with the sampled negatives. ``padded``: with the [B, L] history columns
        (``hist_item``, ``hist_category``, ``age``, ``hist_neg_*``); else those are None.
        """
        if not isinstance(rows, Rows):
            rows = self.rows(rows)
        if negatives and self.neg_item is None:
            raise ValueError("batch(negatives=True) needs the store's negatives: call draw_negatives first")
        lens_host = s.hist_len[rows.host]  # [B]
        width = max(int(lens_host.max()) if len(lens_host) else 1, 1)  # L
        n = int(lens_host.sum())  # N
        d, dev, idx = s.on_device, self.device, rows.device
        lens = d.hist_len.index_select(0, idx)  # [B]
        row = torch.repeat_interleave(torch.arange(len(idx), device=dev), lens, output_size=n)  # [N] row-major
        first = torch.cumsum(lens, 0) - lens  # [B] index in [0, N) of each row's first real position
        pos = torch.arange(n, device=dev) - first.index_select(0, row)  # [N]
        beh = d.hist_start.index_select(0, idx).index_select(0, row) + pos  # [N] behaviour rows

        def packed(column: torch.Tensor) -> torch.Tensor:  # [rows] -> [N] long
            return column.index_select(0, beh).long()

        batch = Batch(
            item=d.item.index_select(0, idx).long(),
            category=d.category.index_select(0, idx).long(),
            mask=torch.arange(width, device=dev)[None, :] < lens[:, None],  # [B, L]
            label=d.label.index_select(0, idx),
            row=row,
            pos=pos,
            packed_item=packed(self.item),
            packed_category=packed(self.category),
        )
        if negatives:
            batch.packed_neg_item, batch.packed_neg_category = packed(self.neg_item), packed(self.neg_category)
        if padded:
            self._pad(batch, d, idx, negatives=negatives)
        return batch

    def batch_static(self, s: SampleSet, idx: torch.Tensor, width: int, capacity: int,
                     negatives: bool = False) -> Batch:
        """The batch of samples ``idx`` (a [B] tensor on the device) with shapes that depend only on B,
        ``width`` (>= every history's length) and ``capacity`` (>= the batch's real positions), and no
        host read, so that it can be captured in a CUDA graph (dinbench.graph_step).

        Its [B, L] tensors are ``width + 1`` wide (the last column is always padding). It lists
        N = ``capacity`` positions: the real ones, row-major as in ``batch``, then fillers up to N,
        all in the last row at its padding positions (``real`` False, ``counts`` says how many each
        row lists). Poolers weight padding 0, so results equal ``batch``'s up to float summation
        order. Fillers and padding keep the item and category of the behaviour row they point at
        (not 0): a gradient of exact zeros spread over many table rows, instead of thousands of
        lookups of row 0, whose gradient sum would run serially on a GPU."""
        if negatives and self.neg_item is None:
            raise ValueError("batch(negatives=True) needs the store's negatives: call draw_negatives first")
        d, dev, b = s.on_device, self.device, len(idx)
        lens = d.hist_len.index_select(0, idx)  # [B]
        none = torch.empty(0, dtype=torch.long, device=dev)
        mask = torch.arange(width + 1, device=dev)[None, :] < lens[:, None]  # [B, width + 1]
        batch = Batch(item=d.item.index_select(0, idx).long(), category=d.category.index_select(0, idx).long(),
                      mask=mask, label=d.label.index_select(0, idx), row=none, pos=none, packed_item=none,
                      packed_category=none)
        self._pad(batch, d, idx, zero_padding=False, negatives=negatives)
        counts = torch.cat([lens[:-1], (capacity - lens[:-1].sum()).reshape(1)])  # [B] the last row takes the fillers
        row = torch.repeat_interleave(torch.arange(b, device=dev), counts, output_size=capacity)  # [N]
        first = torch.cumsum(counts, 0) - counts  # [B]
        pos = (torch.arange(capacity, device=dev) - first.index_select(0, row)).clamp_(max=width)  # [N]
        batch.row, batch.pos, batch.counts = row, pos, counts
        batch.real = batch.mask[row, pos]  # [N]
        batch.packed_item, batch.packed_category = batch.hist_item[row, pos], batch.hist_category[row, pos]  # [N]
        if negatives:
            batch.packed_neg_item, batch.packed_neg_category = batch.hist_neg_item[row, pos], batch.hist_neg_category[row, pos]
        return batch

    def _pad(self, batch: Batch, d: DeviceSamples, idx: torch.Tensor, zero_padding: bool = True,
             negatives: bool = False) -> None:
        """Sets the padded part of ``batch`` over its mask's [B, L]: hist_item, hist_category, age (and
        hist_neg_* with ``negatives``), for samples ``idx``.
        ``zero_padding``: item and category 0 at padding (else those of the behaviour row pointed at)."""
        mask = batch.mask  # [B, L]
        offs = torch.arange(mask.shape[1], device=self.device)  # [L]
        padding = ~mask
        # behaviour rows, flat [B * L]; padding positions point at some valid row and are zeroed below
        beh = (d.hist_start.index_select(0, idx)[:, None] + offs[None, :]).clamp_(max=len(self.item) - 1).view(-1)

        def history(column: torch.Tensor) -> torch.Tensor:  # [rows] -> [B, L] long, 0 at padding if zero_padding
            out = column.index_select(0, beh).view(mask.shape).long()
            return out.masked_fill_(padding, 0) if zero_padding else out

        age = (d.target_time.index_select(0, idx).long()[:, None]  # int64: a difference of int32 times may not fit
               - self.time.index_select(0, beh).view(mask.shape))
        batch.age = age.masked_fill_(padding, 0).float()  # [B, L]
        batch.hist_item, batch.hist_category = history(self.item), history(self.category)  # [B, L]
        if negatives:
            batch.hist_neg_item, batch.hist_neg_category = history(self.neg_item), history(self.neg_category)


def joined(batches: list[np.ndarray]) -> np.ndarray:
    """The batches' row indices one after another as one int64 array: the array they are consecutive
    slices of when they are (``batch_indices``'s batches: a view, no copy: a copy of an epoch's order
    is 8 bytes a sample, 1.4 GB at Taobao's 173 M training samples), else their concatenation."""
    if not batches:
        return np.zeros(0, np.int64)
    base = batches[0].base
    if isinstance(base, np.ndarray) and base.dtype == np.int64 and base.ndim == 1 and base.flags.c_contiguous:
        at = base.ctypes.data
        for b in batches:
            if b.base is not base or b.ctypes.data != at or b.strides != base.strides:
                break
            at += b.nbytes
        else:
            if at == base.ctypes.data + base.nbytes:
                return base
    return np.concatenate(batches).astype(np.int64, copy=False)


def batch_indices(
    n: int, batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Row indices per batch: a seeded permutation when ``rng`` is given, else in order."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def bucketed_batch_indices(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 50
) -> list[np.ndarray]:
    """Shuffled batches of rows with similar history lengths (less padding, same rows per epoch).

    The rows are permuted, cut into windows of ``window * batch_size`` rows, each window is sorted by
    length and cut into batches, and the batches are shuffled. Every row appears exactly once per
    epoch; which rows share a batch still changes from epoch to epoch and seed to seed.
    """
    order = rng.permutation(len(lengths))
    span = window * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def length_sorted_indices(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches for evaluation: rows sorted by history length (scores are written back by index)."""
    # a stable sort's order is unique; numpy sorts 16-bit keys by radix (4x faster than int32's merge
    # sort: 4 against 16 ms for 262,826 rows, a third of an amazon-beauty scoring pass on an H200)
    key = lengths.astype(np.uint16) if len(lengths) and 0 <= lengths.min() and lengths.max() < 1 << 16 else lengths
    order = np.argsort(key, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# ----------------------------------------------------------------------------- the numpy test oracle


class NumpyOracle:
    """The numpy gather of earlier versions, on the host: kept only as the oracle the device gather
    is tested against (tests/test_batches.py) and measured against (benchmarks/gather.py). Training,
    scoring and analyses never use it."""

    def __init__(self, prepared: Prepared) -> None:
        beh = prepared.behaviours
        self.item, self.category, self.time = (beh[c].to_numpy(np.int64) for c in ("item", "category", "time"))

    def batch(self, s: SampleSet, idx: np.ndarray) -> Batch:
        """The batch of samples ``idx`` of ``s`` (vectorised numpy, CPU tensors)."""
        lens = s.hist_len[idx]  # [B]
        width = max(int(lens.max()) if len(lens) else 1, 1)
        offs = np.arange(width)  # [L]
        mask = offs[None, :] < lens[:, None]  # [B, L]
        rows = np.where(mask, s.hist_start[idx][:, None] + offs[None, :], 0)  # [B, L]
        hist_item = np.where(mask, self.item[rows], 0)
        hist_cat = np.where(mask, self.category[rows], 0)
        age = np.where(mask, s.target_time[idx][:, None] - self.time[rows], 0)
        row, pos = np.nonzero(mask)  # [N], [N], row-major
        return Batch(
            item=torch.from_numpy(s.item[idx].astype(np.int64)),
            category=torch.from_numpy(s.category[idx].astype(np.int64)),
            mask=torch.from_numpy(mask),
            label=torch.from_numpy(s.label[idx]),
            row=torch.from_numpy(row.astype(np.int64)),
            pos=torch.from_numpy(pos.astype(np.int64)),
            packed_item=torch.from_numpy(hist_item[row, pos]),
            packed_category=torch.from_numpy(hist_cat[row, pos]),
            hist_item=torch.from_numpy(hist_item),
            hist_category=torch.from_numpy(hist_cat),
            age=torch.from_numpy(age.astype(np.float32)),
        )

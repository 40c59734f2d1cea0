"""Samples -> padded tensors, gathered from the ragged behaviour store.

Histories are never materialised as a dense [rows x max_len] matrix. A sample points at its
user's behaviours (``abs_end`` = row of the target in the behaviours table, history = the
``hist_len`` rows before it); a batch gathers exactly those rows with one vectorised index
computation and pads to the batch's own longest history.

Layout of a batch's history: oldest first, left-aligned, padding on the right (mask False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dinbench.prepared.contract import Prepared


@dataclass
class SampleSet:
    """One split's samples as flat arrays, with histories truncated to ``max_len``."""

    user: np.ndarray  # [N] int32
    item: np.ndarray  # [N] int32 candidate item
    category: np.ndarray  # [N] int32 candidate category
    label: np.ndarray  # [N] float32 0/1
    hist_start: np.ndarray  # [N] int64 first history row in the behaviours table
    hist_len: np.ndarray  # [N] int64 number of history rows (<= max_len)
    target_time: np.ndarray  # [N] int64 time of the target behaviour

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class Batch:
    """Tensors of one mini-batch. B = rows, L = longest history in the batch (>= 1)."""

    item: torch.Tensor  # [B] long
    category: torch.Tensor  # [B] long
    hist_item: torch.Tensor  # [B, L] long, 0 at padding
    hist_category: torch.Tensor  # [B, L] long, 0 at padding
    mask: torch.Tensor  # [B, L] bool, True at real positions
    age: torch.Tensor  # [B, L] float, target time - behaviour time (0 at padding)
    label: torch.Tensor  # [B] float
    row: torch.Tensor  # [N] long, batch row of each real history position (row-major, N = mask.sum())
    pos: torch.Tensor  # [N] long, its position in [0, L)

    def to(self, device: torch.device) -> "Batch":
        """The batch on ``device``. On CUDA the host tensors are pinned first, so the copies are
        asynchronous (``non_blocking``) and overlap with the GPU's work; elsewhere a plain ``to``."""
        device = torch.device(device)
        if device.type == "cpu":
            return self
        pin = device.type == "cuda"
        return Batch(*((t.pin_memory() if pin else t).to(device, non_blocking=pin) for t in self.__dict__.values()))


def round_width(width: int, max_len: int, smallest: int = 8) -> int:
    """A batch's history width rounded up to one of a few sizes (powers of two from ``smallest``, and
    ``max_len``), so that compiled code and CUDA graphs see a handful of shapes instead of one per
    longest history. Padding positions are masked, so only float rounding can change."""
    rounded = max(smallest, 1 << max(0, int(width) - 1).bit_length())
    return max(int(width), min(rounded, max_len))


def pad_width(batch: Batch, width: int) -> Batch:
    """``batch`` with its [B, L] tensors padded on the right to ``width`` positions (masked, zero);
    the real positions (``row``, ``pos``) are unchanged. The batch itself when already that wide."""
    extra = width - batch.mask.shape[1]
    if extra <= 0:
        return batch
    pad = torch.nn.functional.pad
    return Batch(item=batch.item, category=batch.category, hist_item=pad(batch.hist_item, (0, extra)),
                 hist_category=pad(batch.hist_category, (0, extra)), mask=pad(batch.mask, (0, extra)),
                 age=pad(batch.age, (0, extra)), label=batch.label, row=batch.row, pos=batch.pos)


def make_store(prepared: Prepared, device: torch.device | str = "cpu") -> "BehaviourStore":
    """The behaviour store that training, evaluation and the analyses draw their batches from.

    The one factory: a store that keeps the behaviours on ``device`` can replace today's numpy
    store here without its users changing. Today's store gathers on the CPU (numpy) and moves each
    batch to ``device`` in ``BehaviourStore.batch``.
    """
    return BehaviourStore(prepared, device)


class BehaviourStore:
    """The behaviours table as flat numpy columns, indexable by row; batches go to ``device``."""

    def __init__(self, prepared: Prepared, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        beh = prepared.behaviours
        self.item = beh["item"].to_numpy(np.int64)
        self.category = beh["category"].to_numpy(np.int64)
        self.time = beh["time"].to_numpy(np.int64)
        self.user_start = prepared.user_start

    def samples(self, frame: pd.DataFrame, max_len: int) -> SampleSet:
        user = frame["user"].to_numpy(np.int32)
        hist_end = frame["hist_end"].to_numpy(np.int64)
        abs_end = self.user_start[user] + hist_end  # row of the target behaviour
        hist_len = np.minimum(hist_end, max_len)
        return SampleSet(
            user=user,
            item=frame["item"].to_numpy(np.int32),
            category=frame["category"].to_numpy(np.int32),
            label=frame["label"].to_numpy(np.float32),
            hist_start=abs_end - hist_len,
            hist_len=hist_len,
            target_time=self.time[abs_end],
        )

    def batch(self, s: SampleSet, idx: np.ndarray) -> Batch:
        """The batch of rows ``idx`` of ``s`` on the store's device (what training and scoring use)."""
        return self.gather(s, idx).to(self.device)

    def gather(self, s: SampleSet, idx: np.ndarray) -> Batch:
        """Build the batch of rows ``idx`` of ``s`` (vectorised, no per-row Python)."""
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
            hist_item=torch.from_numpy(hist_item),
            hist_category=torch.from_numpy(hist_cat),
            mask=torch.from_numpy(mask),
            age=torch.from_numpy(age.astype(np.float32)),
            label=torch.from_numpy(s.label[idx]),
            row=torch.from_numpy(row.astype(np.int64)),
            pos=torch.from_numpy(pos.astype(np.int64)),
        )


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
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

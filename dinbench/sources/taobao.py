"""Taobao UserBehavior (Alibaba Tianchi): ``UserBehavior.csv``, no header,
``user_id,item_id,category_id,behavior_type,timestamp`` with behavior_type in pv/buy/cart/fav.

Its publisher requires a login, so there is no download: the user passes the file with ``--from``.

* Default (``positive="pv"``): the ``pv`` (page view) events form each user's behaviour sequence;
  targets and negatives follow the DIN protocol exactly as for Amazon.
* ``positive="buy"``: the sequence is the user's ``pv`` and ``buy`` events in time order and only the
  ``buy`` events are targets (last buy = test, second-to-last = valid, earlier buys = train; each with
  one uniform negative), so a purchase is predicted from everything viewed and bought before it.

The file (~100M rows, 3.5 GB) is read in chunks with 32-bit ids and only the kept event types are
retained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.prepared.builders import TargetProtocol

COLUMNS = ["user", "item", "category", "behavior", "time"]
BEHAVIOURS = ("pv", "buy", "cart", "fav")
CHUNK_ROWS = 5_000_000


def read(path: Path, keep: tuple[str, ...], progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    path = Path(path)
    parts, rows = [], 0
    try:
        # behaviour types as a categorical (one byte a row, not a Python string); ids parsed as int64 and
        # kept as int32 when they fit (they do in the real file): 21 bytes a kept row instead of 33
        reader = pd.read_csv(path, header=None, names=COLUMNS, chunksize=CHUNK_ROWS,
                             dtype={"user": "int64", "item": "int64", "category": "int64", "behavior": "category", "time": "int64"})
        for chunk in reader:
            unknown = ~chunk["behavior"].isin(BEHAVIOURS)
            if unknown.any():
                line = rows + int(np.flatnonzero(unknown.to_numpy())[0]) + 1
                raise DinbenchError(f"{path.name} line {line}: behavior_type {chunk['behavior'][unknown].iloc[0]!r} is not one of {', '.join(BEHAVIOURS)}")
            rows += len(chunk)
            chunk = chunk[chunk["behavior"].isin(keep)]
            parts.append({
                "user": _narrow(chunk["user"].to_numpy()), "item": _narrow(chunk["item"].to_numpy()),
                "category": _narrow(chunk["category"].to_numpy()), "time": chunk["time"].to_numpy(np.int64),
                "is_target": (chunk["behavior"] == keep[-1]).to_numpy(np.int8) if len(keep) > 1 else np.ones(len(chunk), np.int8),
            })
            del chunk
            if progress:
                progress(rows)
    except DinbenchError:
        raise
    except (OSError, ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DinbenchError(f"cannot parse {path}: {first}; expected user_id,item_id,category_id,behavior_type,timestamp without a header") from None
    if not parts or not sum(len(p["time"]) for p in parts):
        raise DinbenchError(f"{path} holds no {'/'.join(keep)} events")
    columns = {}
    for col in list(parts[0]):  # one column at a time, each chunk's copy freed as it is joined
        columns[col] = np.concatenate([p.pop(col) for p in parts])
    return pd.DataFrame(columns, copy=False)


def _narrow(ids: np.ndarray) -> np.ndarray:
    """int32 when every id fits (the same values either way), else the int64 as read."""
    if len(ids) and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
        return ids
    return ids.astype(np.int32)


def prepare(path: Path, name: str, data_dir: Path, source: dict[str, Any], positive: str = "pv", seed: int = 1234,
            progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    if positive not in ("pv", "buy"):
        raise DinbenchError(f"--positive must be pv or buy (got '{positive}')")
    keep = ("pv",) if positive == "pv" else ("pv", "buy")
    raw = read(path, keep, progress)
    # ties in time: views before buys of the same second, then file order
    raw = raw.sort_values(["user", "time", "is_target"], kind="stable", ignore_index=True)
    source = {**source, "positive": positive, "sequence": "+".join(keep)}
    if positive == "pv":
        raw = raw.drop(columns="is_target")
        return contract.prepare(raw, name, data_dir, source, seed=seed)
    return contract.prepare(raw, name, data_dir, source, builder=TargetProtocol(seed=seed, target="buy"))

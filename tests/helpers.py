"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def random_raw(n_users: int = 120, n_items: int = 250, seed: int = 0, min_len: int = 2, max_len: int = 15) -> pd.DataFrame:
    """Raw behaviours with string ids, shuffled rows, repeated items and time ties."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(min_len, max_len + 1))
        items = rng.integers(0, n_items, size=n)
        times = np.sort(rng.integers(0, 40, size=n)) + 1_600_000_000
        for i, t in zip(items, times):
            rows.append((f"u{u:04d}", f"i{i:04d}", f"c{i % 17}", int(t)))
    frame = pd.DataFrame(rows, columns=["user", "item", "category", "time"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def assert_user_error(result, *fragments: str) -> str:
    """A user error: exit status 2, one line on stderr starting with 'error:', no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.strip()
    assert err.startswith("error:"), err
    assert "\n" not in err, f"error is not one line: {err!r}"
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def padded_case(seed: int, batch: int, layout: str, dim: int, width: int = 9, short: int = 5):
    """Pooler inputs, the same histories twice: right-padded to ``short``, and laid out in ``width``
    positions (``layout`` right, left or interleaved) with garbage keys at the padded slots.
    Returns torch query, (keys5, mask5), (keys9, mask9), and numpy lens and real positions per row."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, short + 1, size=batch)
    lens[0] = short  # at least one full row, so the short batch really has width ``short``
    real = rng.normal(size=(batch, short, dim)).astype(np.float32)
    keys5 = np.zeros_like(real)
    mask5 = np.arange(short)[None, :] < lens[:, None]
    keys5[mask5] = real[mask5]
    keys9 = (rng.normal(size=(batch, width, dim)) * 50).astype(np.float32)  # garbage everywhere
    mask9 = np.zeros((batch, width), dtype=bool)
    positions = []
    for b, n in enumerate(lens):
        if layout == "right":
            pos = np.arange(n)
        elif layout == "left":
            pos = np.arange(width - n, width)
        else:  # interleaved: real positions scattered, order kept
            pos = np.sort(rng.choice(width, size=n, replace=False))
        keys9[b, pos] = real[b, :n]
        mask9[b, pos] = True
        positions.append(pos)
    query = rng.normal(size=(batch, dim)).astype(np.float32)
    t = torch.from_numpy
    return t(query), (t(keys5), t(mask5)), (t(keys9), t(mask9)), lens, positions


def takes_ids(pooler) -> bool:
    """Whether ``pooler``'s padded forward takes the ids behind the keys (``categories=``, ...): packing poolers."""
    import inspect

    params = inspect.signature(pooler.forward).parameters
    return "categories" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def key_categories(query: torch.Tensor, keys: torch.Tensor) -> dict[str, torch.Tensor]:
    """Category ids that travel with the embeddings, for the registry-wide property tests: 1 + (first
    coordinate > 0), of each key [B, L] and of the candidate [B]. Padding moves a key with its id and a
    permutation moves both, as the model's ids do (its keys embed their category)."""
    return {"categories": 1 + (keys[..., 0] > 0).long(), "query_categories": 1 + (query[..., 0] > 0).long()}


def with_ids(pooler):
    """``pooler``, whose padded calls ``pooler(query, keys, mask, age)`` now also pass ``key_categories``
    where it takes ids (sim:hard selects by category) and the caller gave none. Returns the same module."""
    if takes_ids(pooler):
        def add_ids(module, args, kwargs):
            if "categories" not in kwargs:
                kwargs = {**kwargs, **key_categories(args[0], args[1])}  # args: query, keys, mask[, age]
            return args, kwargs

        pooler.register_forward_pre_hook(add_ids, with_kwargs=True)
    return pooler

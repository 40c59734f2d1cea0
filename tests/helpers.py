"""Plain helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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

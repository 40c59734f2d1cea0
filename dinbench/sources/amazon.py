"""Amazon product data 2014 (McAuley et al.), 5-core reviews + meta, prepared as the DIN paper did.

* Reviews (``reviews_<Category>_5.json.gz``): strict JSON Lines. Streamed line by line; only
  ``reviewerID``, ``asin`` and ``unixReviewTime`` are kept, as int codes in compact arrays (a
  review's text is never held), so memory grows with the number of reviews x 16 bytes plus the
  distinct ids, not with the file.
* Meta (``meta_<Category>.json.gz``): one **Python dict literal** per line (single quotes), not
  JSON. Each line that is used is parsed with ``ast.literal_eval``, which accepts literals only:
  a line such as ``{'asin': __import__('os').system('...')}`` is rejected as malformed, never run.
  Nothing is ``eval``-ed or unpickled. The meta file lists ~8x more items than the 5-core reviews
  (498,196 lines for Electronics); a line whose one ``'asin': '...'`` key names an item without a
  5-core review is skipped *without being parsed* (it is not needed, and parsing it would cost
  ~90 s for Electronics). Every line for a reviewed item, and every line where that key cannot
  be found unambiguously, is parsed and checked.
* Category of an item = the last entry of its last category path (``categories[-1][-1]``), as the
  paper; reviewed items without a meta line (or without categories) get the explicit category
  ``(unknown)``, and the manifest counts them.
* Each user's reviews are ordered by ``unixReviewTime``; ties keep the order of the file (stable
  sort). Then the DIN protocol (one uniform negative per positive, never one of the user's items).
* A malformed line is an error naming the file and the line, unless ``skip_bad_lines``, which
  skips and counts them (the counts go to the manifest and are printed).
"""

from __future__ import annotations

import ast
import json
import re
from array import array
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.sources.archive import BadLines, numbered_lines

ASIN_KEY = re.compile(r"""['"]asin['"]\s*:\s*['"]([^'"\\]*)['"]""")
Progress = Callable[[int], None]  # called with the number of lines read so far


def reviews_name(category: str) -> str:
    return f"reviews_{category}_5.json.gz"


def meta_name(category: str) -> str:
    return f"meta_{category}.json.gz"


class Reviews:
    """The kept columns of a reviews file: codes into ``users`` / ``items`` and Unix times."""

    def __init__(self) -> None:
        self.user_code: dict[str, int] = {}
        self.item_code: dict[str, int] = {}
        self.user = array("i")
        self.item = array("i")
        self.time = array("q")

    def __len__(self) -> int:
        return len(self.user)


def read_reviews(path: Path, skip_bad_lines: bool = False, progress: Progress | None = None) -> tuple[Reviews, BadLines]:
    path = Path(path)
    bad = BadLines(path, skip_bad_lines)
    out = Reviews()
    users, items = out.user_code, out.item_code
    for number, line in numbered_lines(path):
        if progress is not None and number % 100_000 == 0:
            progress(number)
        if not line.strip():
            continue
        try:
            review = json.loads(line)
        except ValueError as exc:
            bad(number, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(review, dict):
            bad(number, "not a JSON object")
            continue
        user, item, when = review.get("reviewerID"), review.get("asin"), review.get("unixReviewTime")
        if not isinstance(user, str) or not isinstance(item, str) or not user or not item:
            bad(number, "reviewerID and asin must be non-empty strings")
            continue
        if not isinstance(when, int) or isinstance(when, bool):
            bad(number, "unixReviewTime must be an integer")
            continue
        out.user.append(users.setdefault(user, len(users)))
        out.item.append(items.setdefault(item, len(items)))
        out.time.append(when)
    if not len(out):
        raise DinbenchError(f"{path} holds no reviews")
    return out, bad


def category_of(meta: Any) -> str | None:
    """``categories[-1][-1]``, or None when the item has no usable category path."""
    cats = meta.get("categories")
    if not isinstance(cats, list) or not cats:
        return None
    last = cats[-1]
    if not isinstance(last, (list, tuple)) or not last or not isinstance(last[-1], str) or not last[-1].strip():
        return None
    return last[-1]


def read_meta(
    path: Path, wanted: dict[str, int], skip_bad_lines: bool = False, progress: Progress | None = None
) -> tuple[list[str | None], dict[str, int], BadLines]:
    """Category per item code of ``wanted`` (None where the meta has none), line counts, bad lines."""
    path = Path(path)
    bad = BadLines(path, skip_bad_lines)
    category: list[str | None] = [None] * len(wanted)
    seen = np.zeros(len(wanted), dtype=bool)
    lines = parsed = skipped = 0
    for number, line in numbered_lines(path):
        if progress is not None and number % 100_000 == 0:
            progress(number)
        if not line.strip():
            continue
        lines += 1
        keys = ASIN_KEY.findall(line)
        if len(keys) == 1 and keys[0] not in wanted:
            skipped += 1
            continue
        parsed += 1
        try:
            meta = ast.literal_eval(line)  # literals only: calls, names and attributes are refused
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            bad(number, f"not a Python dict literal ({exc.__class__.__name__}: {str(exc).splitlines()[0][:80] if str(exc) else 'malformed'})")
            continue
        if not isinstance(meta, dict) or not isinstance(meta.get("asin"), str):
            bad(number, "not a dict with a string 'asin'")
            continue
        code = wanted.get(meta["asin"])
        if code is None:
            continue
        if "categories" in meta and not isinstance(meta["categories"], list):
            bad(number, "'categories' is not a list of category paths")
            continue
        seen[code] = True
        category[code] = category_of(meta)
    return category, {"meta_lines": lines, "meta_lines_parsed": parsed, "meta_lines_skipped_unreviewed": skipped,
                      "reviewed_items_without_meta": int((~seen).sum())}, bad


def behaviours(
    reviews_path: Path, meta_path: Path, skip_bad_lines: bool = False, progress: Callable[[str, int], None] | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw behaviours (user, item, category, time) in file order, and what was read."""
    rev, bad_reviews = read_reviews(reviews_path, skip_bad_lines, (lambda n: progress("reviews", n)) if progress else None)
    category, meta_counts, bad_meta = read_meta(
        meta_path, rev.item_code, skip_bad_lines, (lambda n: progress("meta", n)) if progress else None
    )
    item_names = np.empty(len(rev.item_code), dtype=object)
    item_names[list(rev.item_code.values())] = list(rev.item_code.keys())
    user_names = np.empty(len(rev.user_code), dtype=object)
    user_names[list(rev.user_code.values())] = list(rev.user_code.keys())
    cats = np.array([c if c is not None else contract.UNKNOWN_CATEGORY for c in category], dtype=object)
    user = np.frombuffer(rev.user, dtype=np.int32)
    item = np.frombuffer(rev.item, dtype=np.int32)
    # object columns share the distinct id strings (8 bytes per row), they do not copy them
    raw = pd.DataFrame({"user": user_names[user], "item": item_names[item], "category": cats[item],
                        "time": np.frombuffer(rev.time, dtype=np.int64)})
    info = {
        "reviews": len(rev),
        **meta_counts,
        "items_unknown_category": int(sum(c is None for c in category)),
        "bad_lines": [b.report() for b in (bad_reviews, bad_meta) if b.count],
    }
    return raw, info


def prepare(
    folder_or_files: tuple[Path, Path],
    name: str,
    data_dir: Path,
    source: dict[str, Any],
    seed: int = 1234,
    skip_bad_lines: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Any]:
    reviews_path, meta_path = folder_or_files
    raw, info = behaviours(reviews_path, meta_path, skip_bad_lines, progress)
    source = {**source, "category_rule": "categories[-1][-1] of the meta line; (unknown) without one",
              "order": "unixReviewTime, ties in file order", "read": info}
    return contract.prepare(raw, name, data_dir, source, seed=seed)

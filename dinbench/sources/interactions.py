"""``dinbench import``: the user's own interactions file (CSV or Parquet) with a column mapping.

The file needs a user, an item and a time column; a category column is optional (without one every
item gets the category "(unknown)"). Time may be Unix seconds, any numeric order key (e.g. the
position in the user's sequence), or dates. The amazon-beauty file in ../shared/data is exactly
this shape: ``user_id,item_id,cate_id,timestamp`` with timestamp an order key.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from dinbench.errors import DinbenchError

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_interactions(
    path: Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    category_col: str | None = "cate_id",
    time_col: str = "timestamp",
    separator: str | None = None,
) -> pd.DataFrame:
    """Read ``path`` and return DataFrame[user, item, time (, category)] with the raw values."""
    path = Path(path)
    if not path.is_file():
        raise DinbenchError(f"no such file: {path}")
    name = path.name.lower()
    wanted = [c for c in (user_col, item_col, category_col, time_col) if c]
    try:
        if name.endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        elif name.endswith(CSV_SUFFIXES):
            sep = separator or ("\t" if ".tsv" in name else ",")
            frame = pd.read_csv(path, sep=sep, low_memory=False)
        else:
            raise DinbenchError(
                f"cannot tell the format of {path.name}: use a .csv, .tsv (optionally .gz) or .parquet file"
            )
    except DinbenchError:
        raise
    except (OSError, ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise DinbenchError(f"cannot read {path}: {first}") from None
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DinbenchError(
            f"{path.name} has no column(s) {', '.join(missing)}; its columns are "
            f"{', '.join(' '.join(str(c).split()) for c in frame.columns)} (map them with --user-col/--item-col/--category-col/--time-col)"
        )
    if frame.empty:
        raise DinbenchError(f"{path.name} has no rows")
    out = pd.DataFrame({"user": frame[user_col], "item": frame[item_col], "time": frame[time_col]})
    if category_col:
        out["category"] = frame[category_col]
    return clean(out, path.name)


def clean(frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """Drop empty rows (every mapped column blank) and exact duplicate rows; count both.

    The counts land in ``frame.attrs["read"]`` (``empty_rows``, ``duplicate_rows``, ``rows``) for
    the console and the manifest. Rows with a blank time among filled ids are refused with their count.
    """
    empty = frame.isna().all(axis=1)
    kept = frame[~empty]
    blank_time = kept["time"].isna() & ~(kept["user"].isna() | kept["item"].isna())
    if blank_time.any():
        first = int(blank_time.to_numpy().nonzero()[0][0])
        raise DinbenchError(
            f"{label}: {int(blank_time.sum()):,} of {len(kept):,} rows have an empty time (first: data row "
            f"{int(kept.index[first]) + 1}); fill or drop them first"
        )
    duplicate = kept.duplicated()
    out = kept[~duplicate].reset_index(drop=True)
    if out.empty:
        raise DinbenchError(f"{label} has no rows with data ({int(empty.sum()):,} empty rows)")
    out.attrs["read"] = {"rows": len(frame), "empty_rows": int(empty.sum()), "duplicate_rows": int(duplicate.sum())}
    return out


COLUMN_OPTIONS = {"user": ("--user-col", "user_id"), "item": ("--item-col", "item_id"),
                  "category": ("--category-col", "cate_id"), "time": ("--time-col", "timestamp")}


def source_info(path: Path, name: str, columns: dict[str, str | None], read: dict) -> dict:
    """The manifest's ``source`` of an imported file, with the `dinbench import` command that redoes it."""
    import shlex

    file = str(Path(path).resolve())
    parts = [f"dinbench import {shlex.quote(file)} --name {name} --force"]
    for key, (option, default) in COLUMN_OPTIONS.items():
        value = columns.get(key) or ""
        if value != default:
            parts.append(f"{option} {shlex.quote(value)}")
    return {"kind": "import", "file": file, "columns": columns, "read": read, "rebuild": " ".join(parts)}


def import_file(path: Path, name: str, root: Path, columns: dict[str, str | None], sep: str | None = None, *,
                min_behaviours: int = 4, seed: int = 1234, force: bool = False,
                say: Callable[[str], None] = print, busy: Callable[[str], Any] = nullcontext) -> dict:
    """`dinbench import`: read ``path`` with the ``columns`` mapping and prepare it as dataset ``name``
    under ``root``, saying what was read, dropped and written. Returns the manifest."""
    from dinbench.prepared import contract
    from dinbench.sources.local import EMBEDDED, prepared_lines

    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise DinbenchError(f"invalid dataset name '{name}': use letters, digits, '-' or '_'")
    if name in EMBEDDED:
        raise DinbenchError(f"'{name}' is reserved for the embedded dataset; choose another --name")
    if contract.is_prepared(root, name) and not force:
        raise DinbenchError(f"dataset '{name}' already exists in {root}; add --force to overwrite it")
    with busy(f"reading {path}"):
        raw = read_interactions(path, columns["user"], columns["item"], columns["category"], columns["time"], sep)
    read = dict(raw.attrs.get("read", {}))
    say(f"read {read.get('rows', len(raw)):,} rows from {path}")
    if read.get("empty_rows") or read.get("duplicate_rows"):
        say(f"dropped {read['empty_rows']:,} empty row(s) and {read['duplicate_rows']:,} exact duplicate row(s)")
    with busy("preparing samples"):
        manifest = contract.prepare(raw, name, root, source_info(path, name, columns, read), seed=seed,
                                    min_behaviours=min_behaviours)
    for line in prepared_lines(manifest, contract.dataset_path(root, name)):
        say(line)
    if manifest["time_unit"] == "order":
        say("time column read as an order key (not Unix seconds): ages are positions")
    return manifest

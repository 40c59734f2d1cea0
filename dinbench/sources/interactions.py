"""``dinbench import``: the user's own interactions file (CSV or Parquet) with a column mapping.

The file needs a user, an item and a time column; a category column is optional (without one every
item gets the category "(unknown)"). Time may be Unix seconds, any numeric order key (e.g. the
position in the user's sequence), or dates. The amazon-beauty file in ../shared/data is exactly
this shape: ``user_id,item_id,cate_id,timestamp`` with timestamp an order key.
"""

from __future__ import annotations

import gzip
import re
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from dinbench.errors import DinbenchError, Interrupted

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES


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
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(SUFFIXES))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise DinbenchError(f"{path} is a folder, not a file; pass the interactions file inside it{hint}: "
                            "a .csv, .tsv (optionally .gz) or .parquet file")
    if not path.is_file():
        raise DinbenchError(f"no such file: {path}")
    name = path.name.lower()
    wanted = [c for c in (user_col, item_col, category_col, time_col) if c]
    try:
        if name.endswith(PARQUET_SUFFIXES):
            frame = pd.read_parquet(path)
        elif name.endswith(CSV_SUFFIXES):
            frame = pd.read_csv(path, **csv_options(separator, name))
        else:
            raise DinbenchError(
                f"cannot tell the format of {path.name}: use a .csv, .tsv (optionally .gz) or .parquet file"
            )
    except DinbenchError:
        raise
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:  # pandas lets a truncated .gz end in EOFError
        raise DinbenchError(f"cannot read {path}: the file is truncated or corrupt ({_first_line(exc)}); "
                            "get a complete copy and import it again") from None
    except (OSError, ValueError, TypeError, OverflowError, pd.errors.ParserError) as exc:
        raise DinbenchError(f"cannot read {path}: {_first_line(exc)}") from None
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DinbenchError(
            f"{path.name} has no column(s) {', '.join(missing)}; its columns are "
            f"{', '.join(' '.join(str(c).split()) for c in frame.columns)} (map them with --user-col/--item-col/--category-col/--time-col"
            + (", or give the separator with --sep: the file read as one column)" if len(frame.columns) == 1 else ")")
        )
    if frame.empty:
        raise DinbenchError(f"{path.name} has no rows")
    out = pd.DataFrame({"user": frame[user_col], "item": frame[item_col], "time": frame[time_col]})
    if category_col:
        out["category"] = frame[category_col]
    return clean(out, path.name)


def csv_options(separator: str | None, name: str) -> dict[str, Any]:
    """``pd.read_csv`` options for ``--sep``: one character (or ``\\t`` for a tab) with the fast C
    parser; a longer separator is taken literally (not as a regular expression) with pandas' Python
    parser, named explicitly so pandas does not warn that it falls back to it."""
    sep = separator or ("\t" if ".tsv" in name else ",")
    if sep == "\\t":
        sep = "\t"
    if len(sep) == 1:
        return {"sep": sep, "low_memory": False}
    return {"sep": re.escape(sep), "engine": "python"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


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

    if not contract.valid_name(name):
        raise DinbenchError(f"invalid dataset name '{name}': {contract.NAME_RULE}; choose another --name")
    if name in EMBEDDED:
        raise DinbenchError(f"'{name}' is reserved for the embedded dataset; choose another --name")
    existed = contract.is_prepared(root, name)
    before = contract.manifest_stamp(root, name)
    if existed and not force:
        raise DinbenchError(f"dataset '{name}' already exists in {root}; add --force to overwrite it")
    where = contract.dataset_path(root, name)
    manifest = None
    try:
        with busy(f"reading {path}"):
            raw = read_interactions(path, columns["user"], columns["item"], columns["category"], columns["time"], sep)
        read = dict(raw.attrs.get("read", {}))
        say(f"read {read.get('rows', len(raw)):,} rows from {path}")
        if read.get("empty_rows") or read.get("duplicate_rows"):
            say(f"dropped {read['empty_rows']:,} empty row(s) and {read['duplicate_rows']:,} exact duplicate row(s)")
        with busy("preparing samples"):
            manifest = contract.prepare(raw, name, root, source_info(path, name, columns, read), seed=seed,
                                        min_behaviours=min_behaviours)
        for line in prepared_lines(manifest, where):
            say(line)
        if manifest["time_unit"] == "order":
            say("time column read as an order key (not Unix seconds): ages are positions")
    except KeyboardInterrupt:
        if manifest is not None or contract.manifest_stamp(root, name) not in (before, None):
            # the new dataset's folder had been renamed into place: it is whole
            raise Interrupted(f"import interrupted after dataset '{name}' was written, complete, to {where}; "
                              f"it is ready to use (dinbench run --dataset {name})") from None
        kept = f"the existing dataset '{name}' in {where} is unchanged" if existed else f"no dataset '{name}' was made"
        raise Interrupted(f"import interrupted: nothing was written ({kept}); run the same command again "
                          "to import") from None
    return manifest

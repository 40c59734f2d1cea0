"""The prepared-data contract: one module owns what a prepared dataset is on disk.

``datasets/<name>/`` holds

    manifest.json        counts, protocol parameters, source, content fingerprint (written last)
    behaviours.parquet   user, item, category, time  -- sorted by user then time (stable)
    items.parquet        item, category, raw_item [, extra item attributes, e.g. synthetic topic]
    users.parquet        user, raw_user
    train/valid/test.parquet
                         user, hist_end, item, category, label -- a sample references its history
                         as the user's first ``hist_end`` behaviours; nothing is padded on disk

Ids are remapped to 1..N per kind (users, items, categories) with 0 reserved for padding.
A dataset counts as prepared only when ``manifest.json`` exists and the tables match its
fingerprint: preparation writes every table and the manifest (last) into a hidden temporary
folder beside the dataset's and renames it into place at the end, so a crash, an interrupt or a
full disk never leaves a half-written dataset (an older one of that name stays until then).

Dataset names are folder names: ``valid_name`` is the one rule (``NAME_RULE``: letters, digits,
``_``, ``-``, ``.``; no leading ``.`` or ``-``), applied by import and by every command that loads one.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dinbench import paths
from dinbench.atomic import _umask, write_atomic, write_json_atomic
from dinbench.errors import DinbenchError
from dinbench.prepared.builders import DinProtocol, SampleBuilder, SortedBehaviours
from dinbench.prepared.protocol import SPLITS, user_offsets

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES = ("behaviours", "items", "users", *SPLITS)
UNKNOWN_CATEGORY = "(unknown)"


@dataclass
class Prepared:
    """A loaded prepared dataset. Arrays are numpy; tables keep their on-disk columns."""

    name: str
    path: Path
    manifest: dict[str, Any]
    behaviours: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    user_start: np.ndarray = field(init=False)  # [n_users + 2] row offsets into behaviours

    def __post_init__(self) -> None:
        self.user_start = user_offsets(self.behaviours["user"].to_numpy(), self.n_users)

    @property
    def n_users(self) -> int:
        return int(self.manifest["counts"]["users"])

    @property
    def n_items(self) -> int:
        return int(self.manifest["counts"]["items"])

    @property
    def n_categories(self) -> int:
        return int(self.manifest["counts"]["categories"])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def time_unit(self) -> str:
        return str(self.manifest.get("time_unit", "order"))


NAME_RULE = ("a dataset name is letters, digits, '_', '-' and '.', starting with a letter, digit or '_' "
             "(at most 120 characters)")
_NAME = re.compile(r"\w[\w.-]*\Z")


def valid_name(name: str) -> bool:
    """Whether ``name`` may name a dataset (a folder under the data dir): see NAME_RULE."""
    return bool(name) and _NAME.match(name) is not None and len(name) <= 120


def dataset_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / name


def is_prepared(data_dir: Path, name: str) -> bool:
    return (dataset_path(data_dir, name) / MANIFEST).is_file()


def manifest_stamp(data_dir: Path, name: str) -> tuple[int, int] | None:
    """Which manifest is in place (inode, mtime; None when none): compared before and after an
    interrupted preparation, it tells whether a new dataset was renamed into place."""
    try:
        st = (dataset_path(data_dir, name) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def read_manifest(data_dir: Path, name: str) -> dict[str, Any]:
    path = dataset_path(data_dir, name) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DinbenchError(f"cannot read {path}: {exc}; rebuild the dataset") from None


def fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """sha256 over every numeric column of every table (names, dtypes and bytes), in a fixed order."""
    h = hashlib.sha256()
    for name in TABLES:
        frame = tables[name]
        for col in frame.columns:
            values = frame[col].to_numpy()
            if values.dtype.kind not in "biuf":
                continue
            h.update(f"{name}.{col}:{values.dtype.str}:{len(values)};".encode())
            h.update(memoryview(np.ascontiguousarray(values)).cast("B"))  # the bytes, without a copy
    return h.hexdigest()


def _numeric_time(time: pd.Series) -> tuple[np.ndarray, str]:
    """Times as int64, and whether they are Unix seconds or only an order key."""
    if pd.api.types.is_numeric_dtype(time):
        if time.isna().any():
            raise DinbenchError("the time column has empty values; fill or drop them first")
        values = time.to_numpy()
        if values.dtype.kind == "f":
            values = np.round(values)
        values = values.astype(np.int64)
        # Anything after 1990-01-01 in seconds reads as a Unix timestamp; small values are positions.
        unit = "seconds" if len(values) and values.min() >= 631_152_000 else "order"
        return values, unit
    numbers = pd.to_numeric(time, errors="coerce")
    if numbers.notna().any():  # mostly numbers: the rest are the bad values, not every row
        bad = time[numbers.isna()]
        if bad.empty:
            return _numeric_time(numbers)
        raise DinbenchError(
            f"the time column holds {len(bad):,} of {len(time):,} values that are neither numbers nor dates "
            f"(first: {bad.iloc[0]!r}); give Unix seconds, an order key, or ISO dates"
        )
    parsed = pd.to_datetime(time, errors="coerce", utc=True, format="ISO8601")
    if parsed.isna().any():
        bad = time[parsed.isna()].iloc[0]
        raise DinbenchError(
            f"the time column holds {int(parsed.isna().sum())} values that are neither numbers nor dates "
            f"(first: {bad!r}); give Unix seconds, an order key, or ISO dates"
        )
    return parsed.dt.as_unit("s").astype("int64").to_numpy(), "seconds"


def prepare(
    raw: pd.DataFrame,
    name: str,
    data_dir: Path,
    source: dict[str, Any],
    item_attributes: pd.DataFrame | None = None,
    seed: int = 1234,
    min_behaviours: int = 4,
    builder: SampleBuilder | None = None,
    behaviour_columns: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Turn raw behaviours into a prepared dataset under ``data_dir/name`` and return its manifest.

    Args:
        raw: one row per behaviour with columns ``user``, ``item``, ``time`` and optionally
            ``category`` (raw ids of any type; time as numbers or dates).
        item_attributes: optional extra per-item columns keyed by raw ``item`` (kept in items.parquet,
            e.g. the synthetic generator's ground-truth topic).
        seed: seed of negative sampling (the paper's code uses 1234).
        min_behaviours: users with fewer behaviours are dropped and counted (at least 4: one train,
            one valid and one test target need a history before them).
        builder: how samples are made from the sorted behaviours (default: the DIN protocol with
            ``seed`` and ``min_behaviours``; a builder brings its own, see ``builders.py``).
        behaviour_columns: extra numeric raw columns kept in behaviours.parquet (e.g. MovieLens ``rating``).
    """
    if builder is None:
        builder = DinProtocol(seed=seed, min_behaviours=min_behaviours)
    frame, category_names, time_unit, kept = _clean(raw, builder, behaviour_columns)
    del raw  # the caller may still hold it; nothing below needs it
    user_codes, user_raw = pd.factorize(frame["user"], sort=True)
    users = (user_codes + 1).astype(np.int32)
    del user_codes
    item_codes, item_raw = pd.factorize(frame["item"], sort=True)
    items = (item_codes + 1).astype(np.int32)
    del item_codes
    item_category, cat_raw, category_conflicts = _item_categories(items, frame, category_names, len(item_raw))
    tables = _id_tables(frame, users, items, item_category, user_raw, item_raw, item_attributes, behaviour_columns)
    extra = {c: frame[c].to_numpy() for c in builder.extra_columns}
    del frame  # the samples need only the remapped ids (and the builder's columns)
    splits = builder.build(
        SortedBehaviours(
            users=users, items=items, item_category=item_category, n_users=len(user_raw), n_items=len(item_raw),
            extra=extra,
        )
    )
    tables.update(splits)
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "time_unit": time_unit,
        "protocol": builder.describe(),
        "counts": _counts(kept, tables, builder, len(user_raw), len(item_raw), len(cat_raw), category_conflicts),
        "categories": [str(c) for c in cat_raw],
        "fingerprint": fingerprint(tables),
    }
    _write(dataset_path(data_dir, name), tables, manifest)
    return manifest


def _counts(kept: dict[str, int], tables: dict[str, pd.DataFrame], builder: SampleBuilder, n_users: int,
            n_items: int, n_categories: int, category_conflicts: int) -> dict[str, int]:
    """The manifest's counts: what was read, kept and dropped, and the samples per split."""
    splits = {s: tables[s] for s in SPLITS}
    return {
        "input_rows": kept["input_rows"],
        "rows_missing_ids": kept["rows_missing_ids"],
        "behaviours": len(tables["behaviours"]),
        "users": n_users,
        "items": n_items,
        "categories": n_categories,
        "dropped_users": kept["dropped_users"],
        "dropped_behaviours": kept["dropped_behaviours"],
        "category_conflicts": category_conflicts,
        **{f"{s}_samples": len(splits[s]) for s in SPLITS},
        **builder.counts(splits),
    }


def _clean(raw: pd.DataFrame, builder: SampleBuilder, behaviour_columns: tuple[str, ...]):
    """The behaviours to prepare: ids present, times numeric, categories filled, sorted by user then time
    (stable), users with fewer than the protocol's minimum dropped. Returns (frame, category names,
    time unit, counts); the frame's ``category`` holds int32 codes into the names (see ``_category_codes``)."""
    min_behaviours = builder.min_behaviours
    missing = [c for c in ("user", "item", "time", *builder.extra_columns, *behaviour_columns) if c not in raw.columns]
    if missing:
        raise DinbenchError(f"behaviours lack the column(s) {', '.join(missing)}")
    carried = tuple(dict.fromkeys((*builder.extra_columns, *behaviour_columns)))
    frame = raw[[c for c in ("user", "item", "category", "time", *carried) if c in raw.columns]]  # copy-on-write: no copy yet
    key_na = frame["user"].isna() | frame["item"].isna()
    counts = {"input_rows": len(raw), "rows_missing_ids": int(key_na.sum())}
    if counts["rows_missing_ids"]:
        frame = frame[~key_na]
    del key_na
    times, time_unit = _numeric_time(frame["time"])
    frame = frame.assign(time=times)
    del times
    if "category" in frame.columns:
        codes, names = _category_codes(frame["category"])
        frame = frame.assign(category=codes)
        del codes
    else:
        frame = frame.assign(category=np.zeros(len(frame), dtype=np.int32))
        names = np.array([UNKNOWN_CATEGORY], dtype=object)

    # Stable sort: ties in time keep the order of the input file.
    frame = frame.sort_values(["user", "time"], kind="stable")
    sizes = frame.groupby("user", sort=False)["item"].transform("size")
    keep = sizes >= min_behaviours
    del sizes
    counts["dropped_users"] = int(frame.loc[~keep, "user"].nunique())
    counts["dropped_behaviours"] = int((~keep).sum())
    if counts["dropped_behaviours"]:
        frame = frame[keep]
    if frame.empty:
        raise DinbenchError(
            f"no user has at least {min_behaviours} behaviours ({counts['dropped_users']} users, all too short); "
            f"the {builder.describe()['name']} protocol needs a history before each train, valid and test target"
        )
    return frame, names, time_unit, counts


def _category_codes(category: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Categories as int32 codes into their names (as text, missing ones ``(unknown)``), the names in
    sorted text order: the same order and names as ``category.astype("string").fillna(UNKNOWN_CATEGORY)``
    sorted, at 4 bytes a row instead of a Python string per row (Taobao's 100 M numeric categories
    would need ~6 GB as strings). Only the distinct values are turned into text."""
    codes, uniques = pd.factorize(category, use_na_sentinel=True)  # missing -> -1
    text = pd.Series(uniques).astype("string").fillna(UNKNOWN_CATEGORY).to_numpy(dtype=object)
    if (codes < 0).any():
        text = np.append(text, UNKNOWN_CATEGORY)
        codes = np.where(codes < 0, len(text) - 1, codes)
    names, position = np.unique(text, return_inverse=True)  # sorted; distinct values may share a text ('1' and 1)
    return position.astype(np.int32)[codes], names


def _item_categories(items: np.ndarray, frame: pd.DataFrame, names: np.ndarray, n_items: int):
    """An item's category is the one on its first behaviour (in time order); conflicts are counted.
    ``frame.category`` holds codes into the sorted ``names``. Returns (category id per item id
    [n_items + 1], raw category names, conflicts)."""
    first = pd.DataFrame(
        {"item": items, "category": frame["category"].to_numpy(), "time": frame["time"].to_numpy()}
    ).sort_values("time", kind="stable")  # earliest first (ties: user order)
    per_item = first.groupby("item", sort=True)["category"]
    item_cat_code = per_item.first()
    category_conflicts = int((per_item.nunique() > 1).sum())
    del first, per_item
    cat_codes, used = pd.factorize(item_cat_code, sort=True)  # codes follow the names' order
    cat_raw = pd.Index(names[used], dtype="string")
    item_category = np.zeros(n_items + 1, dtype=np.int32)
    item_category[item_cat_code.index.to_numpy()] = cat_codes + 1
    return item_category, cat_raw, category_conflicts


def _id_tables(frame, users, items, item_category, user_raw, item_raw, item_attributes, behaviour_columns):
    """The behaviours, items and users tables in remapped ids (0 = padding)."""
    behaviours = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "category": item_category[items],
            "time": frame["time"].to_numpy(np.int64),
        }
    )
    for col in behaviour_columns:
        behaviours[col] = frame[col].to_numpy()
    items_table = pd.DataFrame(
        {
            "item": np.arange(1, len(item_raw) + 1, dtype=np.int32),
            "category": item_category[1:],
            "raw_item": pd.Index(item_raw).astype(str),
        }
    )
    if item_attributes is not None:
        attrs = item_attributes.set_index("item")
        for col in attrs.columns:
            items_table[col] = attrs[col].reindex(pd.Index(item_raw)).to_numpy()
    users_table = pd.DataFrame(
        {"user": np.arange(1, len(user_raw) + 1, dtype=np.int32), "raw_user": pd.Index(user_raw).astype(str)}
    )
    return {"behaviours": behaviours, "items": items_table, "users": users_table}


def _write(path: Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> None:
    """Write the dataset into a hidden temporary folder beside ``path`` and rename it to ``path`` at
    the end, replacing an older dataset of that name only then: an interrupt or a full disk leaves
    the old dataset (or none) and no half-written folder. A disk error is one line saying so."""
    existed = is_prepared(path.parent, path.name)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
        for name, frame in tables.items():
            write_atomic(tmp / f"{name}.parquet", lambda t, f=frame: f.to_parquet(t, index=False))
        write_json_atomic(tmp / MANIFEST, manifest)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder a normal folder's mode
        _swap_in(tmp, path)
    except OSError as exc:
        line = paths.os_error_line(exc, {paths.DATA_OPTION: path.parent})
        if line is None:
            raise
        kept = f"the existing dataset '{path.name}' is unchanged" if existed else f"no dataset '{path.name}' was made"
        raise DinbenchError(f"{line}; nothing was written ({kept})") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, path: Path) -> None:
    """Rename the complete folder ``new`` to ``path``; an older ``path`` is moved aside first and
    deleted after (put back if the rename fails)."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    if not path.is_dir():
        raise DinbenchError(f"{path} is a file where the dataset's folder belongs; move it away and prepare again")
    old = Path(tempfile.mkdtemp(prefix=f".old-{path.name}.", dir=path.parent))
    os.rmdir(old)
    os.rename(path, old)
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def rebuild_command(data_dir: Path, name: str, manifest: dict[str, Any]) -> str:
    """The exact command that prepares dataset ``name`` again: the one its source wrote into the
    manifest (``source.rebuild``), for the folder it is in. Manifests from before that field say
    ``dinbench download NAME --force``."""
    source = manifest.get("source", {}) if isinstance(manifest, dict) else {}
    command = source.get("rebuild") if isinstance(source, dict) else None
    parts = [str(command) if command else f"dinbench download {name} --force"]
    if Path(data_dir) != paths.data_dir():
        parts.append(f"--data-dir {shlex.quote(str(data_dir))}")
    return " ".join(parts)


def load(data_dir: Path, name: str, verify: bool = True) -> Prepared:
    """Load a prepared dataset; refuse one that is missing, from another format, or altered."""
    path = dataset_path(data_dir, name)
    if not (path / MANIFEST).is_file():
        raise DinbenchError(f"dataset '{name}' is not prepared in {path}")
    manifest = read_manifest(data_dir, name)
    if manifest.get("format") != FORMAT_VERSION:
        raise DinbenchError(
            f"dataset '{name}' was prepared by another dinbench format ({manifest.get('format')}); "
            f"rebuild it with: {rebuild_command(data_dir, name, manifest)}"
        )
    try:
        tables = {t: pd.read_parquet(path / f"{t}.parquet") for t in TABLES}
    except (OSError, ValueError) as exc:
        raise DinbenchError(
            f"dataset '{name}' in {path} is damaged ({exc}); rebuild it with: {rebuild_command(data_dir, name, manifest)}"
        ) from None
    if verify and fingerprint(tables) != manifest.get("fingerprint"):
        raise DinbenchError(
            f"dataset '{name}' in {path} no longer matches its manifest fingerprint (its files were changed); "
            f"rebuild it with: {rebuild_command(data_dir, name, manifest)}"
        )
    return Prepared(
        name=name,
        path=path,
        manifest=manifest,
        behaviours=tables["behaviours"],
        items=tables["items"],
        users=tables["users"],
        splits={s: tables[s] for s in SPLITS},
    )

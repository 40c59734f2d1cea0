"""What ``dinbench datasets`` shows: the prepared datasets of a folder, and each one's counts beside
the DIN paper's (Table 2) for the paper's datasets. Plain rows of text; the CLI draws the tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dinbench.prepared import contract

NOUNS = {  # what a behaviour, an item and a category are called in each family
    "movielens": ("ratings", "movies", "genres (first listed)"),
    "amazon": ("reviews", "goods", "categories"),
    "taobao": ("behaviours", "items", "categories"),
}
# The DIN paper's Table 2 (and the formats' published counts) for the paper's datasets.
PAPER_COUNTS = {
    "amazon-electronics": {"behaviours": 1_689_188, "users": 192_403, "items": 63_001, "categories": 801},
    "movielens-20m": {"behaviours": 20_000_263, "users": 138_493, "items": 27_278},  # items: movies.csv lists 27,278
}
LISTING_COLUMNS = ("name", "status", "users", "items", "categories", "behaviours", "train", "valid", "test", "kind")
NUMERIC_COLUMNS = ("users", "items", "categories", "behaviours", "train", "valid", "test")


def known(root: Path, embedded: dict[str, str]) -> dict[str, str]:
    """name -> source kind: ``embedded`` first, then every prepared dataset under ``root`` by name."""
    names = dict(embedded)
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if contract.valid_name(p.name) and (p / contract.MANIFEST).is_file():  # not a hidden temporary folder
                names.setdefault(p.name, contract.read_manifest(root, p.name).get("source", {}).get("kind", "?"))
    return names


def listing(root: Path, names: dict[str, str]) -> list[list[str]]:
    """One row of ``LISTING_COLUMNS`` per dataset of ``names`` (see ``known``); counts only where prepared."""
    rows = []
    for name, about in names.items():
        if contract.is_prepared(root, name):
            c = contract.read_manifest(root, name).get("counts", {})
            rows.append([name, "prepared", *(f"{c.get(k, 0):,}" for k in (
                "users", "items", "categories", "behaviours", "train_samples", "valid_samples", "test_samples")), about])
        else:
            rows.append([name, "not prepared", *[""] * 7, about])
    return rows


@dataclass
class DatasetStats:
    """The counts of one prepared dataset: a title and rows of (label, value, the paper's mark)."""

    title: str
    rows: list[tuple[str, str, str]]


def _cell(value) -> str:
    return f"{value:,}" if isinstance(value, (int, np.integer)) else str(value)


def _mark(value, want) -> str:
    """'' where the paper has no such count, else its count and ✓ (equal) or ✗."""
    return "" if want is None else f"{want:,}" + (" ✓" if want == value else " ✗")


def dataset_stats(root: Path, name: str) -> DatasetStats:
    """The counts of the prepared dataset ``name`` under ``root``, beside ``PAPER_COUNTS``."""
    manifest = contract.read_manifest(root, name)
    c, kind = manifest.get("counts", {}), manifest.get("source", {}).get("kind", "?")
    beh_noun, item_noun, cat_noun = NOUNS.get(kind, ("behaviours", "items", "categories"))
    beh = pd.read_parquet(contract.dataset_path(root, name) / "behaviours.parquet", columns=["user", "time"])
    lengths = np.bincount(beh["user"].to_numpy())[1:]
    lengths = lengths[lengths > 0]
    paper = PAPER_COUNTS.get(name, {})
    rows: list[tuple[str, str, str]] = []

    def row(label: str, value, key: str | None = None) -> None:
        rows.append((label, _cell(value), _mark(value, paper.get(key) if key else None)))

    row(beh_noun, int(c.get("behaviours", len(beh))), "behaviours")
    row("users", int(c.get("users", 0)), "users")
    row(item_noun, int(c.get("items", 0)), "items")
    row(cat_noun, int(c.get("categories", 0)), "categories")
    if len(lengths):
        row(f"{beh_noun} per user (min / median / max)",
            f"{int(lengths.min()):,} / {float(np.median(lengths)):,.0f} / {int(lengths.max()):,}")
    if manifest.get("time_unit") == "seconds" and len(beh):
        t = pd.to_datetime(beh["time"].agg(["min", "max"]), unit="s")
        row("time span", f"{t.iloc[0]:%Y-%m-%d} to {t.iloc[1]:%Y-%m-%d}")
    for s in ("train", "valid", "test"):
        extra = f" ({c[f'{s}_users']:,} users, {c[f'{s}_positives']:,} positive)" if f"{s}_users" in c else ""
        row(f"{s} samples", f"{int(c.get(f'{s}_samples', 0)):,}{extra}")
    if c.get("dropped_users"):
        row("users dropped (too short)", int(c["dropped_users"]))
    read = manifest.get("source", {}).get("read", {})
    if "items_unknown_category" in read:
        row(f"{item_noun} without a meta category", int(read["items_unknown_category"]))
    title = f"{name} ({kind}; protocol {manifest.get('protocol', {}).get('name', '?')})"
    return DatasetStats(title=title, rows=rows)

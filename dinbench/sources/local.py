"""Datasets on this machine: the embedded ``synthetic`` set made on demand, and a prepared dataset
loaded by name with a one-line hint when it is missing.

``say(text)`` is how these functions speak (the CLI passes its console's print); ``busy(text)`` is a
context for work that takes a moment (a spinner in the CLI).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dinbench.errors import DinbenchError

if TYPE_CHECKING:  # the prepared-data code needs pandas: imported where a dataset is read or written
    from dinbench.prepared import contract

EMBEDDED = {"synthetic": "embedded"}  # datasets generated here, offline: name -> kind


def prepared_lines(manifest: dict[str, Any], path: Path) -> list[str]:
    """What a preparation made, in a few lines."""
    c = manifest["counts"]
    lines = [f"prepared [bold]{manifest['name']}[/]: {c['users']:,} users, {c['items']:,} items, "
             f"{c['categories']:,} categories, {c['behaviours']:,} behaviours -> "
             f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples"]
    if c.get("dropped_users"):
        lines.append(f"dropped {c['dropped_users']:,} users with fewer than "
                     f"{manifest['protocol'].get('min_behaviours', '?')} behaviours ({c['dropped_behaviours']:,} rows)")
    return lines + [f"written to {path}"]


def make_synthetic(data_dir: Path, force: bool = False, say: Callable[[str], None] = print,
                   busy: Callable[[str], Any] = nullcontext, **overrides: Any) -> dict[str, Any]:
    """Generate and prepare ``synthetic`` (None overrides = the generator's defaults), unless it is
    already prepared from the same generator settings and ``force`` is off. Returns the manifest."""
    from dinbench.prepared import contract
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info

    cfg = SyntheticConfig(**{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    if contract.is_prepared(data_dir, "synthetic") and not force:
        manifest = contract.read_manifest(data_dir, "synthetic")
        if manifest.get("source", {}).get("config") == source_info(cfg)["config"]:
            say(f"synthetic is already prepared in {contract.dataset_path(data_dir, 'synthetic')} (use --force to redo)")
            return manifest
    with busy("generating synthetic behaviours and samples"):
        behaviours, items = generate(cfg)
        manifest = contract.prepare(behaviours, "synthetic", data_dir, source_info(cfg), item_attributes=items)
    for line in prepared_lines(manifest, contract.dataset_path(data_dir, "synthetic")):
        say(line)
    return manifest


def load_or_prepare(root: Path, name: str, say: Callable[[str], None] = print,
                    busy: Callable[[str], Any] = nullcontext) -> contract.Prepared:
    """The prepared dataset ``name``; ``synthetic`` is generated first when missing, any other
    missing dataset is a DinbenchError saying how to prepare it. A name that cannot be a dataset
    (``contract.NAME_RULE``: '../x', '.hidden') is refused before any path is built from it."""
    from dinbench.prepared import contract

    if not contract.valid_name(name):
        raise DinbenchError(f"invalid dataset name '{name}': {contract.NAME_RULE}; "
                            "`dinbench datasets` lists the prepared ones")
    if not contract.is_prepared(root, name):
        if name == "synthetic":
            say("synthetic is not prepared yet: generating it (offline, seeded)")
            make_synthetic(root, say=say, busy=busy)
        else:
            from dinbench.sources.registry import REGISTRY

            if name in REGISTRY:
                raise DinbenchError(f"dataset '{name}' is not prepared in {root}; prepare it with `dinbench download {name}`")
            raise DinbenchError(
                f"dataset '{name}' is not prepared in {root}; prepare it with "
                f"`dinbench import FILE --name {name}` (or `dinbench datasets` to see what exists)"
            )
    return contract.load(root, name)

"""Experiment files: ``dinbench run --config exp.toml`` and ``dinbench sweep --config exp.toml``.

A TOML file whose keys are the options of ``run``/``sweep`` (their flags without ``--``, with
``_`` for ``-``); the grid axes ``dataset``, ``pooler`` and ``architecture`` take a list (or a
comma-separated string). Pooler options may be given flat (they apply to every pooler that has
that option) or per pooler in a ``[pooler_options.NAME]`` table::

    dataset = "amazon-beauty"
    pooler = ["average", "din:none", "din:softmax"]
    seeds = 3
    epochs = 5
    batch_size = 512

    [pooler_options.time-decay]
    half_life = 10.0

Options given on the command line win over the file. ``--print-config`` writes the resolved
experiment in this format (``dump``); fed back with ``--config`` it gives the same runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dinbench import paths, poolers
from dinbench.config import OPTIONS
from dinbench.errors import DinbenchError
from dinbench.grid import Experiment, schema


def load(path: Path) -> dict[str, Any]:
    """The options of an experiment file, keys checked (values are checked by ``grid.resolve``)."""
    data = paths.read_toml(path, "experiment file", "give the path of a .toml file")
    known = schema()
    for key, value in data.items():
        if key == "pooler_options":
            _check_pooler_tables(path, value)
        elif key not in known:
            raise DinbenchError(f"{path}: unknown key '{key}'; choose from {', '.join([*known, 'pooler_options'])}")
    return data


def _check_pooler_tables(path: Path, tables: Any) -> None:
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise DinbenchError(f"{path}: pooler_options must hold one table per pooler, e.g. [pooler_options.time-decay]")
    for name, values in tables.items():
        if name not in poolers.REGISTRY:
            raise DinbenchError(f"{path}: unknown pooler '{name}' in pooler_options; choose from {', '.join(poolers.REGISTRY)}")
        own = [o.name for o in poolers.options(name)]
        for key in values:
            if key not in own:
                raise DinbenchError(f"{path}: pooler '{name}' has no option '{key}'; its options: {', '.join(own) or 'none'}")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump(exp: Experiment, header: str = "") -> str:
    """The resolved experiment as TOML: every option with its value, each pooler's options in its table."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"dataset = {_value(list(exp.datasets))}", f"pooler = {_value(list(exp.specs))}",
              f"architecture = {_value(list(exp.archs))}", f"seeds = {exp.seeds}", f"seed = {exp.seed}",
              f"preset = {_value(exp.preset)}"]
    run = [k for k, o in OPTIONS.items() if o.cli and k not in ("dataset", "pooler", "architecture", "seed")]
    lines += [f"{k} = {_value(exp.settings.get(k, OPTIONS[k].default))}" for k in run]
    for name in dict.fromkeys(poolers.parse_spec(s)[0] for s in exp.specs):
        values = poolers.resolve_options(name, exp.pooler_options.get(name, {}))
        if values:
            lines += ["", f"[pooler_options.{name}]"] + [f"{k} = {_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"

"""The search space of ``dinbench tune``, derived from the option declarations (docs/tuning.md).

The default space is read off the declarations, never written twice: every run option with a
``search`` range (``dinbench.config``: lr, batch size, embedding init std, mini-batch L2 λ) is a
*shared axis*, identical for every pooler, and every pooler option with a ``search`` range (din's
attention hidden sizes and activation, time-decay's half-life, multihead's heads, ...) is that
pooler's own axis. Everything else keeps one value in every trial of every pooler (the *fixed*
settings: the epochs cap, patience, embedding size, ...).

A space file (``--space FILE.toml``) changes ranges or fixes values, over the default::

    [shared]
    lr = { log = [1e-4, 1e-2] }          # log-uniform
    batch_size = { choices = [256, 512] }
    init_std = 0.1                       # a plain value: fixed, not searched

    [pooler.din]
    attention_activation = { choices = ["sigmoid", "dice"] }
    outer_product = { choices = [false, true] }

Other keys of a range: ``uniform = [low, high]``, ``int = [low, high]``. Every value is checked by
the option's own declaration (its type, choices and check).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinbench import paths, poolers
from dinbench.config import OPTIONS
from dinbench.errors import DinbenchError
from dinbench.options import Option, Search

# Run options a space may not search or fix: what a trial is (dataset, pooler, seed), and what
# cannot change the numbers or is not a per-run setting.
NOT_SEARCHABLE = ("dataset", "pooler", "architecture", "seed", "device", "compile", "eval_batch_size", "protocol")


@dataclass(frozen=True)
class Space:
    """``shared``: run option -> range (or a fixed value), the same for every pooler; ``own``: pooler
    name -> its option -> range (or a fixed value)."""

    shared: dict[str, Search | Any]
    own: dict[str, dict[str, Search | Any]]

    def for_pooler(self, spec: str) -> dict[str, Search | Any]:
        """The pooler's own axes of ``spec`` (by pooler name; variants share them)."""
        return dict(self.own.get(poolers.parse_spec(spec)[0], {}))

    def to_json(self) -> dict[str, Any]:
        return {"shared": {k: _encode(v) for k, v in sorted(self.shared.items())},
                "own": {p: {k: _encode(v) for k, v in sorted(o.items())} for p, o in sorted(self.own.items())}}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def lines(self, specs: list[str] | None = None) -> list[str]:
        """One line per axis, for the tune plan and docs: the shared axes, then the own axes of the
        poolers in ``specs`` (every pooler's when None; variants of one pooler share theirs)."""
        names = None if specs is None else {poolers.parse_spec(s)[0] for s in specs}
        out = [f"shared {k}: {_describe(v)}" for k, v in self.shared.items()]
        out += [f"{p} {k}: {_describe(v)}" for p, o in self.own.items() if names is None or p in names
                for k, v in o.items()]
        return out


def _encode(value: Search | Any) -> Any:
    if isinstance(value, Search):
        return {"kind": value.kind, "low": value.low, "high": value.high, "values": [_plain(v) for v in value.values]}
    return {"fixed": _plain(value)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _describe(value: Search | Any) -> str:
    if isinstance(value, Search):
        return value.describe()
    return f"fixed at {','.join(map(str, value)) if isinstance(value, tuple) else value}"


def default_space() -> Space:
    """The space the declarations give: every option with a ``search`` range."""
    shared = {k: o.search for k, o in OPTIONS.items() if o.search is not None and k not in NOT_SEARCHABLE}
    own = {}
    for name in poolers.REGISTRY:
        ranges = {o.name: o.search for o in poolers.options(name) if o.search is not None}
        if ranges:
            own[name] = ranges
    return Space(shared, own)


def load_space(path: Path) -> Space:
    """The default space with the ranges and fixed values of the space file ``path`` over it."""
    data = paths.read_toml(path, "space file", "give the path of a .toml file, or --space default")
    base = default_space()
    for key in data:
        if key not in ("shared", "pooler"):
            raise DinbenchError(f"{path}: unknown table '{key}'; a space file has [shared] and [pooler.NAME] tables")
    shared = dict(base.shared)
    allowed = {k: o for k, o in OPTIONS.items() if k not in NOT_SEARCHABLE}
    for name, value in _table(path, data.get("shared", {}), "shared").items():
        if name not in allowed:
            raise DinbenchError(f"{path}: [shared] has no option '{name}'; choose from {', '.join(allowed)}")
        shared[name] = _range(path, f"[shared] {name}", allowed[name], value)
    own = {p: dict(o) for p, o in base.own.items()}
    for pooler, table in _table(path, data.get("pooler", {}), "pooler").items():
        if pooler not in poolers.REGISTRY:
            raise DinbenchError(f"{path}: unknown pooler '{pooler}'; choose from {', '.join(poolers.REGISTRY)}")
        declared = {o.name: o for o in poolers.options(pooler)}
        for name, value in _table(path, table, f"pooler.{pooler}").items():
            if name not in declared:
                raise DinbenchError(f"{path}: pooler '{pooler}' has no option '{name}'; its options: "
                                    f"{', '.join(declared) or 'none'}")
            own.setdefault(pooler, {})[name] = _range(path, f"[pooler.{pooler}] {name}", declared[name], value)
    return Space(shared, own)


def _table(path: Path, value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DinbenchError(f"{path}: '{where}' must be a table")
    return value


def _range(path: Path, where: str, opt: Option, value: Any) -> Search | Any:
    """A range ({log|uniform|int = [low, high]} or {choices = [...]}) or a fixed value, checked by ``opt``."""
    try:
        if not isinstance(value, dict):
            return opt.parse(value)
        if len(value) != 1:
            raise DinbenchError("give one of log, uniform, int or choices")
        (kind, bounds), = value.items()
        if kind == "choices":
            if not isinstance(bounds, list) or not bounds:
                raise DinbenchError("choices must be a non-empty list")
            return Search("choice", values=tuple(dict.fromkeys(opt.parse(v) for v in bounds)))
        if kind not in ("log", "uniform", "int"):
            raise DinbenchError(f"unknown range '{kind}'; give one of log, uniform, int or choices")
        need = int if kind == "int" else float
        if opt.kind is not need:
            raise DinbenchError(f"a {kind} range needs a{'n integer' if need is int else ' float'} option; "
                                f"use {'int = [low, high] or ' if opt.kind is int else ''}choices")
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise DinbenchError(f"{kind} takes [low, high]")
        low, high = (opt.parse(b) for b in bounds)
        if not low < high:
            raise DinbenchError(f"low must be below high (got {low}, {high})")
        if kind == "log" and low <= 0:
            raise DinbenchError(f"a log range needs low > 0 (got {low})")
        return Search(kind, low, high)
    except DinbenchError as exc:
        raise DinbenchError(f"{path}: {where}: {exc}") from None


# ---- sampling (an Optuna trial; optuna is imported by the caller)

def _categorical(value: Any) -> Any:
    """Optuna's categorical values are None, bool, int, float or str: a tuple travels as '80,40'."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def _suggest(trial, name: str, rng: Search, opt: Option) -> Any:
    if rng.kind == "log":
        return opt.parse(trial.suggest_float(name, rng.low, rng.high, log=True))
    if rng.kind == "uniform":
        return opt.parse(trial.suggest_float(name, rng.low, rng.high))
    if rng.kind == "int":
        return opt.parse(trial.suggest_int(name, int(rng.low), int(rng.high)))
    return opt.parse(trial.suggest_categorical(name, [_categorical(v) for v in rng.values]))


def sample(trial, space: Space, spec: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run options, pooler options) of one trial of pooler ``spec``: the shared axes first, in one
    order for every pooler, then the pooler's own; fixed values as they are."""
    shared = {}
    for name in sorted(space.shared):
        rng = space.shared[name]
        shared[name] = _suggest(trial, name, rng, OPTIONS[name]) if isinstance(rng, Search) else rng
    declared = {o.name: o for o in poolers.options(poolers.parse_spec(spec)[0])}
    own = {}
    for name, rng in sorted(space.for_pooler(spec).items()):
        own[name] = _suggest(trial, f"{name}", rng, declared[name]) if isinstance(rng, Search) else rng
    return shared, own


def searched(space: Space, spec: str) -> list[str]:
    """The names of the axes a trial of ``spec`` searches (shared, then the pooler's own)."""
    return [k for k, v in sorted(space.shared.items()) if isinstance(v, Search)] + \
        [k for k, v in sorted(space.for_pooler(spec).items()) if isinstance(v, Search)]

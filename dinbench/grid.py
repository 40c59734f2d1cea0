"""Experiments: what ``dinbench run`` and ``dinbench sweep`` are asked to do, and the grid of runs it makes.

An experiment is the run options (``config.OPTIONS``), the pooler options (each pooler's
``options``) and three grid options (``GRID_OPTIONS``: seeds, preset), from three layers, each
over the one below: defaults < preset < experiment file (``--config exp.toml``) < explicit
command-line options. ``resolve`` checks every value once, where it enters, and ``Experiment.expand``
turns it into datasets x architectures x poolers x seeds RunConfigs, so a sweep's runs are exactly
the runs ``dinbench run`` would make.

``run_identity`` says when a completed record already holds a run of the grid: same dataset
fingerprint, same comparable configuration (every field that decides the numbers), same pooler and
pooler options, architecture and seed. A sweep skips those (resumable sweeps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from dinbench import poolers
from dinbench.config import OPTIONS, PRESETS, RunConfig, apply_preset, comparable, config_from_record
from dinbench.errors import DinbenchError
from dinbench.options import Option, at_least_one

GRID_OPTIONS = {
    "seeds": Option("seeds", 1, "Number of seeds (repeats) per pooler.", int, check=at_least_one),
    "preset": Option("preset", "default", "Settings bundle: default (tuned, docs/defaults.md) or paper (the DIN "
                     "paper's). Explicit options win.", choices=tuple(PRESETS)),
}
# what an axis holds when nobody says (RunConfig's own default is one run's value)
AXIS_DEFAULTS = {"dataset": "synthetic", "pooler": ",".join(poolers.DEFAULT_POOLERS), "architecture": "ranking"}


def pooler_options_schema() -> dict[str, Option]:
    """One Option per pooler-option name, its help prefixed with the pooler(s) that declare it (poolers
    sharing one declaration share one line: 'din, sim, eta: hidden sizes ...')."""
    out = {}
    for name, owners in poolers.all_options().items():
        first = owners[0][1]
        texts: dict[str, list[str]] = {}  # help with default -> the poolers declaring it, in registry order
        for p, o in owners:
            texts.setdefault(f"{o.help} {o.describe_default()}", []).append(p)
        help_ = "; ".join(f"{', '.join(ps)}: {text}" for text, ps in texts.items())
        out[name] = Option(name, None, help_, first.kind, first.choices, None)
    return out


def schema() -> dict[str, Option]:
    """Every option of an experiment by name: grid, run and pooler options (the command line's order)."""
    run = {k: replace(o, default=AXIS_DEFAULTS.get(k, o.default)) for k, o in OPTIONS.items() if o.cli}
    return {**{k: run[k] for k in ("dataset", "pooler")}, **GRID_OPTIONS, **run, **pooler_options_schema()}


def _split(value: Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return list(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: the grid's axes, seeds, and the settings every run shares."""

    datasets: tuple[str, ...]
    specs: tuple[str, ...]  # canonical pooler specs, in the order given
    archs: tuple[str, ...]
    seeds: int
    seed: int
    preset: str
    settings: dict[str, Any]  # every other run option, resolved
    pooler_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # pooler name -> options given

    def options_for(self, spec: str) -> dict[str, Any]:
        return dict(self.pooler_options.get(poolers.parse_spec(spec)[0], {}))

    def expand(self) -> "Grid":
        """Every dataset x architecture x pooler x seed as a RunConfig (order: that nesting)."""
        configs: list[RunConfig] = []
        skipped: list[str] = []
        for dataset in self.datasets:
            for arch in self.archs:
                for p in self.specs:
                    if arch != "ranking" and poolers.uses_candidate(p):
                        skipped += [p] if p not in skipped else []
                        continue
                    base = RunConfig(dataset=dataset, pooler=p, architecture=arch, seed=self.seed,
                                     pooler_options=self.options_for(p), **self.settings)
                    configs += [base.replace(seed=self.seed + s) for s in range(self.seeds)]
        if not configs:
            raise DinbenchError(
                f"{', '.join(skipped)} attend(s) to the candidate, which a {'/'.join(a for a in self.archs if a != 'ranking')} user tower never sees; "
                "use --architecture ranking or a candidate-free pooler (average, sum, max, last, time-decay, none)"
            )
        _check_buildable({(c.pooler, c.architecture): c for c in configs}.values())
        return Grid(configs=configs, specs=list(self.specs), archs=list(self.archs), two_tower_skipped=skipped)


def _check_buildable(configs) -> None:
    from dinbench.model.build import check_buildable  # torch: only when a grid is really built

    for cfg in configs:
        check_buildable(cfg)


@dataclass
class Grid:
    """The expanded grid: configs in run order, and what was left out and why."""

    configs: list[RunConfig]
    specs: list[str]
    archs: list[str]
    two_tower_skipped: list[str]  # candidate-dependent poolers left out of two-tower and three-tower


def _parse(opt: Option, value: Any, where: str | None) -> Any:
    """``opt.parse(value)``; an error from a file names the file and the key."""
    try:
        return opt.parse(value)
    except DinbenchError as exc:
        if where is None:
            raise
        raise DinbenchError(f"{where}: key '{opt.name}': {exc}") from None


def resolve(explicit: dict[str, Any], file: dict[str, Any] | None = None, where: str | None = None) -> Experiment:
    """The experiment of ``explicit`` options (None = not given) over an experiment ``file``'s values.

    ``file`` is what ``experiment.load`` read from ``where``; its values are checked here, naming
    the file and key in any error. Raises DinbenchError (one line) before any work starts.
    """
    layers = [(dict(file or {}), where), ({k: v for k, v in explicit.items() if v is not None}, None)]
    merged: dict[str, Any] = {}
    source: dict[str, str | None] = {}
    per_pooler: dict[str, dict[str, Any]] = {}
    for values, origin in layers:
        for name, spec_options in values.pop("pooler_options", {}).items():
            poolers.parse_spec(name)
            per_pooler.setdefault(name, {}).update(spec_options)
        merged.update(values)
        source.update({k: origin for k in values})
    axes = {k: _split(merged.get(k, AXIS_DEFAULTS[k])) for k in AXIS_DEFAULTS}
    for k in ("dataset", "architecture"):
        if not axes[k]:
            raise DinbenchError(f"--{k} names no {k}; give one or more names separated by commas")
    for arch in axes["architecture"]:
        _parse(OPTIONS["architecture"], arch, source.get("architecture"))
    specs = poolers.expand(",".join(axes["pooler"]))
    grid = {k: _parse(o, merged.get(k, o.default), source.get(k)) for k, o in GRID_OPTIONS.items()}
    settings = {k: _parse(OPTIONS[k], v, source.get(k)) for k, v in merged.items()
                if k in OPTIONS and k not in AXIS_DEFAULTS}
    settings = apply_preset(grid["preset"], settings)
    seed = settings.pop("seed", OPTIONS["seed"].default)
    flat = {k: v for k, v in merged.items() if k in poolers.all_options()}
    for name in dict.fromkeys(poolers.parse_spec(s)[0] for s in specs):
        own = {o.name for o in poolers.options(name)}
        given = {**{k: v for k, v in flat.items() if k in own}, **per_pooler.get(name, {})}
        try:
            per_pooler[name] = poolers.resolve_options(name, given) if given else {}
        except DinbenchError as exc:
            raise DinbenchError(f"{where}: {exc}" if where and name in per_pooler else str(exc)) from None
    return Experiment(datasets=tuple(axes["dataset"]), specs=tuple(specs), archs=tuple(axes["architecture"]),
                      seeds=grid["seeds"], seed=seed, preset=grid["preset"], settings=settings,
                      pooler_options={k: v for k, v in per_pooler.items() if v})


def run_identity(fingerprint: str, config: dict[str, Any]) -> str:
    """A string equal for two runs that would give the same numbers: the dataset's content
    fingerprint, the comparable config (dataset name included) and pooler, its options,
    architecture, seed. ``device`` and ``eval_batch_size`` are left out, as in ``config.comparable``."""
    cfg = config_from_record(config)
    key = {
        "fingerprint": fingerprint,
        "config": comparable(cfg.to_dict()),
        "pooler": cfg.pooler,
        "pooler_options": cfg.to_dict()["pooler_options"],
        "architecture": cfg.architecture,
        "seed": cfg.seed,
    }
    return json.dumps(key, sort_keys=True, default=str)


def record_identity(record: dict[str, Any], statuses: tuple[str, ...] = ("completed",)) -> str | None:
    """``run_identity`` of a record whose status is one of ``statuses`` (else None)."""
    if record.get("status") not in statuses:
        return None
    try:
        return run_identity(record["dataset"]["fingerprint"], record["config"])
    except (KeyError, TypeError, ValueError, DinbenchError):
        return None

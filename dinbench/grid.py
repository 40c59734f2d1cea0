"""The grid of runs: datasets x architectures x poolers x seeds -> one RunConfig each.

``dinbench run`` and ``dinbench sweep`` take the same options (what to train and how); both turn
them into RunConfigs here, so a sweep's runs are exactly the runs ``dinbench run`` would make.

``run_identity`` says when a completed record already holds a run of the grid: same dataset
fingerprint, same comparable configuration (every field that decides the numbers), same pooler,
architecture and seed. A sweep skips those (resumable sweeps).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from dinbench import poolers
from dinbench.config import RunConfig, apply_preset, comparable
from dinbench.errors import DinbenchError


def parse_ints(text: str | None, option: str) -> tuple[int, ...] | None:
    """'200,80' -> (200, 80); None stays None; anything else is a one-line error naming ``option``."""
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise DinbenchError(f"{option} takes comma-separated integers like 200,80 (got '{text}')") from None


@dataclass
class GridOptions:
    """The options shared by ``run`` and ``sweep``, as the user gave them (None = preset/default)."""

    pooler: str
    seeds: int
    seed: int
    preset: str
    protocol: str | None
    architecture: str
    attention_groups: str | None
    epochs: int | None
    patience: int | None
    batch_size: int | None
    embedding_dim: int | None
    mlp_hidden: str | None
    mlp_activation: str | None
    max_len: int | None
    optimizer: str | None
    lr: float | None
    lr_decay_steps: int | None
    lr_decay: float | None
    grad_clip: float | None
    l2_minibatch: float | None
    init_std: float | None
    bucket: bool | None
    precision: str | None
    half_life: float
    decay_age: str
    learn_decay: bool
    heads: int
    attention_hidden: str
    attention_activation: str
    outer_product: bool
    device: str


@dataclass
class Grid:
    """The expanded grid: configs in run order, and what was left out and why."""

    configs: list[RunConfig]
    specs: list[str]  # canonical pooler specs, in the order given
    archs: list[str]
    two_tower_skipped: list[str]  # candidate-dependent poolers left out of two-tower


def expand(options: GridOptions, datasets: Iterable[str]) -> Grid:
    """Every dataset x architecture x pooler x seed as a validated RunConfig (order: that nesting).

    Raises DinbenchError (one line) for any bad option value, before any work starts.
    """
    from dinbench.train import check_buildable  # torch: only when a grid is really built

    if options.seeds < 1:
        raise DinbenchError(f"--seeds must be at least 1 (got {options.seeds})")
    datasets = list(dict.fromkeys(d.strip() for d in datasets if d.strip()))
    if not datasets:
        raise DinbenchError("--dataset names no dataset; give one or more names separated by commas")
    specs = poolers.expand(options.pooler)
    explicit = dict(
        protocol=options.protocol, attention_groups=options.attention_groups, epochs=options.epochs,
        patience=options.patience, batch_size=options.batch_size, embedding_dim=options.embedding_dim,
        mlp_hidden=parse_ints(options.mlp_hidden, "--mlp-hidden"), mlp_activation=options.mlp_activation,
        max_len=options.max_len, optimizer=options.optimizer, lr=options.lr,
        lr_decay_steps=options.lr_decay_steps, lr_decay=options.lr_decay, grad_clip=options.grad_clip,
        l2_minibatch=options.l2_minibatch, init_std=options.init_std, bucket=options.bucket,
        precision=options.precision,
    )
    settings = apply_preset(options.preset, explicit)
    pooler_options = dict(
        half_life=options.half_life, age_unit=options.decay_age, learn=options.learn_decay, heads=options.heads,
        hidden=parse_ints(options.attention_hidden, "--attention-hidden"),
        activation=options.attention_activation, outer=options.outer_product,
    )
    archs = list(dict.fromkeys(a.strip() for a in options.architecture.split(",") if a.strip()))
    if not archs:
        raise DinbenchError("--architecture names no architecture; choose ranking, two-tower or both")
    configs: list[RunConfig] = []
    skipped: list[str] = []
    for dataset in datasets:
        for arch in archs:
            for p in specs:
                if arch == "two-tower" and poolers.uses_candidate(p):
                    if p not in skipped:
                        skipped.append(p)
                    continue
                configs += [
                    RunConfig(dataset=dataset, pooler=p, seed=options.seed + s, device=options.device,
                              architecture=arch, pooler_options=dict(pooler_options), **settings)
                    for s in range(options.seeds)
                ]
    if not configs:
        raise DinbenchError(
            f"{', '.join(skipped)} attend(s) to the candidate, which a two-tower user tower never sees; "
            "use --architecture ranking or a candidate-free pooler (average, sum, max, last, time-decay, none)"
        )
    for cfg in configs:
        cfg.validate()  # every option checked before any work starts
    for cfg in {(c.pooler, c.architecture): c for c in configs}.values():
        check_buildable(cfg)
    return Grid(configs=configs, specs=specs, archs=archs, two_tower_skipped=skipped)


def run_identity(fingerprint: str, config: dict[str, Any]) -> str:
    """A string equal for two runs that would give the same numbers: the dataset's content
    fingerprint, the comparable config (dataset name included) and pooler, architecture, seed.
    ``device`` and ``eval_batch_size`` are left out, as in ``config.comparable``."""
    key = {
        "fingerprint": fingerprint,
        "config": comparable(config),
        "pooler": poolers.canonical(config["pooler"]),
        "architecture": config.get("architecture", "ranking"),
        "seed": int(config["seed"]),
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

"""Run configuration: every option that decides a run's numbers, validated, with presets.

Defaults are the project's tuned defaults, chosen on validation data only (docs/defaults.md); they
are the same for every pooler. ``--preset paper`` applies the DIN paper's public-dataset settings
(the authors' released code: SGD, learning rate 1.0 decayed to 0.1 after 336,000 steps, batch 32,
gradient norm clipped at 5, 64-dimensional item and category embeddings, no history truncation),
keeping the paper's BaseModel MLP (200-80, PReLU). An option given explicitly wins over a preset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dinbench import poolers
from dinbench.errors import DinbenchError
from dinbench.model.mlp import MLP_ACTIVATIONS

PROTOCOLS = ("din", "paper")
OPTIMIZERS = ("adam", "sgd")
ARCHITECTURES = ("ranking", "two-tower")
ATTENTION_GROUPS = ("joint", "separate")
PRECISIONS = ("fp32", "bf16")

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {
        "optimizer": "sgd",
        "lr": 1.0,
        "lr_decay_steps": 336_000,
        "lr_decay": 0.1,
        "grad_clip": 5.0,
        "batch_size": 32,
        "embedding_dim": 64,
        "mlp_hidden": (200, 80),
        "mlp_activation": "prelu",
        "max_len": 100_000,
        "epochs": 50,
    },
}


@dataclass
class RunConfig:
    """Everything that decides a run's numbers. Defaults: see docs/defaults.md."""

    dataset: str = "synthetic"
    pooler: str = "din:none"
    seed: int = 0
    protocol: str = "din"  # din: select epoch on valid; paper: train+valid, fixed epochs, no selection
    epochs: int = 10  # at most (early stopping on valid GAUC)
    patience: int = 2  # epochs without valid improvement tolerated; the next one stops training
    batch_size: int = 256
    eval_batch_size: int = 4096
    embedding_dim: int = 32  # per field: item and category, so the model works on 2 * 32
    mlp_hidden: tuple[int, ...] = (200, 80)
    mlp_activation: str = "prelu"
    architecture: str = "ranking"
    attention_groups: str = "joint"
    max_len: int = 50
    bucket: bool = False  # batch rows of similar history length together (less padding)
    optimizer: str = "adam"
    lr: float = 1e-3
    lr_decay_steps: int = 0  # multiply lr by lr_decay every this many steps (0 = never)
    lr_decay: float = 0.1
    grad_clip: float = 0.0  # max global gradient norm (0 = no clipping)
    l2_minibatch: float = 0.0  # mini-batch aware L2 on embeddings (DIN paper, Eq. 4); 0 = off
    init_std: float = 0.1
    pooler_options: dict[str, Any] = field(default_factory=dict)  # passed to the pooler if it takes them
    device: str = "cpu"
    precision: str = "fp32"  # bf16: matmuls under torch.autocast in bfloat16 (parameters and optimizer stay fp32)

    def validate(self) -> "RunConfig":
        positive = ("epochs", "batch_size", "eval_batch_size", "embedding_dim", "max_len")
        for name in positive:
            if getattr(self, name) < 1:
                raise DinbenchError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        for name in ("patience", "lr_decay_steps", "grad_clip", "l2_minibatch"):
            if getattr(self, name) < 0:
                raise DinbenchError(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(self, name)})")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise DinbenchError(f"--lr must be a positive number (got {self.lr})")
        if not 0 < self.lr_decay <= 1:
            raise DinbenchError(f"--lr-decay must lie in (0, 1] (got {self.lr_decay})")
        if self.init_std <= 0:
            raise DinbenchError(f"--init-std must be positive (got {self.init_std})")
        if any(h < 1 for h in self.mlp_hidden):
            raise DinbenchError(f"--mlp-hidden sizes must be at least 1 (got {list(self.mlp_hidden)})")
        for name, choices in (
            ("protocol", PROTOCOLS),
            ("optimizer", OPTIMIZERS),
            ("architecture", ARCHITECTURES),
            ("attention_groups", ATTENTION_GROUPS),
            ("mlp_activation", MLP_ACTIVATIONS),
            ("precision", PRECISIONS),
        ):
            if getattr(self, name) not in choices:
                raise DinbenchError(
                    f"unknown --{name.replace('_', '-')} '{getattr(self, name)}'; choose from {', '.join(choices)}"
                )
        self.pooler = poolers.canonical(self.pooler)
        self.mlp_hidden = tuple(int(h) for h in self.mlp_hidden)
        return self

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mlp_hidden"] = list(self.mlp_hidden)
        return out

    def selection_key(self) -> dict[str, Any]:
        """What makes runs comparable; see ``comparable``."""
        return comparable(self.to_dict())


# Fields that may differ between runs of one comparison: the repeats (seed), what is compared
# (pooler, architecture; both are columns of the report) and what cannot change the numbers.
NOT_COMPARED = ("seed", "pooler", "architecture", "device", "eval_batch_size")


# Fields added after records were first written, with the value an older record's run had in effect,
# so that an old record and a new one with the same settings still compare equal.
ADDED_FIELDS = {"precision": "fp32"}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run config without the fields in NOT_COMPARED: equal for runs that belong in one table."""
    return {k: v for k, v in {**ADDED_FIELDS, **config}.items() if k not in NOT_COMPARED}


def apply_preset(name: str, explicit: dict[str, Any]) -> dict[str, Any]:
    """Preset values overlaid with the options the user gave explicitly (those not None)."""
    if name not in PRESETS:
        raise DinbenchError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    merged = dict(PRESETS[name])
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return merged


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def config_from_record(record_config: dict[str, Any], **overrides: Any) -> RunConfig:
    """The RunConfig of a run record's ``config`` (with ``overrides``, e.g. ``device="cpu"``), not validated.

    The one place that turns a stored config back into a RunConfig: loading a saved model and
    resuming an interrupted run both go through it.
    """
    return RunConfig(**{**record_config, **overrides})

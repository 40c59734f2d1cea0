"""The run options, declared once: every option that decides a run's numbers, with its help,
choices, default and check beside it (``RunConfig``), the presets, and reading configs back from
records.

Defaults are the project's tuned defaults, chosen on validation data only (docs/defaults.md); they
are the same for every pooler. ``--preset paper`` applies the DIN paper's public-dataset settings
(the authors' released code: SGD, learning rate 1.0 decayed to 0.1 after 336,000 steps, batch 32,
gradient norm clipped at 5, 64-dimensional item and category embeddings, no history truncation),
keeping the paper's BaseModel MLP (200-80, PReLU). An option given explicitly wins over a preset.

A pooler's own options (time-decay's half-life, din's unit, ...) are declared in the pooler's file
(``Pooler.options``); a config holds only those of its pooler, in ``pooler_options``.

A ``RunConfig`` is frozen and checked when it is made: there is no invalid one to pass around.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from dinbench import optimizers, poolers
from dinbench.errors import DinbenchError
from dinbench.layers import ACTIVATIONS
from dinbench.options import (
    Option, at_least_one, choice, fraction, log_uniform, positive, positive_number, sizes_at_least_one, zero_or_more,
)

ARCHITECTURES = ("ranking", "two-tower", "three-tower")  # the report sorts them: ranking, three-tower, two-tower
COMPILE_MODES = ("auto", "off", "on", "cuda-graphs", "on+cuda-graphs")
CAPTURED = ("cuda-graphs", "on+cuda-graphs")  # the modes whose full batches replay a captured step (graph_step)
COMPILED = ("on", "on+cuda-graphs")  # the modes whose training model is torch.compile'd (runtime.compile_net)
# --compile auto compiles a measured pooler's training step (About.compiles_on_cpu: average) on a CPU when
# the run plans at least this many training rows (epochs x training samples). Compiling average costs
# ~10-20 s on a 2-core CPU with an empty inductor cache (~2 s with a warm one) and then runs 1.3-1.5x the
# eager step (benchmarks/compile.py, dinbench run; 2026-12-01): it pays back after ~1 M rows with a cold
# cache. Four times that, so that a run near the line gains rather than loses (docs/defaults.md).
CPU_COMPILE_MIN_ROWS = 4_000_000


def _option(default: Any, help: str, kind: type = str, *, compared: bool = True, legacy: Any = None,
            **more: Any):
    """A RunConfig field with its Option (name filled in below). ``compared=False``: may differ between
    runs of one table (see ``comparable``). ``legacy``: the value in effect for records written before
    the field existed."""
    meta = {"option": Option("", default, help, kind, **more), "compared": compared, "legacy": legacy}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's numbers. Defaults: see docs/defaults.md."""

    dataset: str = _option("synthetic", "Prepared dataset(s) to train on.", axis=True)
    pooler: str = _option("din:none", "Comma-separated poolers (name or name:variant), or 'all'.", axis=True,
                          compared=False)
    architecture: str = _option(
        "ranking", "ranking (candidate meets history before the MLP), two-tower (user tower x item tower; "
        "candidate-free poolers only), three-tower (two-tower plus a cross tower over history x candidate "
        "counts, fused by a small MLP; candidate-free poolers only), or several as 'ranking,two-tower'.", choices=ARCHITECTURES, axis=True,
        compared=False)
    seed: int = _option(0, "First seed; runs use seed, seed+1, ...", int, compared=False)
    protocol: str = _option(
        "din", "din: select the epoch on valid; paper: train on train+valid, fixed epochs, no validation "
        "(as the paper).", choices=("din", "paper"))
    epochs: int = _option(10, "Maximum epochs (early stopping on valid GAUC).", int, check=at_least_one)
    patience: int = _option(2, "Epochs without valid improvement tolerated before stopping (0: stop at the first).",
                            int, check=zero_or_more)
    # search=: the range of `dinbench tune`'s default space (docs/tuning.md), the same for every pooler
    batch_size: int = _option(256, "Training batch size.", int, check=at_least_one,
                              search=choice(128, 256, 512, 1024))
    # 0 = by device (runtime.eval_batch_size, decided when a run starts; the record has the size used):
    # 4,096 on a CPU, of 1,024 / 4,096 / 16,384 / 65,536 the fastest there (amazon-beauty valid, din: 27 / 32 /
    # 23 / 17 thousand rows/s, 1 thread); 65,536 on a GPU (10.5 M rows/s on an H200, benchmarks/gpu.py), halved
    # for a batch that does not fit. Another size can move a score by one float32 ulp (kernels depend on the shape).
    eval_batch_size: int = _option(0, "Evaluation batch size; 0: 4,096 on a CPU, 65,536 on a GPU (does not "
                                   "change the numbers).", int, check=zero_or_more, compared=False, cli=False)
    embedding_dim: int = _option(32, "Embedding size per field (item and category).", int, check=at_least_one)
    mlp_hidden: tuple[int, ...] = _option((200, 80), "Hidden sizes of the prediction MLP.", tuple,
                                          check=sizes_at_least_one)
    mlp_activation: str = _option("prelu", "Activation of the prediction MLP: prelu, dice, sigmoid or relu.", choices=ACTIVATIONS)
    attention_groups: str = _option(
        "joint", "joint: pool item+category embeddings together; separate: items with items, categories "
        "with categories.", choices=("joint", "separate"))
    max_len: int = _option(50, "Keep the most recent N behaviours of each history.", int, check=at_least_one)
    bucket: bool = _option(False, "Batch rows of similar history length together.", bool)
    # lazy-adam since issue 13 (chosen on validation, docs/defaults.md); records without the field trained with adam
    optimizer: str = _option("lazy-adam", optimizers.help_text(), choices=tuple(optimizers.OPTIMIZERS), legacy="adam")
    lr: float = _option(1e-3, "Learning rate.", float, check=positive_number, search=log_uniform(1e-4, 1e-2))
    lr_decay_steps: int = _option(0, "Multiply the lr by --lr-decay every N steps (0: never).", int,
                                  check=zero_or_more)
    lr_decay: float = _option(0.1, "Factor of the lr decay.", float, check=fraction)
    grad_clip: float = _option(0.0, "Clip the global gradient norm (0: off).", float, check=zero_or_more)
    l2_minibatch: float = _option(0.0, "Mini-batch aware L2 on embeddings (DIN paper Eq. 4), its lambda (0: off).",
                                  float, check=zero_or_more, search=choice(0.0, 1e-5, 1e-4, 1e-3))
    init_std: float = _option(0.1, "Std of the normal embedding initialisation.", float, check=positive,
                              search=log_uniform(0.01, 0.3))
    device: str = _option("cpu", "auto, cpu, cuda or mps.", choices=("auto", "cpu", "cuda", "mps"),
                          compared=False)
    precision: str = _option(
        "fp32", "fp32, or bf16 (bfloat16 autocast of the forward pass; changes the numbers, so its runs are "
        "reported apart).", choices=("fp32", "bf16"), legacy="fp32")
    compile: str = _option(
        "auto", "auto: cuda-graphs for the poolers measured on a GPU (all but none, last, sum, dien) where it can "
        "run (one CUDA "
        "process, a fixed lr, no --l2-minibatch, no Dice attention); on a CPU, on for average when the "
        f"run plans at least {CPU_COMPILE_MIN_ROWS / 1e6:g} M training rows (epochs x samples; compiling takes "
        "10-20 s, then 1.3-1.5x eager) "
        "and a C++ compiler and Python's headers are there; else off; off: eager; on: torch.compile "
        "the training step's model (fused kernels, fewer launches); "
        "cuda-graphs: the whole step captured once as a CUDA graph and replayed (2-5x eager on an H200); "
        "on+cuda-graphs: both, the compiled step captured (1.6-1.9x cuda-graphs on an H200 once compiled, "
        "about 15 s of compiling per run: for long runs). "
        "Same numbers up to float rounding; the record says which ran.",
        choices=COMPILE_MODES, compared=False, legacy="off")
    # the options of this config's pooler only, every one with its value (see Pooler.options)
    pooler_options: dict = field(default_factory=dict, metadata={"compared": False, "legacy": None})

    def __post_init__(self) -> None:
        for name, opt in OPTIONS.items():
            object.__setattr__(self, name, opt.parse(getattr(self, name)))
        object.__setattr__(self, "pooler", poolers.canonical(self.pooler))
        object.__setattr__(self, "pooler_options", poolers.resolve_options(self.pooler, self.pooler_options))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mlp_hidden"] = list(self.mlp_hidden)
        out["pooler_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.pooler_options.items()}
        return out

    def selection_key(self) -> dict[str, Any]:
        """What makes runs comparable; see ``comparable``."""
        return comparable(self.to_dict())

    def replace(self, **changes: Any) -> "RunConfig":
        return replace(self, **changes)


OPTIONS: dict[str, Option] = {
    f.name: replace(f.metadata["option"], name=f.name) for f in fields(RunConfig) if "option" in f.metadata
}

# Fields that may differ between runs of one comparison: the repeats (seed), what is compared
# (pooler and its options, architecture; columns of the report) and what cannot change the numbers.
NOT_COMPARED = tuple(f.name for f in fields(RunConfig) if not f.metadata["compared"])
# Fields added after records were first written, with the value an older record's run had in effect,
# so that an old record and a new one with the same settings still compare equal.
ADDED_FIELDS = {f.name: f.metadata["legacy"] for f in fields(RunConfig) if f.metadata["legacy"] is not None}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A run config without the fields in NOT_COMPARED: equal for runs that belong in one table."""
    return {k: v for k, v in {**ADDED_FIELDS, **config}.items() if k not in NOT_COMPARED}


def config_from_record(config: dict[str, Any], **changes: Any) -> RunConfig:
    """The RunConfig of a record's ``config`` (this version's, or an older one's), with ``changes``.

    Records written before pooler options were the pooler's own hold every pooler's options under
    older names; only this pooler's are kept, under today's names.
    """
    known = {f.name for f in fields(RunConfig)}
    values = {k: v for k, v in {**config, **changes}.items() if k in known}
    values["pooler_options"] = poolers.options_from_record(values.get("pooler", "din:none"),
                                                           values.get("pooler_options") or {})
    try:
        return RunConfig(**values)
    except (TypeError, DinbenchError) as exc:
        raise DinbenchError(f"the record's config is not one this version can run ({exc})") from None


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
assert all(set(p) <= set(OPTIONS) for p in PRESETS.values()), "a preset names an option that does not exist"


def apply_preset(name: str, explicit: dict[str, Any]) -> dict[str, Any]:
    """Preset values overlaid with the options the user gave explicitly (those not None)."""
    if name not in PRESETS:
        raise DinbenchError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
    merged = dict(PRESETS[name])
    merged.update({k: v for k, v in explicit.items() if v is not None})
    return merged

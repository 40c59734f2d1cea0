"""The pooler registry: name -> class. A new pooler is one file here plus one line in REGISTRY.

The registry knows each pooler by its torch-free declaration (dinbench.poolers.about) and imports
the class, and torch with it, only when a pooler is built: listing poolers, parsing options and
``--help`` stay fast.

A pooler is addressed on the command line as ``name`` or ``name:variant``; attention poolers take
their normalisation as the variant (``din:none``, ``din:softmax``); a pooler whose variant is something
else names the constructor keyword it is passed as (``Entry.variant_option``). A pooler's other options
(``half_life``, ``attention_hidden``, ...) are declared with its description in dinbench.poolers.about (``About.options``) and are
keyword options of ``build``; the command line, experiment files and records take them from there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dinbench.errors import DinbenchError
from dinbench.options import Option
from dinbench.poolers import about
from dinbench.poolers.about import NORMALIZATIONS, About

if TYPE_CHECKING:
    from dinbench.poolers.base import Pooler


@dataclass(frozen=True)
class Entry:
    """A registered pooler: its class, or 'module:Class' under dinbench.poolers (imported on first
    use) with its declaration ``about``; a class given directly carries its own declaration."""

    target: Any  # type[Pooler] | str
    variants: tuple[str, ...] = ()  # the variants it accepts (``din:softmax``); first = default
    # ^ empty for poolers without a variant
    about: About | None = None
    variant_option: str = "normalization"  # the constructor keyword a variant is passed as
    # ^ attention poolers' variant is their normalisation; another pooler may name its own ('mode', ...)

    @property
    def cls(self) -> type[Pooler]:
        if not isinstance(self.target, str):
            return self.target
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(f"dinbench.poolers.{module}"), name)

    @property
    def info(self) -> About:
        """The declaration (description, options, traits), without importing a lazily registered class."""
        if self.about is not None:
            return self.about
        c = self.target
        return About(c.description, tuple(c.options), bool(c.uses_candidate), bool(c.uses_order),
                     bool(getattr(c, "cuda_graphs", True)), bool(getattr(c, "graphs_by_default", False)),
                     bool(getattr(c, "compiles_on_cpu", False)))


REGISTRY: dict[str, Entry] = {
    "none": Entry("none:NonePooler", about=about.NONE),
    "last": Entry("last:LastPooler", about=about.LAST),
    "sum": Entry("sum_pool:SumPooler", about=about.SUM),
    "average": Entry("average:AveragePooler", about=about.AVERAGE),
    "max": Entry("max_pool:MaxPooler", about=about.MAX),
    "time-decay": Entry("time_decay:TimeDecayPooler", about=about.TIME_DECAY),
    "dot": Entry("dot:DotPooler", ("softmax", "none"), about.DOT),
    "bilinear": Entry("bilinear:BilinearPooler", ("softmax", "none"), about.BILINEAR),
    "din": Entry("din:DINPooler", ("none", "softmax"), about.DIN),  # the paper's choice, 'none', is the default
    "multihead": Entry("multihead:MultiHeadPooler", ("softmax", "none"), about.MULTIHEAD),
    "bst": Entry("bst:BSTPooler", about=about.BST),
    # soft retrieval first: the SIM paper's better variant offline, and it needs no ids (hard: the deployed one)
    "sim": Entry("sim:SIMPooler", ("soft", "hard"), about.SIM, variant_option="mode"),
    "eta": Entry("eta:ETAPooler", about=about.ETA),
    "dien": Entry("dien:DIENPooler", about.EVOLUTIONS, about.DIEN, variant_option="evolution"),
}

# What `dinbench run` trains without --pooler: the floor (no history), the paper's two baselines of
# pooling without the candidate, and target attention with and without the softmax.
DEFAULT_POOLERS = ("none", "average", "time-decay", "dot:softmax", "din:none", "din:softmax")
BASELINE = "average"  # RelaImpr reference of run and report tables


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'din:softmax' -> ('din', 'softmax'); 'average' -> ('average', None). Validates both parts.

    A report's label ('time-decay(half_life=10)', see ``label``) reads as its spec."""
    name, _, variant = spec.split("(")[0].strip().partition(":")
    if name not in REGISTRY:
        raise DinbenchError(f"unknown pooler '{name}'; choose from {', '.join(REGISTRY)} (or 'all')")
    entry = REGISTRY[name]
    if not variant:
        return name, (entry.variants[0] if entry.variants else None)
    if variant not in entry.variants:
        valid = ", ".join(f"{name}:{v}" for v in entry.variants) or f"plain '{name}'"
        raise DinbenchError(f"pooler '{name}' has no variant '{variant}'; use {valid}")
    return name, variant


def canonical(spec: str) -> str:
    name, variant = parse_spec(spec)
    return f"{name}:{variant}" if variant else name


def expand(specs: str) -> list[str]:
    """A comma-separated --pooler value -> canonical specs. 'all' = every pooler with every variant."""
    out: list[str] = []
    for part in (p.strip() for p in specs.split(",")):
        if not part:
            continue
        if part == "all":
            for name, entry in REGISTRY.items():
                out += [f"{name}:{v}" for v in entry.variants] if entry.variants else [name]
        else:
            out.append(canonical(part))
    if not out:
        raise DinbenchError(f"no pooler given; choose from {', '.join(REGISTRY)} (or 'all')")
    return list(dict.fromkeys(out))


def uses_candidate(spec: str) -> bool:
    """Whether the pooler of ``spec`` attends to the candidate (``din:none`` yes, ``average`` no)."""
    return REGISTRY[parse_spec(spec)[0]].info.uses_candidate


def dice_attention(opts: dict[str, Any] | None) -> bool:
    """Whether a run's pooler options give the activation unit Dice (batch statistics over the real
    positions): what neither a captured step nor an automatic compile was measured with."""
    return any(v == "dice" for k, v in (opts or {}).items() if k.startswith("attention"))


def options(name: str) -> tuple[Option, ...]:
    """The options pooler ``name`` declares (besides its variant)."""
    return tuple(REGISTRY[name].info.options)


def all_options() -> dict[str, list[tuple[str, Option]]]:
    """option name -> [(pooler name, its declaration), ...] over the registry (a name may be shared)."""
    out: dict[str, list[tuple[str, Option]]] = {}
    for name in REGISTRY:
        for opt in options(name):
            out.setdefault(opt.name, []).append((name, opt))
    return out


def resolve_options(spec: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every option of the pooler of ``spec``: the ``given`` values (checked) over the declared defaults.

    Unknown names raise DinbenchError naming the pooler's options.
    """
    name, _ = parse_spec(spec)
    declared = {o.name: o for o in options(name)}
    for key in given:
        entry = REGISTRY[name]
        if entry.variants and key == entry.variant_option:
            shown = ", ".join(f"{name}:{v}" for v in entry.variants)
            raise DinbenchError(f"give the {key} of '{name}' as the variant ({shown}), not as an option")
        if key not in declared:
            raise DinbenchError(f"pooler '{name}' has no option '{key}'; its options: {', '.join(declared) or 'none'}")
    return {k: o.parse(given[k]) if k in given else o.default for k, o in declared.items()}


# Records written before the options were the poolers' own stored every pooler's options, by these names.
LEGACY_NAMES = {"age_unit": "decay_age", "learn": "learn_decay", "hidden": "attention_hidden",
                "activation": "attention_activation", "outer": "outer_product"}
LEGACY_DEFAULTS = {"half_life": 5.0, "age_unit": "position", "learn": False, "heads": 4, "hidden": [80, 40],
                   "activation": "sigmoid", "outer": False}  # what those records held by default


def options_from_record(spec: str, stored: dict[str, Any]) -> dict[str, Any]:
    """A record's ``pooler_options`` (this version's, or an older record's) -> the options of ``spec``'s pooler."""
    own = {o.name for o in options(parse_spec(spec)[0])}
    renamed = {LEGACY_NAMES.get(k, k): v for k, v in stored.items()}
    return {k: v for k, v in renamed.items() if k in own}


def label(spec: str, opts: dict[str, Any]) -> str:
    """``spec`` plus its options that differ from their defaults: 'time-decay(half_life=10)', 'din:none'."""
    name, _ = parse_spec(spec)
    changed = []
    for o in options(name):
        if o.name in opts and o.parse(opts[o.name]) != o.default:
            value = o.parse(opts[o.name])
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value).lower() if isinstance(value, bool) else str(value)
            changed.append(f"{o.name}={shown}")
    return f"{canonical(spec)}({', '.join(changed)})" if changed else canonical(spec)


def build(spec: str, dim: int, **opts) -> Pooler:
    """Instantiate the pooler for ``spec`` over keys of width ``dim``; ``opts`` (its options) over the defaults.

    build("time-decay", 64, half_life=10.0); build("din:softmax", 64, attention_activation="dice").
    Unknown options and invalid values raise DinbenchError.
    """
    name, variant = parse_spec(spec)
    values = resolve_options(spec, opts)
    if variant is not None:
        values[REGISTRY[name].variant_option] = variant
    try:
        return REGISTRY[name].cls(dim, **values)
    except ValueError as e:
        raise DinbenchError(f"pooler '{canonical(spec)}': {e}") from None


def __getattr__(name: str):
    if name == "Pooler":  # the base class, with torch, only when asked for
        from dinbench.poolers.base import Pooler

        return Pooler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REGISTRY", "DEFAULT_POOLERS", "NORMALIZATIONS", "Pooler", "build", "canonical", "expand", "options", "all_options", "resolve_options", "label", "parse_spec", "uses_candidate"]

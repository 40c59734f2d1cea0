"""The pooler registry: name -> class. A new pooler is one file here plus one line in REGISTRY.

A pooler is addressed on the command line as ``name`` or ``name:variant``; attention poolers take
their normalisation as the variant (``din:none``, ``din:softmax``). Other constructor options
(``half_life``, ``activation``, ...) are keyword options of ``build``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from dinbench.errors import DinbenchError

from dinbench.poolers.base import NORMALIZATIONS, Pooler
from dinbench.poolers.average import AveragePooler
from dinbench.poolers.bilinear import BilinearPooler
from dinbench.poolers.din import DINPooler
from dinbench.poolers.dot import DotPooler
from dinbench.poolers.last import LastPooler
from dinbench.poolers.max_pool import MaxPooler
from dinbench.poolers.multihead import MultiHeadPooler
from dinbench.poolers.none import NonePooler
from dinbench.poolers.sum_pool import SumPooler
from dinbench.poolers.time_decay import TimeDecayPooler


@dataclass(frozen=True)
class Entry:
    cls: type[Pooler]
    variants: tuple[str, ...] = ()  # normalisations it accepts; first = default
    # ^ empty for poolers without a normalisation choice


REGISTRY: dict[str, Entry] = {
    "none": Entry(NonePooler),
    "last": Entry(LastPooler),
    "sum": Entry(SumPooler),
    "average": Entry(AveragePooler),
    "max": Entry(MaxPooler),
    "time-decay": Entry(TimeDecayPooler),
    "dot": Entry(DotPooler, variants=("softmax", "none")),
    "bilinear": Entry(BilinearPooler, variants=("softmax", "none")),
    "din": Entry(DINPooler, variants=("none", "softmax")),  # the paper's choice, 'none', is the default
    "multihead": Entry(MultiHeadPooler, variants=("softmax", "none")),
}

# What `dinbench run` trains without --pooler: the floor (no history), the paper's two baselines of
# pooling without the candidate, and target attention with and without the softmax.
DEFAULT_POOLERS = ("none", "average", "time-decay", "dot:softmax", "din:none", "din:softmax")
BASELINE = "average"  # RelaImpr reference of run and report tables


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'din:softmax' -> ('din', 'softmax'); 'average' -> ('average', None). Validates both parts."""
    name, _, variant = spec.strip().partition(":")
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
    return bool(REGISTRY[parse_spec(spec)[0]].cls.uses_candidate)


def option_names(name: str) -> list[str]:
    """The keyword options a registered pooler's constructor takes (besides dim and the variant)."""
    params = inspect.signature(REGISTRY[name].cls.__init__).parameters
    return [p for p in params if p not in ("self", "dim", "normalization")]


def build(spec: str, dim: int, **options) -> Pooler:
    """Instantiate the pooler for ``spec`` over keys of width ``dim``; ``options`` go to its constructor.

    build("time-decay", 64, half_life=10.0); build("din:softmax", 64, activation="dice", outer=True).
    Unknown options and invalid values raise DinbenchError.
    """
    name, variant = parse_spec(spec)
    accepted = option_names(name)
    for key in options:
        if key == "normalization" and REGISTRY[name].variants:
            raise DinbenchError(f"give the normalisation of '{name}' as the variant ({name}:softmax, {name}:none), not as an option")
        if key not in accepted:
            raise DinbenchError(f"pooler '{name}' has no option '{key}'; its options: {', '.join(accepted) or 'none'}")
    if variant is not None:
        options["normalization"] = variant
    try:
        return REGISTRY[name].cls(dim, **options)
    except ValueError as e:
        raise DinbenchError(f"pooler '{canonical(spec)}': {e}") from None


__all__ = ["REGISTRY", "DEFAULT_POOLERS", "NORMALIZATIONS", "Pooler", "build", "canonical", "expand", "option_names", "parse_spec", "uses_candidate"]

"""The pooler registry: name -> class. A new pooler is one file here plus one line in REGISTRY.

A pooler is addressed on the command line as ``name`` or ``name:variant``; attention poolers take
their normalisation as the variant (``din:none``, ``din:softmax``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dinbench.errors import DinbenchError
from dinbench.poolers.average import AveragePooler
from dinbench.poolers.base import NORMALIZATIONS, Pooler
from dinbench.poolers.din import DINPooler


@dataclass(frozen=True)
class Entry:
    cls: type[Pooler]
    variants: tuple[str, ...] = ()  # normalisations it accepts; first = default
    # ^ empty for poolers without a normalisation choice


REGISTRY: dict[str, Entry] = {
    "average": Entry(AveragePooler),
    "din": Entry(DINPooler, variants=("none", "softmax")),
}

DEFAULT_POOLERS = ("average", "din")


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


def build(spec: str, dim: int) -> Pooler:
    """Instantiate the pooler for ``spec`` over keys of width ``dim``."""
    name, variant = parse_spec(spec)
    entry = REGISTRY[name]
    if variant is None:
        return entry.cls(dim)
    return entry.cls(dim, normalization=variant)


__all__ = ["REGISTRY", "DEFAULT_POOLERS", "NORMALIZATIONS", "Pooler", "build", "canonical", "expand", "parse_spec"]

"""What an option is: one declaration with its name, default, help, type, choices and check.

Ground floor (imports nothing else of dinbench but the error type). ``dinbench.config`` declares
the run options with it, each pooler declares its own (``Pooler.options``), and everything else
derives from those declarations: the ``run``/``sweep`` command-line options and their ``--help``,
experiment files, grid expansion, the record's config and the validation, which happens once,
where a value enters (command line, file or record).

    Option("half_life", 5.0, "time-decay: half-life in positions", float, check=positive_number,
           search=log_uniform(1.0, 100.0))

``search`` declares the option's range in ``dinbench tune``'s default search space (dinbench.space,
docs/tuning.md); options without one keep their value in every trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from dinbench.errors import DinbenchError

# A check returns None when the value is fine, else what it must be ("must be at least 1").
Check = Callable[[Any], "str | None"]


def at_least_one(v) -> str | None:
    return None if v >= 1 else "must be at least 1"


def zero_or_more(v) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def positive_number(v) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a positive number"


def positive(v) -> str | None:
    return None if v > 0 else "must be positive"


def fraction(v) -> str | None:
    return None if 0 < v <= 1 else "must lie in (0, 1]"


def sizes_at_least_one(v) -> str | None:
    return None if all(h >= 1 for h in v) else "sizes must be at least 1"


@dataclass(frozen=True)
class Search:
    """A search range of ``dinbench tune``: ``log`` (log-uniform float in [low, high]), ``uniform``
    (float in [low, high]), ``int`` (integer in [low, high]) or ``choice`` (one of ``values``)."""

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + " | ".join(",".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in self.values)
        return f"{'log-uniform' if self.kind == 'log' else self.kind} in [{self.low:g}, {self.high:g}]"


def log_uniform(low: float, high: float) -> Search:
    return Search("log", float(low), float(high))


def uniform(low: float, high: float) -> Search:
    return Search("uniform", float(low), float(high))


def int_range(low: int, high: int) -> Search:
    return Search("int", int(low), int(high))


def choice(*values: Any) -> Search:
    return Search("choice", values=tuple(values))


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: int, float, str, bool or tuple (a tuple of ints, '200,80' on the command line).

    ``axis``: a grid axis (``dataset``, ``pooler``, ``architecture``): the command line and experiment
    files take several values, one run config each. ``cli=False``: not a command-line option.
    ``search``: its range in ``dinbench tune``'s default search space (None: not searched).
    """

    name: str
    default: Any
    help: str
    kind: type = str
    choices: tuple[str, ...] = ()
    check: Check | None = None
    axis: bool = False
    cli: bool = True
    search: Search | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def describe_default(self) -> str:
        """'[default: 10]', as Typer shows a default (a flag's default reads as the flag: 'no-bucket').

        Plain text: escape it (rich.markup.escape) where rich markup renders it, as in ``--help``."""
        value = self.default
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
        elif isinstance(value, bool):
            value = self.flag[2:] if value else "no-" + self.flag[2:]
        return f"[default: {value}]"

    def parse(self, value: Any) -> Any:
        """``value`` (from the command line, a file or a record) as this option's type, checked.

        Raises DinbenchError in one line naming the option, e.g. "--epochs must be at least 1 (got 0)".
        """
        value = self._coerce(value)
        if self.choices and value not in self.choices:
            raise DinbenchError(f"unknown {self.flag} '{value}'; choose from {', '.join(self.choices)}")
        problem = self.check(value) if self.check is not None else None
        if problem:
            shown = list(value) if isinstance(value, tuple) else value
            raise DinbenchError(f"{self.flag} {problem} (got {shown})")
        return value

    def _coerce(self, value: Any) -> Any:
        kind = self.kind
        try:
            if kind is bool:
                if isinstance(value, bool):
                    return value
                raise TypeError
            if kind is tuple:
                if isinstance(value, str):
                    return tuple(int(x) for x in value.split(",") if x.strip())
                if isinstance(value, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in value):
                    return tuple(int(x) for x in value)
                raise TypeError
            if kind is int:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                return int(value)
            if kind is float:
                if isinstance(value, bool):
                    raise TypeError
                return float(value)
            if not isinstance(value, str):
                raise TypeError
            return value
        except (TypeError, ValueError):
            raise DinbenchError(f"{self.flag} takes {_KIND_WORDS[kind]} (got {value!r})") from None


_KIND_WORDS = {bool: "true or false", tuple: "comma-separated integers like 200,80", int: "an integer",
               float: "a number", str: "a text value"}

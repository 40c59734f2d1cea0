"""Small text helpers shared by the tables (``dinbench.report``) and the report directory
(``dinbench.publish``, ``dinbench.figures``): mean ± std cells and markdown tables."""

from __future__ import annotations

import numpy as np


def pm(mean: float, std: float, digits: int = 4, missing: str | None = "—") -> str:
    """``mean ± std`` with ``digits`` decimals; the mean alone where the std is undefined (one seed).

    A non-finite mean reads ``missing``; with ``missing=None`` it is formatted like any number
    (what the result tables have always shown).
    """
    if missing is not None and not np.isfinite(mean):
        return missing
    return f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table (no trailing newline)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)

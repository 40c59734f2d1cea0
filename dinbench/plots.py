"""What every report figure draws with: matplotlib (Agg: no display needed), one style, one palette, one save.

The figures themselves live in ``dinbench.figures`` (one module each, with its ``plot_*``
function). ``save`` writes ``stem.png`` (200 dpi) and ``stem.svg`` atomically and returns both
paths. Sizes fit a one-column paper figure at 9-10 pt text; colours are the colour-blind-safe
Okabe-Ito set, and a pooler keeps its colour in every figure (``style``).
"""

from __future__ import annotations

from pathlib import Path

from dinbench.atomic import write_atomic

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
PALE = ("#F0E442",)  # Okabe-Ito's yellow: too faint for a line on white
# 24 distinct colours for up to 24 poolers, each dark enough for a thin line on white (contrast >= 2:1):
# Okabe-Ito without its yellow, then Paul Tol's darker "muted" tones, four of his "vibrant" ones, then
# three of his "high-contrast"/"medium-contrast" darks and a grey
PALETTE = [c for c in OKABE_ITO if c not in PALE] + ["#882255", "#332288", "#117733", "#999933", "#AA4499",
                                                     "#44AA99", "#661100", "#6699CC", "#225555",
                                                     "#CC3311", "#0077BB", "#EE3377", "#009988",
                                                     "#004488", "#994455", "#997700", "#555555"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def pyplot():
    """matplotlib.pyplot on the Agg backend, with the report's font sizes and SVG settings."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 7.5,
                         "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "dinbench", "svg.fonttype": "none"})
    return plt


def style(names) -> dict[str, tuple[str, str, str]]:
    """pooler -> (colour, marker, line style), fixed by the pooler's place in ``--pooler all``, so a
    pooler has the same look in every figure (24 colours; markers repeat past eight, lines then dashed)."""
    from dinbench import poolers

    order = {p: i for i, p in enumerate(poolers.expand("all"))}
    out = {}
    for p in names:
        i = order.get(p, len(order) + sorted(names).index(p))
        out[p] = (PALETTE[i % len(PALETTE)], MARKERS[i % 8], "-" if (i // 8) % 2 == 0 else "--")
    return out


def save(fig, stem: Path) -> list[Path]:
    """Write ``fig`` to ``stem.png`` and ``stem.svg`` (no date: same figure, same bytes), close it."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, kw in (("png", {"dpi": 200}), ("svg", {"metadata": {"Date": None}})):
        path = stem.with_suffix(f".{ext}")
        write_atomic(path, lambda tmp, ext=ext, kw=kw: fig.savefig(tmp, format=ext, bbox_inches="tight", **kw))
        paths.append(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths

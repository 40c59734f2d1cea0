"""The report's figures, one module each: what to compute (via ``dinbench.analysis``), how to draw
it (with the shared helpers of ``dinbench.plots``), its caption and its small table.

``publish.make_figures`` draws every entry of ``FIGURES``, in order, for every comparable group;
a section of report.md lists the tables, then the figures, then the notes, each in this order.

Adding a figure touches one new file and one entry of ``FIGURES``. For example
``dinbench/figures/epochs.py``::

    from dinbench.figures.base import Figure
    from dinbench.plots import pyplot, save

    class Epochs(Figure):
        name, step = "epochs", "selected epochs"   # plots/epochs_GROUP.png; progress line
        caption = "The epoch selected on valid, per run."
        def compute(self, group):                  # None: nothing to draw here
            return group.runs if len(group.runs) else None
        def draw(self, runs, stem, group):
            plt = pyplot(); fig, ax = plt.subplots(figsize=(5.0, 3.0))
            ax.hist(runs["best_epoch"]); return save(fig, stem)

and ``Epochs()`` added to ``FIGURES`` below (``table`` is optional; see ``base.Figure``).
"""

from __future__ import annotations

from dinbench.figures.attention_case import AttentionCase
from dinbench.figures.base import Figure, Group, Section
from dinbench.figures.gauc_by_length import GaucByLength
from dinbench.figures.intensity import Intensity
from dinbench.figures.learning_curves import LearningCurves
from dinbench.figures.relevant_attention import RelevantAttention
from dinbench.figures.tuning_trials import TuningTrials

FIGURES: list[Figure] = [GaucByLength(), LearningCurves(), Intensity(), AttentionCase(), RelevantAttention(),
                         TuningTrials()]

__all__ = ["FIGURES", "Figure", "Group", "Section"]

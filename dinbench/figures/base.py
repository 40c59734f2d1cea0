"""What every report figure shares: the comparable group it is drawn for, the section it adds to,
and the ``Figure`` base class (compute, draw, caption, table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from dinbench import poolers
from dinbench.records import Loaded

# (path of the PNG relative to the report root, caption)
Drawn = tuple[str, str]


@dataclass
class Section:
    """One comparable group's figures and small tables; notes are lines for the reader (what was
    left out, and why)."""

    title: str
    figures: list[Drawn] = field(default_factory=list)
    tables: list[tuple[str, str]] = field(default_factory=list)  # (heading, markdown)
    notes: list[str] = field(default_factory=list)


def slug(*parts: str) -> str:
    """A file-name part: ':', '/' and ' ' become '-', parts are joined with '_' (empty ones dropped)."""
    return "_".join(p.replace(":", "-").replace("/", "-").replace(" ", "-") for p in parts if p)


def attention_poolers(names) -> list[str]:
    """The poolers of ``names`` (in their order) whose weights depend on the candidate."""
    return [p for p in names if poolers.uses_candidate(p)]


@dataclass
class Group:
    """One comparable group (dataset, protocol, configuration, architecture) being drawn.

    ``runs``: its rows of ``report.runs_frame``; ``table``: its rows of ``report.summarize``;
    ``by_run``: run id -> loaded record (all groups); ``tag``: the file-name part of the group.
    """

    dataset: str
    label: str
    tag: str
    runs: pd.DataFrame
    table: pd.DataFrame
    by_run: dict[Any, Loaded]
    section: Section
    plot_dir: Path
    root: Path
    load_prepared: Callable[[str, str], object | None]
    progress: Callable[[str], None] = lambda _: None
    _prepared: list = field(default_factory=list)  # [prepared or None] once asked

    @property
    def attention_poolers(self) -> list[str]:
        return attention_poolers(self.runs["pooler"].unique())

    def step(self, what: str) -> None:
        self.progress(f"{self.label}: {what}")

    def stem(self, name: str, *extra: str) -> Path:
        """Where a figure of this group goes: ``plot_dir/name_tag[_extra]`` (.png and .svg added)."""
        return self.plot_dir / "_".join([f"{name}_{self.tag}", *(slug(e) for e in extra)])

    def add_figure(self, paths: list[Path], caption: str) -> None:
        self.section.figures.append((paths[0].relative_to(self.root).as_posix(), caption))

    def prepared(self):
        """The prepared dataset the group's runs were trained on (same fingerprint), or None.

        Asked once per group; when it is missing, one note says how to get the figures that need it.
        """
        if not self._prepared:
            fingerprint = str(self.runs["fingerprint"].iloc[0])
            found = self.load_prepared(self.dataset, fingerprint)
            self._prepared.append(found)
            if found is None:
                self.section.notes.append(
                    f"attention case study left out: the prepared dataset '{self.dataset}' (fingerprint "
                    f"{fingerprint[:12]}) is not in the data folder; prepare it again (or pass --data-dir) to draw it")
        return self._prepared[0]


class Figure:
    """One report figure, drawn once per comparable group.

    A subclass sets ``name`` (the file name: ``plots/NAME_GROUP.png`` and ``.svg``), ``step`` (the
    progress line) and ``caption``, and implements ``compute`` (the data, from the group's runs via
    ``dinbench.analysis``; None when there is nothing to draw, after adding a note if the reader
    should know why) and ``draw`` (the picture, saved with ``plots.save``). ``table`` adds a small
    markdown table under the section's heading. A figure that is not one picture per group (the
    attention case study: one per pooler) overrides ``add_to``.
    """

    name = ""
    step = ""
    caption = ""

    def applies(self, group: Group) -> bool:
        """Whether to try this figure for ``group`` at all (before its progress line)."""
        return True

    def compute(self, group: Group) -> Any | None:
        raise NotImplementedError

    def draw(self, data: Any, stem: Path, group: Group) -> list[Path]:
        raise NotImplementedError

    def table(self, data: Any) -> tuple[str, str] | None:
        """(heading, markdown) of the figure's small table, or None."""
        return None

    def add_to(self, group: Group) -> None:
        """Compute, draw, caption and tabulate this figure for ``group`` into ``group.section``."""
        if not self.applies(group):
            return
        group.step(self.step)
        data = self.compute(group)
        if data is None:
            return
        group.add_figure(self.draw(data, group.stem(self.name), group), self.caption)
        table = self.table(data)
        if table is not None:
            group.section.tables.append(table)

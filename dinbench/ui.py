"""What the terminal shows while runs train: the progress display and the one-line summaries.

Shared by ``dinbench run``, ``sweep`` and ``run --resume`` (dinbench.cli), so each wires progress
the same way. Nothing here decides anything; it only renders.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dinbench.config import RunConfig


def dataset_line(prepared, protocol: str) -> str:
    c = prepared.manifest["counts"]
    return (f"dataset [bold]{prepared.name}[/] ({c['users']:,} users, {c['items']:,} items; "
            f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples), "
            f"protocol {protocol}")


def run_label(cfg: RunConfig, with_dataset: bool = False) -> str:
    label = f"{cfg.pooler} seed {cfg.seed}" + (" two-tower" if cfg.architecture == "two-tower" else "")
    return f"{cfg.dataset} {label}" if with_dataset else label


def print_finished(target: Console, label: str, run_dir: Path, record: dict) -> None:
    t = record["test"]
    target.print(
        f"{label}: test AUC {t['auc']:.4f}  GAUC {t['gauc']:.4f}  best epoch {record['best_epoch']}  "
        f"{record['train_rows_per_s']:,.0f} rows/s  {record['wall_seconds']:.1f}s -> {run_dir}/record.json",
        soft_wrap=True,
    )


class RunBoard:
    """A live display: one overall bar and one bar per run in progress (``run(label)`` gives its
    progress callback ``(stage, done, total)``)."""

    def __init__(self, progress: Progress, total: int, title: str) -> None:
        self.progress, self.console = progress, progress.console
        self.overall = progress.add_task("", total=total, run=title)

    @contextmanager
    def run(self, label: str) -> Iterator[Callable[[str, int, int], None]]:
        task = self.progress.add_task("", total=1, run=label)

        def update(stage: str, done: int, total: int) -> None:
            self.progress.update(task, description=stage, completed=done, total=total)

        try:
            yield update
        finally:
            self.progress.remove_task(task)

    def advance(self) -> None:
        self.progress.advance(self.overall)


@contextmanager
def run_board(console: Console, total: int, title: str = "all") -> Iterator[RunBoard]:
    with Progress(TextColumn("[bold]{task.fields[run]}"), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
                  disable=console.quiet) as progress:
        yield RunBoard(progress, total, title)

"""What the terminal shows: the progress displays, the one-line summaries and the Rich tables.

Shared by the commands of dinbench.cli (``run``, ``sweep``, ``run --resume``, ``report``,
``datasets``), so each wires progress and prints tables the same way. Nothing here decides
anything; it only renders what the library computed.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dinbench import report as report_mod
from dinbench.config import RunConfig
from dinbench.records import Loaded


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


def stats_table(stats) -> Table:
    table = Table(title=stats.title)
    table.add_column("count")
    table.add_column("value", justify="right")
    table.add_column("DIN paper", justify="right")
    for row in stats.rows:
        table.add_row(*row)
    return table


def print_table(console: Console, table, title: str, baseline: str) -> None:
    if table.empty:
        console.print("no completed runs")
        return
    header, rows, constants = report_mod.display_rows(table)
    t = Table(title=title, caption=report_mod.describe_constants(constants, baseline))
    for h in header:
        t.add_column(h, justify="left" if h in report_mod.LABEL_COLUMNS else "right",
                     no_wrap=h in ("test AUC", "test GAUC", "pooler", "95% CI (GAUC)", "vs baseline", "vs best"))
    for r in rows:
        t.add_row(*r)
    console.print(t)


def run_sweep(console: Console, sweep_mod, plan, todo, root, out, shipped, with_dataset: bool) -> tuple[list[Loaded], int]:
    """Run the sweep's remaining configs under one progress bar, a line per finished or failed run."""
    finished: list[Loaded] = []
    failures = 0
    if not todo.configs:
        return finished, failures
    with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        bar = progress.add_task("", total=len(todo.configs))

        def on_done(cfg, outcome) -> None:
            nonlocal failures
            progress.advance(bar)
            label = run_label(cfg, with_dataset)
            if outcome.error is not None:
                failures += 1
                progress.console.print(f"[red]{escape(label)}: failed[/]: {escape(outcome.error)}", soft_wrap=True,
                                       highlight=False)
                return
            print_finished(progress.console, label, outcome.run_dir, outcome.record)
            finished.append(Loaded(outcome.run_dir / "record.json", outcome.record))

        sweep_mod.execute(plan, todo.configs, root, out, on_done, shipped, todo.resume)
    return finished, failures


def write_table_text(console: Console, err: Console, table, fmt: str, baseline: str, paper: bool, output: Path | None) -> None:
    from dinbench import publish

    text, note = publish.table_text(table, fmt, baseline, paper)
    if note:
        err.print(f"[yellow]note:[/] {note}")
    if output is None:
        console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        from dinbench.atomic import write_atomic
        write_atomic(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        console.print(f"wrote {output}")


def print_paper(console: Console, table) -> None:
    from dinbench import paper as paper_mod
    from dinbench import publish

    for title, rows in publish.paper_side_by_side(table):
        if rows is None:
            console.print(title)
            continue
        t = Table(title=title)
        for h in publish.PAPER_COLUMNS:
            t.add_column(h, justify="right" if h in ("GAUC", "AUC") else "left")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    console.print(paper_mod.PROTOCOL_NOTE, highlight=False)


def write_report_files(console: Console, err: Console, loaded, runs, table, baseline, paper, report_dir, plot_dir, data_root, results_root) -> None:
    """--output DIR and/or --plots DIR, with a progress line per figure."""
    from dinbench import publish

    load_prepared = publish.PreparedCache(data_root)
    with Progress(TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("figures")

        def step(what: str) -> None:
            bar.update(task, description=what)

        if report_dir is not None:
            path = publish.write_report_dir(report_dir, loaded, runs, table, baseline, with_paper=paper,
                                            results_dir=results_root, load_prepared=load_prepared, progress=step)
            console.print(f"wrote {path} (tables, plots/ and report.md in {report_dir}/)")
        if plot_dir is not None:
            sections = publish.make_figures(loaded, runs, table, plot_dir, plot_dir, load_prepared, progress=step)
            n = sum(len(s.figures) for s in sections)
            console.print(f"wrote {n} plot(s) as PNG and SVG to {plot_dir}/")
            for s in sections:
                for note in s.notes:
                    err.print(f"[yellow]note:[/] {escape(s.title)}: {escape(note)}", highlight=False, soft_wrap=True)

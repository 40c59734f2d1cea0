"""What the terminal shows: the progress displays, the one-line summaries and the Rich tables.

Imports of pandas and the report code happen inside the functions that print tables, so a command's
``--help`` stays fast. Shared by the commands of dinbench.cli (``run``, ``sweep``, ``run --resume``, ``report``,
``datasets``), so each wires progress and prints tables the same way. Nothing here decides
anything; it only renders what the library computed.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from dinbench import poolers
from dinbench.records import Loaded

if TYPE_CHECKING:
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


EPOCH = re.compile(r"epoch (\d+)/(\d+)")  # how dinbench.train.progress_stage names the epoch being trained


class EtaColumn(TimeRemainingColumn):
    """'ETA 0:01:23': the time left at the task's recent speed (for a run: to its last epoch, so early
    stopping may end it sooner)."""

    def render(self, task) -> Text:
        shown = super().render(task)
        return Text("ETA ", style=shown.style) + shown


def _columns(*first) -> tuple:
    return (*first, BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn(), EtaColumn())


class RunLine:
    """One run's line on a RunBoard; called as the run's progress callback ``(stage, done, total)``."""

    def __init__(self, progress: Progress, label: str) -> None:
        self.progress, self.started = progress, False
        self.task = progress.add_task("", total=None, run=label, count="")

    def __call__(self, stage: str, done: int, total: int) -> None:
        m = EPOCH.match(stage)
        epoch, epochs = (int(m[1]), int(m[2])) if m else (1, 1)
        at = dict(description=stage, completed=(epoch - 1) * total + done, total=epochs * total)
        if not self.started:  # a resumed run starts mid-way: its speed counts from here
            self.progress.reset(self.task, **at)  # (reset keeps the task's fields: none given)
            self.started = True
        self.progress.update(self.task, **at, count=f"{done}/{total}")

    def close(self) -> None:
        self.progress.remove_task(self.task)


class RunBoard:
    """A live display: one overall bar and one line per run in progress (``run(label)`` gives its
    progress callback ``(stage, done, total)``). A run's line shows its stage (the epoch, and the valid
    GAUC of the last epoch scored), the batches of this epoch, and its elapsed time and ETA over all its
    epochs; the overall line counts the runs done and gives the ETA of them all."""

    def __init__(self, progress: Progress, total: int, title: str) -> None:
        self.progress, self.console = progress, progress.console
        self.total, self.done = total, 0
        self.overall = progress.add_task("", total=total, run=title, count=f"0/{total} runs")

    def add_run(self, label: str) -> RunLine:
        return RunLine(self.progress, label)

    @contextmanager
    def run(self, label: str) -> Iterator[Callable[[str, int, int], None]]:
        line = self.add_run(label)
        try:
            yield line
        finally:
            line.close()

    def advance(self) -> None:
        self.done += 1
        self.progress.update(self.overall, advance=1, count=f"{self.done}/{self.total} runs")


@contextmanager
def run_board(console: Console, total: int, title: str = "all", clock: Callable[[], float] | None = None) -> Iterator[RunBoard]:
    """A RunBoard on ``console``; ``clock`` (seconds) replaces the real clock (tests)."""
    with Progress(*_columns(TextColumn("[bold]{task.fields[run]}"), TextColumn("{task.description}")),
                  console=console, transient=True, disable=console.quiet, get_time=clock) as progress:
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
    from dinbench import report as report_mod

    header, rows, constants = report_mod.display_rows(table)
    t = Table(title=title, caption=report_mod.describe_constants(constants, baseline))
    for h in header:
        t.add_column(h, justify="left" if h in report_mod.LABEL_COLUMNS else "right",
                     no_wrap=h in ("test AUC", "test GAUC", "pooler", "95% CI (GAUC)", "vs baseline", "vs best"))
    for r in rows:
        t.add_row(*r)
    console.print(t)


def print_results(console: Console, loaded: list[Loaded], title: str, out: Path) -> None:
    """The table of the runs just made (run, sweep), and where the records are."""
    from dinbench import report as report_mod

    table = report_mod.summarize(report_mod.runs_frame(loaded), baseline=poolers.BASELINE)
    print_table(console, table, title, poolers.BASELINE)
    console.print(f"records in {out}/ - the table over all runs: dinbench report")


def print_run_plan(console: Console, exp, planned, where: str, out: Path) -> None:
    where = f"; {where}" if where else ""
    console.print(f"{len(planned.configs)} run(s): {', '.join(planned.specs)} x {exp.seeds} seed(s), preset "
                  f"{exp.preset}, {' and '.join(planned.archs)}{where}; records go to {out}/")
    if planned.two_tower_skipped:
        console.print(f"two-tower skips {', '.join(planned.two_tower_skipped)}: they attend to the candidate, "
                      "which the user tower never sees")


def print_sweep_plan(console: Console, exp, planned, todo, plan, out: Path, n_datasets: int) -> None:
    console.print(
        f"{len(planned.configs)} run(s) in the grid: {', '.join(exp.specs)} x {exp.seeds} seed(s) x {n_datasets} "
        f"dataset(s), {' and '.join(exp.archs)}; {len(todo.existing)} already done in {out}/ (skipped), "
        f"{len(todo.configs)} to run on {plan.describe()}; records go to {out}/")
    if planned.two_tower_skipped:
        console.print(f"two-tower skips {', '.join(planned.two_tower_skipped)}: they attend to the candidate")
    if any(todo.resume):
        console.print(f"{sum(map(bool, todo.resume))} interrupted run(s) continue from their checkpoints")


def run_sweep(console: Console, sweep_mod, plan, todo, root, out, shipped, with_dataset: bool) -> int:
    """Run the sweep's remaining configs with progress, then print its table; returns the number that failed."""
    started = time.time()
    finished, failures = _sweep_progress(console, sweep_mod, plan, todo, root, out, shipped, with_dataset)
    console.print(f"{len(finished)} run(s) done, {failures} failed, {len(todo.existing)} skipped in {time.time() - started:.1f}s")
    print_results(console, todo.existing + finished,
                  f"results of this sweep ({len(finished)} new, {len(todo.existing)} existing run(s))", out)
    return failures


def _sweep_progress(console: Console, sweep_mod, plan, todo, root, out, shipped, with_dataset: bool) -> tuple[list[Loaded], int]:
    """Run the sweep's remaining configs on a RunBoard (a line per running run where the executor
    reports progress: local, not Ray), a line printed per finished or failed run."""
    finished: list[Loaded] = []
    failures = 0
    if not todo.configs:
        return finished, failures
    with run_board(console, len(todo.configs), "sweep") as board:
        lines: dict[int, RunLine] = {}
        ended: set[int] = set()
        index_of = {id(cfg): i for i, cfg in enumerate(todo.configs)}

        def on_progress(index: int, stage: str, done: int, total: int) -> None:
            if index in ended:  # a late report of a run already over
                return
            if index not in lines:
                lines[index] = board.add_run(run_label(todo.configs[index], with_dataset))
            lines[index](stage, done, total)

        def on_done(cfg, outcome) -> None:
            nonlocal failures
            index = index_of.get(id(cfg))
            ended.add(index)
            if index in lines:
                lines.pop(index).close()
            board.advance()
            label = run_label(cfg, with_dataset)
            if outcome.error is not None:
                failures += 1
                board.console.print(f"[red]{escape(label)}: failed[/]: {escape(outcome.error)}", soft_wrap=True,
                                    highlight=False)
                return
            print_finished(board.console, label, outcome.run_dir, outcome.record)
            finished.append(Loaded(outcome.run_dir / "record.json", outcome.record))

        sweep_mod.execute(plan, todo.configs, root, out, on_done, shipped, todo.resume, on_progress=on_progress)
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


def tabulate(err: Console, out: Path, baseline: str, dataset: str | None, pooler: str | None):
    """The records in ``out`` and their table, with the warnings and notes printed."""
    from dinbench import report as report_mod
    from dinbench.records import load_records

    loaded, warnings = load_records(out)
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    runs, table, notes = report_mod.build(report_mod.runs_frame(loaded), baseline, dataset, pooler, out)
    for note in notes:
        err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    return loaded, runs, table


def print_poolers(console: Console) -> None:
    table = Table(title="poolers")
    for col in ("name", "variants (normalisation)", "options", "description"):
        table.add_column(col)
    for name, entry in poolers.REGISTRY.items():
        variants = ", ".join(f"{name}:{v}" + (" (default)" if i == 0 else "") for i, v in enumerate(entry.variants))
        opts = ", ".join(f"{o.flag} {o.describe_default()[1:-1]}" for o in poolers.options(name))
        table.add_row(name, variants or "—", opts or "—", escape(entry.info.description))
    console.print(table)
    console.print(f"default set of `dinbench run`: {', '.join(poolers.DEFAULT_POOLERS)}; 'all' = every pooler and variant")


def print_datasets(console: Console, root: Path, embedded: dict[str, str], stats: bool) -> None:
    """The prepared datasets (with their counts under ``stats``), else also the ones to download."""
    from dinbench.prepared import contract
    from dinbench.prepared import stats as stats_mod
    from dinbench.sources import registry

    names = stats_mod.known(root, embedded)
    table = Table(title=f"datasets in {root}")
    for col in stats_mod.LISTING_COLUMNS:
        table.add_column(col, justify="right" if col in stats_mod.NUMERIC_COLUMNS else "left", no_wrap=col == "name")
    for row in stats_mod.listing(root, names):
        table.add_row(*row)
    console.print(table)
    if stats:
        for name in names:
            if contract.is_prepared(root, name):
                console.print(stats_table(stats_mod.dataset_stats(root, name)))
        return
    more = Table(title="real datasets: dinbench download NAME (--from PATH for files you have)")
    more.add_column("name")
    more.add_column("about")
    for spec in registry.REGISTRY.values():
        if spec.name not in names:
            more.add_row(spec.name + (" *" if spec.paper else ""), spec.about)
    more.caption = "* a dataset of the DIN paper"
    console.print(more)

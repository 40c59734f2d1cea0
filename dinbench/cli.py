"""The ``dinbench`` command line: download / import data, run poolers, report results.

Every command's ``--help`` is its manual. This module parses, calls the library and prints; user
errors print one line and exit with status 2. The options of ``run`` and ``sweep`` are generated
from their one declaration (dinbench.config, each pooler's ``options``, dinbench.grid).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from dinbench import __version__, paths, poolers, ui
from dinbench.errors import DinbenchError
from dinbench.formats import FORMATS, TABLE_SUFFIXES
from dinbench.records import Loaded
from dinbench.cli_options import Command, Group, default_note, experiment_options, one_line_errors
from dinbench.sources.local import EMBEDDED, load_or_prepare, make_synthetic, prepared_lines

app = typer.Typer(
    cls=Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark user-interest poolers (average, attention, the DIN activation unit) in one CTR model.",
)
console = Console()
if not console.is_terminal and console.width < 160:
    console.width = 160  # piped output (files, CI logs): keep tables unwrapped
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help=f"Datasets folder. {default_note(f'${paths.DATA_ENV}, else ./datasets')}")
ResultsDir = typer.Option(None, "--results-dir", help=f"Run records folder. {default_note(f'${paths.RESULTS_ENV}, else ./results')}")


user_errors = one_line_errors(err_console)
_say = console.print


def _print_version(value: bool) -> None:
    if value:
        console.print(f"dinbench {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Options of ``dinbench`` itself (before the command)."""


def _show(text: str) -> None:
    console.print(text, end="", markup=False, highlight=False, soft_wrap=True)


@app.command(cls=Command)
@user_errors
def download(
    name: str = typer.Argument(..., help="Dataset to fetch and prepare: synthetic (offline) or one of `dinbench datasets` (amazon-electronics, movielens-20m, ...)."),
    force: bool = typer.Option(False, "--force", help="Download (real data) and prepare again even if already done."),
    from_path: Optional[Path] = typer.Option(None, "--from", help="Use files you already have (a file, the folder holding them, or the MovieLens zip); no network."),
    url: Optional[list[str]] = typer.Option(None, "--url", help="Download from here instead (a file URL, or a folder URL ending in '/'); repeatable."),
    skip_bad_lines: bool = typer.Option(False, "--skip-bad-lines", help="Amazon: skip and count malformed lines instead of stopping at the first."),
    protocol_seed: int = typer.Option(1234, "--protocol-seed", help="Real data: seed of negative sampling (Amazon, Taobao) or of the user split (MovieLens)."),
    valid_fraction: float = typer.Option(0.1, "--valid-fraction", help="MovieLens: share of the training users kept for validation."),
    positive: str = typer.Option("pv", "--positive", help="Taobao: pv (page views are sequence and targets) or buy (buys are the targets)."),
    users: Optional[int] = typer.Option(None, help=f"synthetic: number of users. {default_note(2500)}"),
    topics: Optional[int] = typer.Option(None, help=f"synthetic: number of hidden interest topics. {default_note(50)}"),
    mean_length: Optional[float] = typer.Option(None, help=f"synthetic: mean behaviours per user. {default_note(24)}"),
    max_length: Optional[int] = typer.Option(None, help=f"synthetic: most behaviours per user (long histories for --max-len 1000: raise it with --mean-length). {default_note(100)}"),
    seed: Optional[int] = typer.Option(None, help=f"synthetic: generator seed. {default_note(0)}"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Download (or generate) a dataset and prepare it under its paper protocol."""
    root = paths.data_folder(data_dir, write=True)
    if name == "synthetic":
        make_synthetic(root, force, _say, console.status, users=users, topics=topics, mean_length=mean_length,
                       max_length=max_length, seed=seed)
        return
    from dinbench.prepared import contract
    from dinbench.sources import fetch, registry

    opts = fetch.Options(from_path=from_path, urls=list(url or []), force=force, skip_bad_lines=skip_bad_lines,
                         seed=protocol_seed, valid_fraction=valid_fraction, positive=positive)
    manifest = fetch.obtain(registry.get(name), root, opts, console)
    for line in prepared_lines(manifest, contract.dataset_path(root, name)) if manifest is not None else []:
        console.print(line)


@app.command("import", cls=Command)
@user_errors
def import_(
    file: Path = typer.Argument(..., help="Interactions file: .csv/.tsv (optionally .gz) or .parquet."),
    name: str = typer.Option(..., "--name", help="Name of the prepared dataset (folder under the data dir)."),
    user_col: str = typer.Option("user_id", help="Column with the user id."),
    item_col: str = typer.Option("item_id", help="Column with the item id."),
    category_col: str = typer.Option("cate_id", help="Column with the item's category; '' for none."),
    time_col: str = typer.Option("timestamp", help="Column with Unix seconds, dates, or an order key."),
    sep: Optional[str] = typer.Option(None, help="CSV separator. " + default_note("',', tab for .tsv")),
    min_behaviours: int = typer.Option(4, help="Drop users with fewer behaviours (at least 4)."),
    negative_seed: int = typer.Option(1234, help="Seed of negative sampling (the paper's code: 1234)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing dataset of that name."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import your own interactions and prepare them under the DIN sample protocol."""
    from dinbench.sources.interactions import import_file

    columns = {"user": user_col, "item": item_col, "category": category_col or None, "time": time_col}
    import_file(file, name, paths.data_folder(data_dir, write=True), columns, sep, min_behaviours=min_behaviours,
                seed=negative_seed, force=force, say=_say, busy=console.status)


@app.command(cls=Command)
@user_errors
def datasets(
    stats: bool = typer.Option(False, "--stats", help="Print the counts of every prepared dataset (and the DIN paper's, for its datasets)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """List the prepared datasets and the ones `dinbench download` can fetch; --stats for their counts."""
    ui.print_datasets(console, paths.data_folder(data_dir, write=False), EMBEDDED, stats)


@app.command("poolers", cls=Command)
def list_poolers() -> None:
    """List the registered poolers, their variants and options."""
    ui.print_poolers(console)


@app.command(cls=Command)
@user_errors
@experiment_options("Prepared dataset to train on.", _show)
def run(
    exp=None,
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch: more threads than free cores slow torch down many times over; use 1 when other jobs share the machine. " + default_note("half the usable cores, 1 to 4")),
    distributed: bool = typer.Option(False, "--distributed", help="Train each run on several processes with DistributedDataParallel: launch with `torchrun --nproc-per-node N -m dinbench.cli run --distributed ...` (docs/scaling.md)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run RUN_ID (its record's settings; other options are ignored)."),
    tuned: bool = typer.Option(False, "--tuned", help="Run the seeds of each pooler at its own best trial's settings from `dinbench tune`'s study (--study); records name the study and trial (docs/tuning.md)."),
    study: str = typer.Option("default", "--study", help="With --tuned: the study's name (results/_tuning/DATASET/STUDY.db)."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Train every pooler x seed on one dataset and write one run record each."""
    from dinbench.runtime import LocalRuntime, check_compile, resolve_device, set_threads

    if resume is not None:
        if distributed:
            raise DinbenchError("--resume does not combine with --distributed; resume the run in one process")
        return _resume(resume, data_dir, results_dir)
    if tuned:
        from dinbench import tune_cli
        from dinbench.grid import AXIS_DEFAULTS

        if distributed:
            raise DinbenchError("--tuned does not combine with --distributed yet; run the tuned seeds in one process")
        planned, tags = tune_cli.tuned_grid(exp, study, paths.results_dir(results_dir),
                                            tuple(poolers.expand(AXIS_DEFAULTS["pooler"])))
        check_compile(planned.configs[0].compile, resolve_device(planned.configs[0].device))
        set_threads(threads)
        return _run_configs(exp, planned, data_dir, results_dir, LocalRuntime(), tags)
    if len(exp.datasets) > 1:
        raise DinbenchError(f"run trains on one dataset (got {', '.join(exp.datasets)}); use `dinbench sweep` for several")
    planned = exp.expand()
    check_compile(exp.settings.get("compile", "off"), resolve_device(exp.settings.get("device", "cpu")))
    set_threads(threads)
    runtime = LocalRuntime()
    if distributed:
        from dinbench import distributed as ddp

        ddp.check_config(planned.configs[0])
        runtime = ddp.init(exp.settings.get("device", "cpu"))
        console.quiet = not runtime.is_writer  # rank 0 speaks for all ranks
    try:
        _run_configs(exp, planned, data_dir, results_dir, runtime)
    finally:
        runtime.close()


def _run_configs(exp, planned, data_dir, results_dir, runtime, tags=None) -> None:
    """The body of `run`: load the dataset, train the configs one after another, print the table."""
    root, out, dataset = paths.data_folder(data_dir, write=False), paths.results_folder(results_dir, write=True), exp.datasets[0]
    # under DDP rank 0 loads first (it may generate synthetic), then every rank checks it has the same data
    prepared = runtime.rank0_first(functools.partial(load_or_prepare, root, dataset, _say, console.status))
    runtime.agree(prepared.fingerprint, f"fingerprint of dataset '{dataset}'")
    console.print(ui.dataset_line(prepared, planned.configs[0].protocol))
    ui.print_run_plan(console, exp, planned, runtime.describe(), out)
    finished: list[Loaded] = []
    started = time.time()
    with ui.run_board(console, len(planned.configs)) as board:
        for i, cfg in enumerate(planned.configs):
            with board.run(ui.run_label(cfg)) as on_progress:
                run_dir, record = _train_one(cfg, prepared, out, on_progress, None, data_dir, results_dir, runtime,
                                             tags[i] if tags else None)
            board.advance()
            ui.print_finished(board.console, ui.run_label(cfg), run_dir, record)
            finished.append(Loaded(run_dir / "record.json", record))
    console.print(f"{len(planned.configs)} run(s) done in {time.time() - started:.1f}s")
    ui.print_results(console, finished, "results of this run", out)


@app.command(cls=Command)
@user_errors
@experiment_options("Prepared dataset(s), comma-separated: the grid is datasets x architectures x poolers x seeds.", _show)
def sweep(
    exp=None,
    executor: str = typer.Option("local", help="local: a process pool on this machine; ray: Ray tasks on a running cluster (needs `pip install " + escape("'dinbench[ray]'") + "`)."),
    workers: Optional[int] = typer.Option(None, help="local: runs at once. " + default_note("cores / --threads, at most the number of runs; with --device cuda --runs-per-gpu per GPU")),
    runs_per_gpu: Optional[int] = typer.Option(None, "--runs-per-gpu", help="local, on GPUs: runs that share each GPU at once (workers = this x GPUs, pinned round-robin). " + default_note(1)),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads per run; local workers x threads may not exceed the cores. " + default_note("local: cores / workers; ray: 1")),
    address: Optional[str] = typer.Option(None, help="ray: cluster address, e.g. 10.0.0.1:6379. " + default_note("$RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray")),
    gpus_per_run: Optional[float] = typer.Option(None, help="ray: GPUs each run reserves (a fraction shares a GPU). " + default_note("1 with --device cuda, or with auto on a cluster that has GPUs; else 0")),
    skip_existing: bool = typer.Option(True, "--skip-existing/--rerun-existing", help="Skip runs whose completed record (same data fingerprint, config, pooler and seed) is already in the results dir."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Run a grid of runs in parallel (process pool or Ray cluster); resumable: completed runs are skipped."""
    from dinbench import sweep as sweep_mod
    from dinbench.runtime import check_compile, resolve_device

    planned = exp.expand()
    configs = planned.configs
    device = exp.settings.get("device", "cpu")
    if executor == "local":  # a Ray cluster's nodes may have devices this machine lacks
        check_compile(exp.settings.get("compile", "off"), resolve_device(device))
    plan = sweep_mod.plan(executor, len(configs), workers, threads, gpus_per_run, device, address, runs_per_gpu)
    root, out = paths.data_folder(data_dir, write=False), paths.results_folder(results_dir, write=True)
    fingerprints, shipped = {}, {}
    for name in exp.datasets:
        prepared = load_or_prepare(root, name, _say, console.status)  # checked (synthetic made) before any worker starts
        console.print(ui.dataset_line(prepared, configs[0].protocol))
        fingerprints[name] = prepared.fingerprint
        if executor == "ray":
            shipped[name] = prepared  # Ray tasks get the data through the object store: no shared disk needed
    todo = sweep_mod.split_done(configs, fingerprints, out, skip_existing, resumable=executor == "local")
    ui.warn_stale(err_console, out)
    ui.print_sweep_plan(console, exp, planned, todo, plan, out, len(fingerprints))
    failures = ui.run_sweep(console, sweep_mod, plan, todo, root, out, shipped, len(fingerprints) > 1)
    if failures:
        err_console.print(f"[bold red]error:[/] {failures} run(s) failed (lines above); rerun the same sweep to retry "
                          "them: completed runs are skipped", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _train_one(cfg, prepared, out: Path, on_progress, resume_dir, data_dir, results_dir, runtime=None, tuning=None):
    """train_run, with the exact resume command (folders included) when the run is interrupted."""
    from dinbench.checkpoint import RunInterrupted, resume_command
    from dinbench.train import train_run

    try:
        return train_run(cfg, prepared, out, progress=on_progress, resume_dir=resume_dir, runtime=runtime,
                         tuning=tuning)
    except RunInterrupted as exc:
        exc.args = (f"{exc}; record marked interrupted; continue with: "
                    f"{resume_command(exc.run_dir.name, data_dir, results_dir)}",)
        raise


def _resume(run_id: str, data_dir: Optional[Path], results_dir: Optional[Path]) -> None:
    """Continue an interrupted run from its checkpoint, on the dataset and settings it started with."""
    from dinbench.runtime import set_threads
    from dinbench.train import resume_config

    out = paths.results_folder(results_dir, write=True)
    if not run_id or any(c in run_id for c in "/\\") or run_id.startswith("."):
        raise DinbenchError(f"invalid run id '{run_id}': give the folder name under {out}/")
    run_dir = out / run_id
    cfg, record = resume_config(run_dir)
    set_threads(record.get("torch_threads"))  # the thread count it started with: same summation order
    prepared = load_or_prepare(paths.data_folder(data_dir, write=False), record["dataset"]["name"], _say, console.status)
    console.print(f"resuming {run_id}: {cfg.pooler} seed {cfg.seed} on {prepared.name}")
    with ui.run_board(console, 1, "resume") as board, board.run(ui.run_label(cfg)) as on_progress:
        run_dir, record = _train_one(cfg, prepared, out, on_progress, run_dir, data_dir, results_dir)
    ui.print_finished(console, ui.run_label(cfg), run_dir, record)


@app.command(cls=Command)
@user_errors
def tune(
    dataset: str = typer.Option("synthetic", help="Prepared dataset to tune on (its valid split; test is never read)."),
    pooler: str = typer.Option(",".join(poolers.DEFAULT_POOLERS), help="Comma-separated poolers (name or name:variant), or 'all'; each gets the same budget."),
    trials: int = typer.Option(..., help="Trials per pooler (the budget, the same for every pooler); a study given more trials later runs only the missing ones; fewer cut it, while no pooler has used more."),
    space: str = typer.Option("default", help="default (the ranges declared on the options, docs/tuning.md) or a space file FILE.toml."),
    epochs: Optional[int] = typer.Option(None, help=f"Epochs cap of every trial (early stopping on valid GAUC within it). {default_note(10)}"),
    seed: int = typer.Option(0, help="Training seed of every trial and the sampler's seed (TPE)."),
    study: str = typer.Option("default", help="Study name: results/_tuning/DATASET/STUDY.db; the same name resumes it."),
    executor: str = typer.Option("local", help="local: trials on this machine (in this process, or a process pool with --workers); ray: Ray tasks on a running cluster, as many at once as its nodes hold, the study kept by this process (needs `pip install " + escape("'dinbench[ray]'") + "`)."),
    workers: Optional[int] = typer.Option(None, help=f"local: trials at once (process pool); 1: in this process. {default_note('cores / --threads')}"),
    threads: Optional[int] = typer.Option(None, help=f"torch CPU threads per trial; local workers x threads may not exceed the cores; on Ray the CPUs each trial reserves. {default_note('local: cores / workers; ray: 1')}"),
    address: Optional[str] = typer.Option(None, "--address", "--ray-address", help="ray: cluster address, e.g. 10.0.0.1:6379. " + default_note("$RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray")),
    gpus_per_run: Optional[float] = typer.Option(None, help="ray: GPUs each trial reserves (a fraction shares a GPU). " + default_note("1 with --device cuda, or with auto on a cluster that has GPUs; else 0")),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Tune every pooler with the same budget on validation (Optuna TPE, median pruner); resumable;
    trials in parallel in a local process pool or on a Ray cluster, as `dinbench sweep` runs them.
    Then `dinbench run --tuned --seeds 5` runs the seeds at each pooler's best settings (docs/tuning.md)."""
    from dinbench import tune_cli

    tune_cli.tune_command(console, dataset=dataset, pooler=pooler, trials=trials, space=space, epochs=epochs,
                          seed=seed, study=study, workers=workers, threads=threads, device=device, data_dir=data_dir,
                          results_dir=results_dir, executor=executor, address=address, gpus_per_run=gpus_per_run,
                          load=lambda root, name: load_or_prepare(root, name, _say, console.status))


@app.command(cls=Command)
@user_errors
def report(
    baseline: str = typer.Option(poolers.BASELINE, help="Pooler that RelaImpr and the p-values are measured against."),
    fmt: str = typer.Option("table", "--format", help=f"One of: {', '.join(FORMATS)}."),
    output: Optional[Path] = typer.Option(
        None, "--output",
        help="A file ending in .md/.csv/.tex/.json/.txt: write the table there. Any other path: a report "
             "directory with report.md, the table in every format and every plot."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write every plot (PNG and SVG) into this directory."),
    wide: bool = typer.Option(False, "--wide", help="The terminal table with every column (test AUC, rank, both p-values, vs baseline, best epoch, train rows/s, peak MB); files always have every column."),
    paper: bool = typer.Option(False, "--paper", help="Add the DIN paper's and BARS' published numbers for the same dataset, with the protocol differences."),
    dataset: Optional[str] = typer.Option(None, help="Only this dataset (comma-separated list allowed)."),
    pooler: Optional[str] = typer.Option(None, help="Only these poolers (comma-separated; name or name:variant)."),
    discard_stale: bool = typer.Option(False, "--discard-stale", help="Delete the folders of stale runs (records left 'running' by a process on this machine that no longer exists: killed, or the machine died) before reporting."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Summarise every run record: mean ± std and 95% CI over seeds of test AUC / GAUC, RelaImpr, rank,
    p-values against the baseline (paired t-test over seeds, paired bootstrap over test users), speed;
    optionally plots, the paper's numbers side by side, and a report directory."""
    if fmt not in FORMATS:
        raise DinbenchError(f"unknown format '{fmt}'; choose from {', '.join(FORMATS)}")
    baseline = poolers.canonical(baseline)
    out = paths.results_folder(results_dir, write=discard_stale)
    report_dir = output is not None and output.suffix.lower() not in TABLE_SUFFIXES
    if output is not None:  # refused before any work; a missing parent folder is not made silently
        (paths.check_output_folder if report_dir else paths.check_output_file)(output, "--output")
    if plots is not None:
        paths.check_output_folder(plots, "--plots")
    loaded, runs, table = ui.tabulate(err_console, out, baseline, dataset, pooler, console, discard_stale)
    if report_dir or plots is not None:
        ui.write_report_files(console, err_console, loaded, runs, table, baseline, paper, output if report_dir else None, plots,
                            paths.data_dir(data_dir), out)
    if report_dir:
        return
    if fmt == "table" and output is None:
        ui.print_table(console, table, f"dinbench report ({len(runs)} runs in {out}/)", baseline, wide=wide)
        if paper:
            ui.print_paper(console, table)
        return
    if output is not None and fmt == "table":
        fmt = TABLE_SUFFIXES[output.suffix.lower()]
    ui.write_table_text(console, err_console, table, fmt, baseline, paper, output)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

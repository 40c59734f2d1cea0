"""The ``dinbench`` command line: download / import data, run poolers, report results.

Every command's ``--help`` is its manual. User errors print one line and exit with status 2.
"""

from __future__ import annotations

import functools
import inspect
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dinbench import paths, poolers
from dinbench import report as report_mod
from dinbench.config import RunConfig, apply_preset
from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.records import Loaded, load_records

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Benchmark user-interest poolers (average, attention, the DIN activation unit) in one CTR model.",
)
console = Console()
if not console.is_terminal and console.width < 160:
    console.width = 160  # piped output (files, CI logs): keep tables unwrapped
err_console = Console(stderr=True)

EMBEDDED = {"synthetic": "embedded"}

DataDir = typer.Option(None, "--data-dir", help=f"Datasets folder (default: ./datasets or ${paths.DATA_ENV})")
ResultsDir = typer.Option(None, "--results-dir", help=f"Run records folder (default: ./results or ${paths.RESULTS_ENV})")


def user_errors(fn):
    """Turn DinbenchError into one line on stderr and exit status 2 (130 for an interrupted run)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DinbenchError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None

    return wrapper


def _synthetic(data_dir: Path, force: bool, **overrides) -> dict:
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info

    cfg = SyntheticConfig(**{k: v for k, v in overrides.items() if v is not None})
    cfg.validate()
    if contract.is_prepared(data_dir, "synthetic") and not force:
        manifest = contract.read_manifest(data_dir, "synthetic")
        if manifest.get("source", {}).get("config") == source_info(cfg)["config"]:
            console.print(f"synthetic is already prepared in {contract.dataset_path(data_dir, 'synthetic')} (use --force to redo)")
            return manifest
    with console.status("generating synthetic behaviours and samples"):
        behaviours, items = generate(cfg)
        manifest = contract.prepare(
            behaviours, "synthetic", data_dir, source_info(cfg), item_attributes=items
        )
    _print_prepared(manifest, contract.dataset_path(data_dir, "synthetic"))
    return manifest


def _print_prepared(manifest: dict, path: Path) -> None:
    c = manifest["counts"]
    console.print(
        f"prepared [bold]{manifest['name']}[/]: {c['users']:,} users, {c['items']:,} items, "
        f"{c['categories']:,} categories, {c['behaviours']:,} behaviours -> "
        f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples"
    )
    if c.get("dropped_users"):
        console.print(f"dropped {c['dropped_users']:,} users with fewer than "
                      f"{manifest['protocol'].get('min_behaviours', '?')} behaviours ({c['dropped_behaviours']:,} rows)")
    console.print(f"written to {path}")


@app.command()
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
    users: Optional[int] = typer.Option(None, help="synthetic: number of users (default: 2500)"),
    topics: Optional[int] = typer.Option(None, help="synthetic: number of hidden interest topics (default: 50)"),
    mean_length: Optional[float] = typer.Option(None, help="synthetic: mean behaviours per user (default: 24)"),
    seed: Optional[int] = typer.Option(None, help="synthetic: generator seed (default: 0)"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Download (or generate) a dataset and prepare it under its paper protocol."""
    if name == "synthetic":
        _synthetic(paths.data_dir(data_dir), force, users=users, topics=topics, mean_length=mean_length, seed=seed)
        return
    from dinbench.sources import fetch, registry

    spec = registry.get(name)
    root = paths.data_dir(data_dir)
    opts = fetch.Options(from_path=from_path, urls=list(url or []), force=force, skip_bad_lines=skip_bad_lines,
                         seed=protocol_seed, valid_fraction=valid_fraction, positive=positive)
    manifest = fetch.obtain(spec, root, opts, console)
    if manifest is not None:
        _print_prepared(manifest, contract.dataset_path(root, name))


@app.command("import")
@user_errors
def import_(
    file: Path = typer.Argument(..., help="Interactions file: .csv/.tsv (optionally .gz) or .parquet."),
    name: str = typer.Option(..., "--name", help="Name of the prepared dataset (folder under the data dir)."),
    user_col: str = typer.Option("user_id", help="Column with the user id."),
    item_col: str = typer.Option("item_id", help="Column with the item id."),
    category_col: str = typer.Option("cate_id", help="Column with the item's category; '' for none."),
    time_col: str = typer.Option("timestamp", help="Column with Unix seconds, dates, or an order key."),
    sep: Optional[str] = typer.Option(None, help="CSV separator (default: ',' or tab for .tsv)."),
    min_behaviours: int = typer.Option(4, help="Drop users with fewer behaviours (at least 4)."),
    negative_seed: int = typer.Option(1234, help="Seed of negative sampling (the paper's code: 1234)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing dataset of that name."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import your own interactions and prepare them under the DIN sample protocol."""
    from dinbench.sources.interactions import read_interactions

    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise DinbenchError(f"invalid dataset name '{name}': use letters, digits, '-' or '_'")
    if name in EMBEDDED:
        raise DinbenchError(f"'{name}' is reserved for the embedded dataset; choose another --name")
    root = paths.data_dir(data_dir)
    if contract.is_prepared(root, name) and not force:
        raise DinbenchError(f"dataset '{name}' already exists in {root}; add --force to overwrite it")
    with console.status(f"reading {file}"):
        raw = read_interactions(file, user_col, item_col, category_col or None, time_col, sep)
    read = dict(raw.attrs.get("read", {}))
    console.print(f"read {read.get('rows', len(raw)):,} rows from {file}")
    if read.get("empty_rows") or read.get("duplicate_rows"):
        console.print(f"dropped {read['empty_rows']:,} empty row(s) and {read['duplicate_rows']:,} exact duplicate row(s)")
    source = {"kind": "import", "file": str(Path(file).resolve()), "columns": {
        "user": user_col, "item": item_col, "category": category_col or None, "time": time_col}, "read": read}
    with console.status("preparing samples"):
        manifest = contract.prepare(raw, name, root, source, seed=negative_seed, min_behaviours=min_behaviours)
    _print_prepared(manifest, contract.dataset_path(root, name))
    if manifest["time_unit"] == "order":
        console.print("time column read as an order key (not Unix seconds): ages are positions")


def _stats_table(stats) -> Table:
    table = Table(title=stats.title)
    table.add_column("count")
    table.add_column("value", justify="right")
    table.add_column("DIN paper", justify="right")
    for row in stats.rows:
        table.add_row(*row)
    return table


@app.command()
@user_errors
def datasets(
    stats: bool = typer.Option(False, "--stats", help="Print the counts of every prepared dataset (and the DIN paper's, for its datasets)."),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """List the prepared datasets and the ones `dinbench download` can fetch; --stats for their counts."""
    from dinbench.prepared import stats as stats_mod
    from dinbench.sources import registry

    root = paths.data_dir(data_dir)
    names = stats_mod.known(root, EMBEDDED)
    table = Table(title=f"datasets in {root}")
    for col in stats_mod.LISTING_COLUMNS:
        table.add_column(col, justify="right" if col in stats_mod.NUMERIC_COLUMNS else "left", no_wrap=col == "name")
    for row in stats_mod.listing(root, names):
        table.add_row(*row)
    console.print(table)
    if stats:
        for name in names:
            if contract.is_prepared(root, name):
                console.print(_stats_table(stats_mod.dataset_stats(root, name)))
        return
    more = Table(title="real datasets: dinbench download NAME (--from PATH for files you have)")
    more.add_column("name")
    more.add_column("about")
    for spec in registry.REGISTRY.values():
        if spec.name not in names:
            more.add_row(spec.name + (" *" if spec.paper else ""), spec.about)
    more.caption = "* a dataset of the DIN paper"
    console.print(more)


@app.command("poolers")
def list_poolers() -> None:
    """List the registered poolers and their variants."""
    table = Table(title="poolers")
    table.add_column("name")
    table.add_column("variants (normalisation)")
    table.add_column("description")
    for name, entry in poolers.REGISTRY.items():
        variants = ", ".join(f"{name}:{v}" + (" (default)" if i == 0 else "") for i, v in enumerate(entry.variants))
        table.add_row(name, variants or "—", escape(entry.cls.description))
    console.print(table)
    console.print(f"default set of `dinbench run`: {', '.join(poolers.DEFAULT_POOLERS)}; 'all' = every pooler and variant")


def _load_dataset(root: Path, name: str):
    if not contract.is_prepared(root, name):
        if name == "synthetic":
            console.print("synthetic is not prepared yet: generating it (offline, seeded)")
            _synthetic(root, force=False)
        else:
            from dinbench.sources.registry import REGISTRY

            if name in REGISTRY:
                raise DinbenchError(f"dataset '{name}' is not prepared in {root}; prepare it with `dinbench download {name}`")
            raise DinbenchError(
                f"dataset '{name}' is not prepared in {root}; prepare it with "
                f"`dinbench import FILE --name {name}` (or `dinbench datasets` to see what exists)"
            )
    return contract.load(root, name)


_D = RunConfig()


def _default(name: str) -> str:
    value = getattr(_D, name)
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return f"(default: {value})"


def _grid_parameters(
    pooler: str = typer.Option(",".join(poolers.DEFAULT_POOLERS), help="Comma-separated poolers (name or name:variant), or 'all'."),
    seeds: int = typer.Option(1, help="Number of seeds (repeats) per pooler."),
    seed: int = typer.Option(0, help="First seed; runs use seed, seed+1, ..."),
    preset: str = typer.Option("default", help="Settings bundle: default (tuned, docs/defaults.md) or paper (the DIN paper's). Explicit options win."),
    protocol: Optional[str] = typer.Option(None, help=f"din: select the epoch on valid; paper: train on train+valid, fixed epochs, no validation (as the paper). {_default('protocol')}"),
    architecture: str = typer.Option("ranking", help="ranking (candidate meets history before the MLP), two-tower (user tower x item tower; candidate-free poolers only), or both as 'ranking,two-tower'."),
    attention_groups: Optional[str] = typer.Option(None, help=f"joint: pool item+category embeddings together; separate: items with items, categories with categories. {_default('attention_groups')}"),
    epochs: Optional[int] = typer.Option(None, help=f"Maximum epochs (early stopping on valid GAUC). {_default('epochs')}"),
    patience: Optional[int] = typer.Option(None, help=f"Epochs without valid improvement tolerated before stopping (0: stop at the first). {_default('patience')}"),
    batch_size: Optional[int] = typer.Option(None, help=f"Training batch size. {_default('batch_size')}"),
    embedding_dim: Optional[int] = typer.Option(None, help=f"Embedding size per field (item and category). {_default('embedding_dim')}"),
    mlp_hidden: Optional[str] = typer.Option(None, help=f"Hidden sizes of the prediction MLP. {_default('mlp_hidden')}"),
    mlp_activation: Optional[str] = typer.Option(None, help=f"prelu, dice, sigmoid or relu. {_default('mlp_activation')}"),
    max_len: Optional[int] = typer.Option(None, help=f"Keep the most recent N behaviours of each history. {_default('max_len')}"),
    optimizer: Optional[str] = typer.Option(None, help=f"adam or sgd. {_default('optimizer')}"),
    lr: Optional[float] = typer.Option(None, help=f"Learning rate. {_default('lr')}"),
    lr_decay_steps: Optional[int] = typer.Option(None, help=f"Multiply the lr by --lr-decay every N steps (0: never). {_default('lr_decay_steps')}"),
    lr_decay: Optional[float] = typer.Option(None, help=f"Factor of the lr decay. {_default('lr_decay')}"),
    grad_clip: Optional[float] = typer.Option(None, help=f"Clip the global gradient norm (0: off). {_default('grad_clip')}"),
    l2_minibatch: Optional[float] = typer.Option(None, help=f"Mini-batch aware L2 on embeddings (DIN paper Eq. 4), its lambda (0: off). {_default('l2_minibatch')}"),
    init_std: Optional[float] = typer.Option(None, help=f"Std of the normal embedding initialisation. {_default('init_std')}"),
    bucket: Optional[bool] = typer.Option(None, "--bucket/--no-bucket", help=f"Batch rows of similar history length together. {_default('bucket')}"),
    half_life: float = typer.Option(5.0, help="time-decay: half-life (positions, or time units with --decay-age time)."),
    decay_age: str = typer.Option("position", help="time-decay: age by 'position' from the most recent, or by 'time' (dataset time unit)."),
    learn_decay: bool = typer.Option(False, "--learn-decay", help="time-decay: learn the half-life."),
    heads: int = typer.Option(4, help="multihead: number of heads (divides 2 x embedding dim)."),
    attention_hidden: str = typer.Option("80,40", help="din: hidden sizes of the activation unit."),
    attention_activation: str = typer.Option("sigmoid", help="din: sigmoid (authors' code), prelu, dice or relu."),
    outer_product: bool = typer.Option(False, "--outer-product", help="din: add the outer product of q and k to the unit's input."),
    device: str = typer.Option("cpu", help="auto, cpu, cuda or mps."),
    precision: Optional[str] = typer.Option(None, help=f"fp32, or bf16 (bfloat16 autocast of the forward pass; changes the numbers, so its runs are reported apart). {_default('precision')}"),
) -> None:
    """The options shared by `run` and `sweep` (what to train and how); see ``grid_options``."""


_GRID = object()  # placeholder default of a command's ``grid`` parameter (replaced by the options above)


def grid_options(fn):
    """Give a command the options of ``_grid_parameters`` in place of its ``grid`` parameter.

    The command is called with those options gathered in one ``GridOptions`` (``grid=``), so `run`
    and `sweep` share one definition of every option, its help text and its default.
    """
    from dinbench.grid import GridOptions

    shared = list(inspect.signature(_grid_parameters, eval_str=True).parameters.values())
    own = list(inspect.signature(fn, eval_str=True).parameters.values())
    at = [p.name for p in own].index("grid")
    params = own[:at] + shared + own[at + 1:]
    names = {p.name for p in shared}

    @functools.wraps(fn)
    def wrapper(**kwargs):
        grid = GridOptions(**{k: kwargs.pop(k) for k in list(kwargs) if k in names})
        return fn(grid=grid, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def _set_threads(threads: Optional[int]) -> None:
    """--threads, or the default: half the usable cores, 1 to 4 (see train.default_threads)."""
    from dinbench.train import set_threads

    set_threads(threads)


def _dataset_line(prepared, protocol: str) -> str:
    c = prepared.manifest["counts"]
    return (f"dataset [bold]{prepared.name}[/] ({c['users']:,} users, {c['items']:,} items; "
            f"{c['train_samples']:,} train / {c['valid_samples']:,} valid / {c['test_samples']:,} test samples), "
            f"protocol {protocol}")


def _run_label(cfg: RunConfig, with_dataset: bool = False) -> str:
    label = f"{cfg.pooler} seed {cfg.seed}" + (" two-tower" if cfg.architecture == "two-tower" else "")
    return f"{cfg.dataset} {label}" if with_dataset else label


@app.command()
@user_errors
@grid_options
def run(
    dataset: str = typer.Option("synthetic", help="Prepared dataset to train on."),
    grid=_GRID,
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: half the usable cores, 1 to 4; more threads than free cores slow torch down many times over). Use 1 when other jobs share the machine."),
    distributed: bool = typer.Option(False, "--distributed", help="Train each run on several processes with DistributedDataParallel: launch with `torchrun --nproc-per-node N -m dinbench.cli run --distributed ...` (docs/scaling.md)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue the interrupted run RUN_ID (its record's settings; other options are ignored)."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Train every pooler x seed on one dataset and write one run record each."""
    from dinbench.grid import expand
    from dinbench.train import resolve_device

    if resume is not None:
        if distributed:
            raise DinbenchError("--resume does not combine with --distributed; resume the run in one process")
        _resume(resume, data_dir, results_dir)
        return
    planned = expand(grid, [dataset])
    configs, specs, archs, skipped = planned.configs, planned.specs, planned.archs, planned.two_tower_skipped
    resolve_device(grid.device)
    _set_threads(threads)
    dist = None
    if distributed:
        from dinbench import distributed as ddp

        ddp.check_config(configs[0])
        dist = ddp.init(grid.device)
        console.quiet = not dist.is_writer  # rank 0 speaks for all ranks
    try:
        _run_configs(configs, specs, archs, skipped, grid, dataset, data_dir, results_dir, dist)
    finally:
        if dist is not None:
            dist.close()


def _run_configs(configs, specs, archs, skipped, grid, dataset, data_dir, results_dir, dist) -> None:
    """The body of `run`: load the dataset, train the configs one after another, print the table."""
    root, out = paths.data_dir(data_dir), paths.results_dir(results_dir)
    if dist is None:
        prepared = _load_dataset(root, dataset)
    else:  # rank 0 prepares (synthetic may need generating) before the others read it
        prepared = dist.rank0_first(lambda: _load_dataset(root, dataset))
        dist.agree(prepared.fingerprint, f"fingerprint of dataset '{dataset}'")
    console.print(_dataset_line(prepared, configs[0].protocol))
    where = f"; {dist.describe()}" if dist is not None else ""
    console.print(f"{len(configs)} run(s): {', '.join(specs)} x {grid.seeds} seed(s), preset {grid.preset}, "
                  f"{' and '.join(archs)}{where}; records go to {out}/")
    if skipped:
        console.print(f"two-tower skips {', '.join(skipped)}: they attend to the candidate, which the user tower never sees")
    finished: list[Loaded] = []
    started = time.time()
    with Progress(
        TextColumn("[bold]{task.fields[run]}"), TextColumn("{task.description}"), BarColumn(),
        MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True,
        disable=console.quiet,
    ) as progress:
        overall = progress.add_task("runs", total=len(configs), run="all")
        for cfg in configs:
            label = _run_label(cfg)
            task = progress.add_task("", total=1, run=label)

            def on_progress(stage: str, done: int, total: int, task=task) -> None:
                progress.update(task, description=stage, completed=done, total=total)

            run_dir, record = _train_one(cfg, prepared, out, on_progress, None, data_dir, results_dir, dist=dist)
            progress.remove_task(task)
            progress.advance(overall)
            _print_finished(progress.console, label, run_dir, record)
            finished.append(Loaded(run_dir / "record.json", record))
    console.print(f"{len(configs)} run(s) done in {time.time() - started:.1f}s")
    table = report_mod.summarize(report_mod.runs_frame(finished), baseline=poolers.BASELINE)
    _print_table(table, "results of this run", poolers.BASELINE)
    console.print(f"records in {out}/ - the table over all runs: dinbench report")


@app.command()
@user_errors
@grid_options
def sweep(
    dataset: str = typer.Option("synthetic", help="Prepared dataset(s), comma-separated: the grid is datasets x architectures x poolers x seeds."),
    grid=_GRID,
    executor: str = typer.Option("local", help="local: a process pool on this machine; ray: Ray tasks on a running cluster (needs `pip install 'dinbench[ray]'`)."),
    workers: Optional[int] = typer.Option(None, help="local: runs at once (default: cores / --threads, at most the number of runs; with --device cuda one per GPU)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads per run (default local: cores / workers; ray: 1). Local workers x threads may not exceed the cores."),
    address: Optional[str] = typer.Option(None, help="ray: cluster address, e.g. 10.0.0.1:6379 (default: $RAY_ADDRESS, else the cluster `ray start` made on this machine, else a new local Ray)."),
    gpus_per_run: Optional[float] = typer.Option(None, help="ray: GPUs each run reserves (default: 1 with --device cuda, or with auto on a cluster that has GPUs; else 0; a fraction shares a GPU)."),
    skip_existing: bool = typer.Option(True, "--skip-existing/--rerun-existing", help="Skip runs whose completed record (same data fingerprint, config, pooler and seed) is already in the results dir."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Run a grid of runs in parallel (process pool or Ray cluster); resumable: completed runs are skipped."""
    from dinbench import sweep as sweep_mod
    from dinbench.grid import expand, record_identity, run_identity
    from dinbench.train import resolve_device

    planned = expand(grid, dataset.split(","))
    configs = planned.configs
    if executor == "local":  # a Ray cluster's nodes may have devices this machine lacks
        resolve_device(grid.device)
    plan = sweep_mod.plan(executor, len(configs), workers, threads, gpus_per_run, grid.device, address)
    root, out = paths.data_dir(data_dir), paths.results_dir(results_dir)
    fingerprints, shipped = {}, {}
    for name in dict.fromkeys(c.dataset for c in configs):
        prepared = _load_dataset(root, name)  # checks the files (and makes synthetic) before any worker starts
        console.print(_dataset_line(prepared, configs[0].protocol))
        fingerprints[name] = prepared.fingerprint
        if executor == "ray":
            shipped[name] = prepared  # Ray tasks get the data through the object store: no shared disk needed
        del prepared
    done: dict[str, Loaded] = {}
    interrupted: dict[str, Path] = {}  # local: interrupted runs of the grid continue from their checkpoints
    if skip_existing:
        from dinbench.checkpoint import CHECKPOINT

        loaded, _ = load_records(out)
        for item in loaded:
            key = record_identity(item.record)
            if key is not None:
                done.setdefault(key, item)
            key = record_identity(item.record, ("interrupted",))
            if key is not None and executor == "local" and (item.path.parent / CHECKPOINT).is_file():
                interrupted[key] = item.path.parent
    existing, todo, resume = [], [], []
    for cfg in configs:
        key = run_identity(fingerprints[cfg.dataset], cfg.to_dict())
        if key in done:
            existing.append(done[key])
        else:
            todo.append(cfg)
            resume.append(interrupted.pop(key, None))
    console.print(
        f"{len(configs)} run(s) in the grid: {', '.join(planned.specs)} x {grid.seeds} seed(s) x "
        f"{len(fingerprints)} dataset(s), {' and '.join(planned.archs)}; {len(existing)} already done in {out}/ "
        f"(skipped), {len(todo)} to run on {plan.describe()}; records go to {out}/"
    )
    if planned.two_tower_skipped:
        console.print(f"two-tower skips {', '.join(planned.two_tower_skipped)}: they attend to the candidate")
    if any(resume):
        console.print(f"{sum(map(bool, resume))} interrupted run(s) continue from their checkpoints")
    finished: list[Loaded] = []
    failures = 0
    started = time.time()
    with_dataset = len(fingerprints) > 1
    if todo:
        with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            bar = progress.add_task("", total=len(todo))

            def on_done(cfg: RunConfig, outcome) -> None:
                nonlocal failures
                progress.advance(bar)
                label = _run_label(cfg, with_dataset)
                if outcome.error is not None:
                    failures += 1
                    progress.console.print(f"[red]{escape(label)}: failed[/]: {escape(outcome.error)}", soft_wrap=True,
                                           highlight=False)
                    return
                _print_finished(progress.console, label, outcome.run_dir, outcome.record)
                finished.append(Loaded(outcome.run_dir / "record.json", outcome.record))

            sweep_mod.execute(plan, todo, root, out, on_done, shipped, resume)
    console.print(f"{len(finished)} run(s) done, {failures} failed, {len(existing)} skipped in {time.time() - started:.1f}s")
    table = report_mod.summarize(report_mod.runs_frame(existing + finished), baseline=poolers.BASELINE)
    _print_table(table, f"results of this sweep ({len(finished)} new, {len(existing)} existing run(s))", poolers.BASELINE)
    console.print(f"records in {out}/ - the table over all runs: dinbench report")
    if failures:
        err_console.print(f"[bold red]error:[/] {failures} run(s) failed (lines above); rerun the same sweep to retry "
                          "them: completed runs are skipped", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def _train_one(cfg, prepared, out: Path, on_progress, resume_dir, data_dir, results_dir, dist=None):
    """train_run, with the exact resume command (folders included) when the run is interrupted."""
    from dinbench.checkpoint import RunInterrupted
    from dinbench.train import train_run

    try:
        return train_run(cfg, prepared, out, progress=on_progress, resume_dir=resume_dir, dist=dist)
    except RunInterrupted as exc:
        command = f"dinbench run --resume {exc.run_dir.name}"
        if data_dir is not None:
            command += f" --data-dir {data_dir}"
        if results_dir is not None:
            command += f" --results-dir {results_dir}"
        exc.args = (f"{exc}; record marked interrupted; continue with: {command}",)
        raise


def _print_finished(target: Console, label: str, run_dir: Path, record: dict) -> None:
    t = record["test"]
    target.print(
        f"{label}: test AUC {t['auc']:.4f}  GAUC {t['gauc']:.4f}  best epoch {record['best_epoch']}  "
        f"{record['train_rows_per_s']:,.0f} rows/s  {record['wall_seconds']:.1f}s -> {run_dir}/record.json",
        soft_wrap=True,
    )


def _resume(run_id: str, data_dir: Optional[Path], results_dir: Optional[Path]) -> None:
    """Continue an interrupted run from its checkpoint, on the dataset and settings it started with."""
    from dinbench.train import resume_config, set_threads

    out = paths.results_dir(results_dir)
    if not run_id or any(c in run_id for c in "/\\") or run_id.startswith("."):
        raise DinbenchError(f"invalid run id '{run_id}': give the folder name under {out}/")
    run_dir = out / run_id
    cfg, record = resume_config(run_dir)
    set_threads(record.get("torch_threads"))  # the thread count it started with: same summation order
    prepared = _load_dataset(paths.data_dir(data_dir), record["dataset"]["name"])
    console.print(f"resuming {run_id}: {cfg.pooler} seed {cfg.seed} on {prepared.name}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("", total=1)

        def on_progress(stage: str, done: int, total: int) -> None:
            progress.update(task, description=stage, completed=done, total=total)

        run_dir, record = _train_one(cfg, prepared, out, on_progress, run_dir, data_dir, results_dir)
    _print_finished(console, f"{cfg.pooler} seed {cfg.seed}", run_dir, record)


def _print_table(table, title: str, baseline: str) -> None:
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


TABLE_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".csv": "csv", ".tex": "latex", ".json": "json",
                  ".txt": "markdown"}


@app.command()
@user_errors
def report(
    baseline: str = typer.Option(poolers.BASELINE, help="Pooler that RelaImpr and the p-values are measured against."),
    fmt: str = typer.Option("table", "--format", help=f"One of: {', '.join(report_mod.FORMATS)}."),
    output: Optional[Path] = typer.Option(
        None, "--output",
        help="A file ending in .md/.csv/.tex/.json/.txt: write the table there. Any other path: a report "
             "directory with report.md, the table in every format and every plot."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write every plot (PNG and SVG) into this directory."),
    paper: bool = typer.Option(False, "--paper", help="Add the DIN paper's and BARS' published numbers for the same dataset, with the protocol differences."),
    dataset: Optional[str] = typer.Option(None, help="Only this dataset (comma-separated list allowed)."),
    pooler: Optional[str] = typer.Option(None, help="Only these poolers (comma-separated; name or name:variant)."),
    data_dir: Optional[Path] = DataDir,
    results_dir: Optional[Path] = ResultsDir,
) -> None:
    """Summarise every run record: mean ± std and 95% CI over seeds of test AUC / GAUC, RelaImpr, rank,
    p-values against the baseline (paired t-test over seeds, paired bootstrap over test users), speed;
    optionally plots, the paper's numbers side by side, and a report directory."""
    if fmt not in report_mod.FORMATS:
        raise DinbenchError(f"unknown format '{fmt}'; choose from {', '.join(report_mod.FORMATS)}")
    baseline = poolers.canonical(baseline)
    out = paths.results_dir(results_dir)
    loaded, runs, table = _tabulate(out, baseline, dataset, pooler)
    report_dir = output is not None and output.suffix.lower() not in TABLE_SUFFIXES
    if report_dir or plots is not None:
        _write_report_files(loaded, runs, table, baseline, paper, output if report_dir else None, plots,
                            paths.data_dir(data_dir), out)
    if report_dir:
        return
    if fmt == "table" and output is None:
        _print_table(table, f"dinbench report ({len(runs)} runs in {out}/)", baseline)
        if paper:
            _print_paper(table)
        return
    if output is not None and fmt == "table":
        fmt = TABLE_SUFFIXES[output.suffix.lower()]
    _write_table_text(table, fmt, baseline, paper, output)


def _tabulate(out: Path, baseline: str, dataset: Optional[str], pooler: Optional[str]):
    """The records in ``out`` and their table, with the warnings and notes printed."""
    loaded, warnings = load_records(out)
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    runs, table, notes = report_mod.build(report_mod.runs_frame(loaded), baseline, dataset, pooler, out)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    return loaded, runs, table


def _write_table_text(table, fmt: str, baseline: str, paper: bool, output: Optional[Path]) -> None:
    from dinbench import publish

    text, note = publish.table_text(table, fmt, baseline, paper)
    if note:
        err_console.print(f"[yellow]note:[/] {note}")
    if output is None:
        console.print(text, end="", markup=False, highlight=False, soft_wrap=True)
    else:
        from dinbench.atomic import write_atomic
        write_atomic(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        console.print(f"wrote {output}")


def _print_paper(table) -> None:
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


def _write_report_files(loaded, runs, table, baseline, paper, report_dir, plot_dir, data_root, results_root) -> None:
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
                    err_console.print(f"[yellow]note:[/] {escape(s.title)}: {escape(note)}", highlight=False, soft_wrap=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

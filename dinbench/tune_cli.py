"""The bodies of ``dinbench tune`` and ``dinbench run --tuned`` (the commands are declared in cli.py).

``tune``: check the options, load the dataset, open (or resume) the study, run the trials (in
this process, the local process pool or on Ray) with a progress bar per pooler (trials done /
budget, best valid GAUC so far), then print each pooler's best trial. ``run --tuned``: the grid
of each pooler's best settings x seeds, with the record tag that says which study and trial they
came from.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dinbench import paths, poolers
from dinbench.config import OPTIONS, RunConfig
from dinbench.errors import DinbenchError


def tune_command(console: Console, *, dataset: str, pooler: str, trials: int, space: str, epochs: int | None,
                 seed: int, study: str, workers: int | None, threads: int | None, device: str,
                 data_dir: Path | None, results_dir: Path | None, load: Callable[[Path, str], Any],
                 executor: str = "local", address: str | None = None, gpus_per_run: float | None = None) -> None:
    """``dinbench tune``; ``load(root, name)`` loads (or makes synthetic) the prepared dataset."""
    from dinbench import space as space_mod
    from dinbench import sweep, tuning

    if trials < 1:
        raise DinbenchError(f"--trials must be at least 1 (got {trials})")
    if "," in dataset:
        raise DinbenchError(f"tune works on one dataset (got {dataset}); tune each in turn")
    specs = poolers.expand(pooler)
    chosen = space_mod.default_space() if space == "default" else space_mod.load_space(Path(space))
    settings = {k: v for k, v in chosen.shared.items() if not isinstance(v, space_mod.Search)}
    if epochs is not None:
        settings["epochs"] = OPTIONS["epochs"].parse(epochs)
    settings["device"] = OPTIONS["device"].parse(device)
    OPTIONS["seed"].parse(seed)
    sweep.plan(executor, 1, workers, threads, gpus_per_run, settings["device"], address)  # the executor options
    if executor == "ray":
        sweep.import_ray()  # missing: one line, before any study file is made
    for spec in specs:  # every fixed value and pooler checked before any work
        RunConfig(dataset=dataset, pooler=spec, seed=seed, **settings,
                  pooler_options={k: v for k, v in chosen.for_pooler(spec).items()
                                  if not isinstance(v, space_mod.Search)})
    out = paths.results_dir(results_dir)
    path = tuning.study_path(out, dataset, study)
    root = paths.data_dir(data_dir)
    prepared = load(root, dataset)
    setup = tuning.Setup(dataset, prepared.fingerprint, chosen, settings, seed)
    studies = tuning.open_studies(path, setup, specs, trials)
    to_run = sum(max(0, trials - tuning.counts(s)) for s in studies.values())
    plan = sweep.plan(executor, max(1, to_run), workers, threads, gpus_per_run, settings["device"], address)
    runner, source, at_once = _trial_runner(plan, prepared, root, to_run)
    console.print(f"tune {study}: {', '.join(specs)} on {dataset}, {trials} trial(s) each ({to_run} to run), "
                  f"epochs cap {settings.get('epochs', OPTIONS['epochs'].default)}, seed {seed}, space "
                  f"{space} ({chosen.digest()}); {plan.describe()}{at_once}; study in {path}")
    for line in chosen.lines(specs):
        console.print(f"  {escape(line)}", highlight=False)
    started = time.time()
    with _trial_progress(console, studies, trials) as on_trial:
        try:
            tuning.tune(setup, specs, trials, path, runner, source, on_trial, studies)
        finally:
            runner.close()
    console.print(f"{to_run} trial(s) run in {time.time() - started:.1f}s")
    print_best(console, studies, trials)
    console.print(f"seeds at each pooler's best settings: dinbench run --tuned --study {study} --dataset {dataset} "
                  f"--pooler {','.join(specs)} --seeds 5")


def _trial_runner(plan, prepared, root: Path, to_run: int) -> tuple[Any, Any, str]:
    """(executor of the trials, what a trial loads its data from, a note for the plan line) for ``plan``:
    Ray (the driver holds the data; connects, one line if it cannot), the local process pool (workers load
    the dataset from ``root``), or this process (``prepared`` itself, torch at the plan's threads)."""
    from dinbench import tuning

    if plan.executor == "ray":
        if not to_run:
            return tuning.InlineExecutor(), None, ""
        runner = tuning.RayExecutor(plan, prepared)  # counts the trials the cluster holds at once
        return runner, None, f"; up to {runner.workers} trial(s) at once"
    if plan.workers > 1:
        return tuning.PoolExecutor(plan), str(root), ""
    from dinbench.runtime import set_threads

    set_threads(plan.threads)
    return tuning.InlineExecutor(), prepared, ""


@contextmanager
def _trial_progress(console: Console, studies: dict[str, Any], budget: int) -> Iterator[Callable[[Any], None]]:
    """A progress bar per pooler (trials done / budget, best valid GAUC so far) and a line per finished
    trial; yields the ``on_trial`` callback that ``tuning.tune`` calls with each ``tuning.Finished``."""
    from dinbench import tuning

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best valid GAUC {task.fields[best]}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        bars = {}
        for spec, st in studies.items():
            best = tuning._best(st)
            bars[spec] = progress.add_task(spec, total=budget, completed=min(budget, tuning.counts(st)),
                                           best=f"{best.value:.4f}" if best is not None else "—")

        def on_trial(f: tuning.Finished) -> None:
            progress.update(bars[f.spec], completed=min(f.done, budget),
                            best=f"{f.best:.4f}" if math.isfinite(f.best) else "—")
            value = f"{f.value:.4f}" if math.isfinite(f.value) else "—"
            note = f" ({escape(f.note)})" if f.note else ""
            progress.console.print(f"{escape(f.spec)} trial {f.number}: {f.state}, valid GAUC {value}{note}",
                                   highlight=False, soft_wrap=True)

        yield on_trial


def print_best(console: Console, studies: dict[str, Any], budget: int) -> None:
    from dinbench import tuning

    table = Table(title="best trial per pooler (valid GAUC; the test split is not read)")
    for col in ("pooler", "trials", "best trial", "valid GAUC", "settings"):
        table.add_column(col)
    for spec, st in studies.items():
        best = tuning._best(st)
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(best.params.items())) if best is not None else "—"
        table.add_row(spec, f"{tuning.counts(st)}/{budget}", str(best.number) if best is not None else "—",
                      f"{best.value:.4f}" if best is not None else "—", shown)
    console.print(table)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ---- run --tuned

ALLOWED_WITH_TUNED = ("device", "compile")  # cannot change the numbers (or are checked by the run)


def tuned_grid(exp, study: str, results_dir: Path, default_specs: tuple[str, ...]):
    """The runs of ``dinbench run --tuned``: each pooler's best trial's settings x ``exp.seeds`` seeds,
    and per run the record's ``tuning`` tag. Every other setting comes from the study; giving one
    is refused. ``default_specs``: the --pooler value when none was given (then: every pooler tuned)."""
    from dinbench import tuning
    from dinbench.grid import Grid

    if len(exp.datasets) > 1:
        raise DinbenchError(f"run --tuned trains on one dataset (got {', '.join(exp.datasets)})")
    given = sorted(set(exp.settings) - set(ALLOWED_WITH_TUNED))
    if given or exp.pooler_options or exp.preset != "default" or tuple(exp.archs) != ("ranking",):
        flags = [OPTIONS[k].flag for k in given] + (["pooler options"] if exp.pooler_options else []) + \
            (["--preset"] if exp.preset != "default" else []) + (["--architecture"] if tuple(exp.archs) != ("ranking",) else [])
        raise DinbenchError(f"--tuned takes every setting from the study; drop {', '.join(flags)} "
                            f"(only --seeds, --seed, --device and --compile go with it)")
    path = tuning.study_path(results_dir, exp.datasets[0], study)
    specs = None if tuple(exp.specs) == tuple(default_specs) else list(exp.specs)
    configs: list[RunConfig] = []
    tags: list[dict[str, Any]] = []
    for best in tuning.best_trials(path, specs):
        tag = best.tag(study, path, results_dir)
        changes = {k: exp.settings[k] for k in ALLOWED_WITH_TUNED if k in exp.settings}
        for s in range(exp.seeds):
            configs.append(best.run_config(exp.seed + s, **changes))
            tags.append(tag)
    planned = Grid(configs=configs, specs=list(dict.fromkeys(c.pooler for c in configs)), archs=["ranking"],
                   two_tower_skipped=[])
    return planned, tags

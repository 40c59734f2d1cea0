"""``dinbench tune``: every pooler gets the same search budget, selected on validation only (docs/tuning.md).

One Optuna study per pooler, all in one SQLite file per study name under the results folder
(``<results>/_tuning/<dataset>/<study>.db``; one Optuna study per pooler spec inside it), so a
stopped ``tune`` resumes where it stopped and ``dinbench run --tuned`` finds the best trials.

The budget rule: every pooler of a study gets the same number of trials (``--trials``), drawn by
the same sampler (TPE) from the same seed, over the same shared axes (``dinbench.space``), with the
same fixed settings (epochs cap, patience, training seed). A trial's objective is its best valid
GAUC over epochs (the epoch early stopping would select); a median pruner stops a trial whose
valid GAUC at an epoch is below the median of completed trials at that epoch. A trial counts
against the budget when it completed, was pruned or failed on its own (the loss diverged): all
three are outcomes of its settings. A trial that was cut off (the process killed or stopped) does
not count and is asked again.

The sampler is re-seeded before every trial from (seed, trial index), so its draws depend only on
the study's history: a study stopped and resumed asks the same trials as one never stopped (with
one worker), and during TPE's random start-up trials every pooler draws the same shared-axis
values (its own axes are drawn after the shared ones).

The test split is never read: a trial trains on a copy of the prepared dataset whose test split
has no rows (``blind``), and the objective reads valid GAUC only.

Trials run in the driver (one worker), in the local sweep executor's process pool
(``dinbench.sweep.local_pool``: spawned processes, torch threads pinned, workers x threads at
most the cores), or as Ray tasks (``RayExecutor``: the sweep's Ray connection and task sizing).
Pool workers report per-epoch valid GAUC to the study's SQLite file themselves, which is what the
pruner reads. Ray workers may not share the driver's disk: only the driver opens the study; a Ray
task gets the config, the prepared data without its test split (through Ray's object store) and
the completed trials' per-epoch values as they were when it was asked, prunes itself against those
with the study's own pruner, and returns its per-epoch values, which the driver writes to the study.
With more than one trial at once TPE asks with the constant liar (running trials count as bad).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dinbench import poolers
from dinbench.config import RunConfig, config_from_record
from dinbench.errors import DinbenchError
from dinbench.space import Space, sample
from dinbench.sweep import sigterm_interrupts

TUNING_DIR = "_tuning"
STARTUP_TRIALS = 10  # TPE's random start-up trials (Optuna's default), the same for every pooler
PRUNER_STARTUP = 5  # completed trials before the median pruner prunes anything
COUNTED = "counted"  # trial user attribute: this failed trial counts against the budget


class TuneInterrupted(DinbenchError):
    """Ctrl-C during ``tune``: the trials under way are dropped (they do not count); exit 130."""

    exit_code = 130


class _Pruned(Exception):
    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


def _optuna():
    try:
        import optuna
    except ImportError:
        raise DinbenchError("dinbench tune needs Optuna, which is not installed: pip install 'optuna>=4'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def study_path(results_dir: Path, dataset: str, study: str) -> Path:
    if not study or any(c in study for c in "/\\") or study.startswith("."):
        raise DinbenchError(f"invalid study name '{study}': use letters, digits, '-' and '_'")
    return Path(results_dir) / TUNING_DIR / dataset / f"{study}.db"


def storage_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def _storage(url: str):
    optuna = _optuna()
    # several pool workers write per-epoch values while the driver asks and tells: wait for the lock
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


@dataclass(frozen=True)
class Setup:
    """What a study is, fixed when it is created: a resumed study must match it."""

    dataset: str
    fingerprint: str
    space: Space
    settings: dict[str, Any]  # run options every trial shares (epochs cap, patience, device, ...)
    seed: int  # the training seed of every trial and the sampler's seed

    def identity(self, spec: str) -> dict[str, Any]:
        """What must not change between two ``tune`` calls on pooler ``spec``'s study (device may): the
        shared axes and the pooler's own, not other poolers' (a pooler added to the registry, or a
        range changed for another pooler, leaves this study resumable)."""
        settings = {k: v for k, v in self.settings.items() if k not in ("device", "compile")}
        return {"dataset": self.dataset, "fingerprint": self.fingerprint,
                "space": own_space(self.space.to_json(), spec), "settings": settings, "seed": self.seed}

    def config(self, spec: str, shared: dict[str, Any], own: dict[str, Any]) -> RunConfig:
        return RunConfig(dataset=self.dataset, pooler=spec, seed=self.seed, **{**self.settings, **shared},
                         pooler_options=own)


def own_space(space: dict[str, Any], spec: str) -> dict[str, Any]:
    """A space's JSON form (Space.to_json) reduced to the shared axes and pooler ``spec``'s own.
    Studies made before identities were per pooler stored every pooler's axes: read through this too."""
    name = poolers.parse_spec(spec)[0]
    return {**space, "own": {k: v for k, v in space.get("own", {}).items() if k == name}}


def load(path: Path, spec: str):
    """The study of pooler ``spec`` in the study file ``path`` (read by the report's trials figure)."""
    return _optuna().load_study(study_name=spec, storage=_storage(storage_url(path)))


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def counts(study) -> int:
    """Trials of ``study`` that count against the budget (completed, pruned, failed on their own)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and t.user_attrs.get(COUNTED)))


def open_studies(path: Path, setup: Setup, specs: list[str], budget: int) -> dict[str, Any]:
    """The study of every pooler in ``specs`` in ``path`` (created, or resumed if it matches ``setup``);
    trials left running by a killed ``tune`` are marked failed (not counted)."""
    optuna = _optuna()
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = _storage(storage_url(path))
    studies = {}
    for spec in specs:
        study = optuna.create_study(study_name=spec, storage=storage, direction="maximize", load_if_exists=True,
                                    sampler=_sampler(setup.seed, 0),
                                    pruner=_pruner())
        identity = _jsonable(setup.identity(spec))
        old = study.user_attrs.get("setup")
        if old is not None and "space" in old:
            old = {**old, "space": own_space(old["space"], spec)}
        if old is None:
            study.set_user_attr("setup", identity)
        elif old != identity:
            differ = sorted(k for k in identity if old.get(k) != identity[k])
            raise DinbenchError(
                f"study '{path.stem}' ({path}) was made with other settings for {spec} (they differ in "
                f"{', '.join(differ)}); give another --study name, or the settings it was made with")
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)  # cut off: asked again, not counted
        studies[spec] = study
    _set_budget(path, studies, budget)
    return studies


def _set_budget(path: Path, studies: dict[str, Any], budget: int) -> None:
    """Give every study the budget ``budget``. A larger one extends the study; a smaller one lowers it
    only while no pooler has used more trials than that (the same budget for all stays true), else
    DinbenchError, before any study is changed."""
    used_by = {spec: counts(st) for spec, st in studies.items() if budget < int(st.user_attrs.get("budget", 0))}
    over = {spec: n for spec, n in used_by.items() if n > budget}
    if over:
        used = ", ".join(f"{spec} {n}" for spec, n in over.items())
        raise DinbenchError(
            f"study '{path.stem}' cannot go down to {budget} trials per pooler: {used} trials are counted "
            f"already; give --trials {max(over.values())} or more")
    for study in studies.values():
        study.set_user_attr("budget", budget)


def _draw_index(study) -> int:
    """The index of the next trial among those that were not cut off (cut-off trials are asked again,
    so the next one takes the place of the first cut-off one in an uninterrupted study)."""
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if not (t.state == TrialState.FAIL and not t.user_attrs.get(COUNTED)))


def _pruner():
    """The pruner of every study (and of a Ray task's copy of one)."""
    return _optuna().pruners.MedianPruner(PRUNER_STARTUP, n_warmup_steps=1)


def _sampler(seed: int, number: int):
    """TPE seeded from (seed, trial number): the draws of trial n depend on the study's history only."""
    optuna = _optuna()
    # constant liar: a trial asked while others run is steered away from them (Optuna 5's default,
    # explicit for Optuna 4); with one trial at a time nothing is running and it changes nothing
    return optuna.samplers.TPESampler(seed=(seed * 1_000_003 + number) % 2**32, n_startup_trials=STARTUP_TRIALS,
                                      constant_liar=True)


def blind(prepared):
    """``prepared`` without test rows: what a trial trains on, so the test split cannot be read."""
    splits = {**prepared.splits, "test": prepared.splits["test"].iloc[:0]}
    return dataclasses.replace(prepared, splits=splits)


# ---- one trial, in any process


def run_trial(cfg: RunConfig, prepared, report: Callable[[int, float], bool] | None = None,
              stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Train ``cfg`` on ``prepared`` without its test split; per-epoch valid GAUC goes to
    ``report(epoch, gauc)``, which returns True to prune. Returns history, best, best_epoch,
    pruned, error and interrupted (never raises for a training failure)."""
    from dinbench.checkpoint import RunInterrupted
    from dinbench.runtime import LocalRuntime
    from dinbench.train import Diverged, Trainer

    class TrialTrainer(Trainer):
        def select(self, state, entry):
            out_of_patience = super().select(state, entry)
            history.append(entry["valid"]["gauc"])
            if report is not None and report(entry["epoch"], entry["valid"]["gauc"]):
                raise _Pruned(entry["epoch"])
            return out_of_patience

    history: list[float] = []
    started = time.perf_counter()
    out: dict[str, Any] = {"pruned": False, "error": None, "interrupted": False}
    try:
        TrialTrainer(cfg, blind(prepared), LocalRuntime(), stop=stop).fit()
    except _Pruned:
        out["pruned"] = True
    except RunInterrupted:
        out["interrupted"] = True
    except Diverged as exc:
        out["error"] = str(exc)
    except DinbenchError as exc:
        out["error"] = str(exc).splitlines()[0]
    finite = [(g, e) for e, g in enumerate(history, 1) if math.isfinite(g)]
    best = max(finite, key=lambda x: (x[0], -x[1])) if finite else (float("nan"), 0)
    if not finite and out["error"] is None and not out["interrupted"]:
        out["error"] = "valid GAUC was never finite"
    out.update(history=history, best=best[0], best_epoch=best[1], seconds=time.perf_counter() - started)
    return out


_PREPARED: dict[str, Any] = {}  # per pool process: data dir + dataset -> Prepared


def trial_task(cfg: RunConfig, source, url: str, study_name: str, trial_id: int) -> dict[str, Any]:
    """One trial where it runs (the driver, or a pool process): ``source`` is the Prepared, or the
    data dir to load it from; per-epoch valid GAUC is reported to the study at ``url``."""
    optuna = _optuna()
    if isinstance(source, str):
        from dinbench.prepared import contract

        key = f"{source}\0{cfg.dataset}"
        if key not in _PREPARED:
            _PREPARED[key] = contract.load(Path(source), cfg.dataset)
        source = _PREPARED[key]
    from dinbench import sweep

    study = optuna.load_study(study_name=study_name, storage=_storage(url), pruner=_pruner())
    trial = optuna.trial.Trial(study, trial_id)

    def report(epoch: int, gauc: float) -> bool:
        if not math.isfinite(gauc):
            return False
        trial.report(gauc, epoch)
        return trial.should_prune()

    stop = sweep._STOP.is_set if sweep._STOP is not None else None
    return run_trial(cfg, source, report, stop)


def completed_curves(study) -> list[tuple[float, dict[int, float]]]:
    """What the pruner reads of ``study`` now: (value, per-epoch valid GAUC) of its completed trials."""
    from optuna.trial import TrialState

    return [(float(t.value), dict(t.intermediate_values))
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]


def snapshot_report(completed: list[tuple[float, dict[int, float]]]) -> Callable[[int, float], bool]:
    """A trial's ``report(epoch, gauc)`` against a copy of the study's completed trials (in memory):
    the study's own pruner, deciding as it would on the study file holding just those trials."""
    optuna = _optuna()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0), pruner=_pruner())
    for value, curve in completed:
        study.add_trial(optuna.trial.create_trial(value=value, intermediate_values=curve, params={}, distributions={}))
    trial = study.ask()

    def report(epoch: int, gauc: float) -> bool:
        if not math.isfinite(gauc):
            return False
        trial.report(gauc, epoch)
        return trial.should_prune()

    return report


def ray_trial_task(cfg: RunConfig, prepared, threads: int,
                   completed: list[tuple[float, dict[int, float]]]) -> dict[str, Any]:
    """One trial in a Ray task: ``run_trial`` with torch on ``threads`` threads, pruned against
    ``completed`` (the driver's snapshot); opens no file of the driver's (it may be on another node)."""
    from dinbench.runtime import set_threads

    set_threads(threads)
    return run_trial(cfg, prepared, snapshot_report(completed))


# ---- the driver


@dataclass
class Finished:
    """A trial that ended, for the progress display."""

    spec: str
    number: int
    state: str  # complete, pruned, failed
    value: float
    best: float  # the pooler's best valid GAUC so far
    done: int  # trials counted so far
    budget: int
    params: dict[str, Any]
    note: str = ""


class _FutureExecutor:
    """An executor of ``concurrent.futures`` futures whose trials report to the study file themselves."""

    workers = 1
    driver_reports = False  # the trials write their per-epoch values to the study (the pruner reads them live)

    def submit(self, fn, *args) -> Future:
        raise NotImplementedError

    def submit_trial(self, cfg: RunConfig, source, url: str, study, trial) -> Future:
        return self.submit(trial_task, cfg, source, url, study.study_name, trial._trial_id)

    def wait(self, pending: list[Future]) -> set[Future]:
        return wait(pending, return_when=FIRST_COMPLETED)[0]

    def result(self, future: Future) -> dict[str, Any]:
        return future.result()

    def failure(self, exc: BaseException) -> str:
        return f"a trial's worker process died ({exc.__class__.__name__}: killed, or out of memory?)"


class InlineExecutor(_FutureExecutor):
    """Trials one after another in this process (``--workers 1``), as futures already done."""

    workers = 1

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - as a pool's future would hold it
            future.set_exception(exc)
        return future

    def close(self, cancel: bool = False) -> None:
        pass


class PoolExecutor(_FutureExecutor):
    """Trials in the local sweep executor's process pool."""

    def __init__(self, plan) -> None:
        from dinbench import sweep

        self.workers = plan.workers
        self.pool, self.stop, _ = sweep.local_pool(plan)

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self.stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def ray_slots(nodes: list[dict[str, Any]], cpus: float, gpus: float) -> int:
    """How many tasks of ``cpus`` CPUs and ``gpus`` GPUs the alive ``nodes`` (``ray.nodes()``) hold at
    once: the trials ``tune`` keeps in flight on Ray (at least 1)."""
    slots = 0
    for node in nodes:
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fit = int(have.get("CPU", 0) / cpus + 1e-9) if cpus else 1 << 30
        if gpus:
            fit = min(fit, int(have.get("GPU", 0) / gpus + 1e-9))
        slots += fit
    return max(1, slots)


class RayExecutor:
    """Trials as Ray tasks (``dinbench tune --executor ray``), sized as a ray sweep sizes its runs
    (``--threads`` CPUs, ``--gpus-per-run`` GPUs each; ``dinbench.sweep.connect_ray``).

    As many trials are in flight as the cluster's nodes hold such tasks (``ray_slots``): as in a ray
    sweep, the cluster decides, not ``--workers``. The prepared data goes to the object store once,
    without its test split. The driver keeps the study: a task is given the completed trials'
    per-epoch values (``completed_curves``) and returns its own, which the driver writes."""

    driver_reports = True

    def __init__(self, plan, prepared) -> None:
        from dinbench import sweep

        self.ray = sweep.connect_ray(plan)
        try:
            self.threads = plan.threads
            self.workers = ray_slots(self.ray.nodes(), plan.threads, plan.gpus_per_run or 0)
            self.data = self.ray.put(blind(prepared))
            self.task = self.ray.remote(num_cpus=plan.threads, num_gpus=plan.gpus_per_run, max_retries=0)(ray_trial_task)
        except BaseException:
            self.ray.shutdown()
            raise
        self.pending: set[Any] = set()

    def submit_trial(self, cfg: RunConfig, source, url: str, study, trial):
        ref = self.task.remote(cfg, self.data, self.threads, completed_curves(study))
        self.pending.add(ref)
        return ref

    def wait(self, pending: list[Any]) -> list[Any]:
        return self.ray.wait(list(pending), num_returns=1)[0]

    def result(self, ref) -> dict[str, Any]:
        self.pending.discard(ref)
        return self.ray.get(ref)

    def failure(self, exc: BaseException) -> str:
        from dinbench.sweep import _one_line

        return f"a trial's Ray task failed ({_one_line(exc)})"

    def close(self, cancel: bool = False) -> None:
        if self.ray is None:
            return  # closed already (on a failure, then by the caller's finally)
        if cancel:
            for ref in self.pending:
                self.ray.cancel(ref)
        self.pending.clear()
        self.ray.shutdown()
        self.ray = None


def tune(setup: Setup, specs: list[str], budget: int, path: Path, executor, source,
         on_trial: Callable[[Finished], None] | None = None, studies: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run trials until every pooler of ``specs`` has ``budget`` counted trials; returns the studies.

    ``source``: the Prepared (inline) or the data dir as a string (pool); a RayExecutor holds its
    own. Poolers take turns, the one with the most trials to go first, so a stopped tune leaves them
    nearly level.
    """
    _optuna()
    from optuna.trial import TrialState

    studies = studies if studies is not None else open_studies(path, setup, specs, budget)
    url = storage_url(path)
    to_go = {spec: max(0, budget - counts(studies[spec])) for spec in specs}
    in_flight: dict[Any, tuple[str, Any, RunConfig]] = {}  # future (or Ray ref) -> its trial
    asked: list[tuple[str, Any, RunConfig]] = []
    with sigterm_interrupts():  # kill PID stops like Ctrl-C: workers stopped, cut-off trials not counted
        try:
            while any(to_go.values()) or in_flight:
                while len(in_flight) < executor.workers and any(to_go.values()):
                    spec = max(specs, key=lambda s: to_go[s])  # first of the most behind
                    study = studies[spec]
                    study.sampler = _sampler(setup.seed, _draw_index(study))
                    trial = study.ask()
                    shared, own = sample(trial, setup.space, spec)
                    cfg = setup.config(spec, shared, own)
                    trial.set_user_attr("config", _jsonable(cfg.to_dict()))
                    to_go[spec] -= 1
                    asked = [(spec, trial, cfg)]  # inline, the trial runs inside submit
                    in_flight[executor.submit_trial(cfg, source, url, study, trial)] = asked.pop()
                for future in executor.wait(list(in_flight)):
                    spec, trial, cfg = in_flight.pop(future)
                    try:
                        out = executor.result(future)
                    except Exception as exc:  # noqa: BLE001 - its worker died: drop what is under way
                        _drop(studies, [(spec, trial, cfg), *in_flight.values()], TrialState)
                        executor.close(cancel=True)
                        raise DinbenchError(f"{executor.failure(exc)}; rerun the same command to continue "
                                            "(finished trials are kept)") from None
                    if getattr(executor, "driver_reports", False):
                        _report_history(trial, out)
                    finished = _tell(studies[spec], trial, out, budget, TrialState)
                    if out.get("interrupted"):
                        to_go[spec] += 1  # cut off by a stop: not counted
                        continue
                    if on_trial is not None:
                        on_trial(finished)
        except KeyboardInterrupt:
            executor.close(cancel=True)
            _drop(studies, [*asked, *in_flight.values()], TrialState)
            raise TuneInterrupted("tune interrupted; rerun the same command to continue (finished trials are kept)") from None
    return studies


def _report_history(trial, out: dict[str, Any]) -> None:
    """Write a trial's per-epoch valid GAUC to the study from the driver (Ray: the task could not)."""
    for epoch, gauc in enumerate(out.get("history", []), 1):
        if math.isfinite(gauc):
            trial.report(gauc, epoch)


def _drop(studies, running, TrialState) -> None:
    """Mark trials cut off before they ended as failed, not counted: a rerun asks them again."""
    for spec, trial, _ in list(running):
        studies[spec].tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _tell(study, trial, out: dict[str, Any], budget: int, TrialState) -> Finished:
    trial.set_user_attr("history", [g if math.isfinite(g) else None for g in out.get("history", [])])
    trial.set_user_attr("best_epoch", int(out.get("best_epoch") or 0))
    trial.set_user_attr("seconds", float(out.get("seconds") or 0.0))
    if out.get("interrupted"):
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        state = "cut off"
    elif out.get("pruned"):
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        state = "pruned"
    elif out.get("error"):
        trial.set_user_attr(COUNTED, True)
        trial.set_user_attr("error", out["error"])
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        state = "failed"
    else:
        study.tell(trial, out["best"], skip_if_finished=True)
        state = "complete"
    best = _best(study)
    return Finished(spec=study.study_name, number=trial.number, state=state, value=float(out.get("best", math.nan)),
                    best=best.value if best is not None else math.nan, done=counts(study), budget=budget,
                    params=dict(trial.params), note=out.get("error") or "")


def _best(study):
    """The best completed trial (ties: the earliest), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


# ---- the best trials, for `run --tuned`


@dataclass(frozen=True)
class Best:
    """A pooler's best trial in a study."""

    spec: str
    number: int
    value: float
    config: dict[str, Any]
    done: int
    budget: int
    searched: list[str]

    def run_config(self, seed: int, **changes: Any) -> RunConfig:
        return config_from_record(self.config, seed=seed, **changes)

    def tag(self, study: str, path: Path, results_dir: Path) -> dict[str, Any]:
        """The record's ``tuning`` field: which study and trial its settings came from."""
        try:
            where = str(path.relative_to(results_dir))
        except ValueError:
            where = str(path)
        return {"study": study, "db": where, "pooler": self.spec, "trial": self.number,
                "valid_gauc": self.value, "trials": self.done, "budget": self.budget, "searched": self.searched}


def best_trials(path: Path, specs: list[str] | None = None) -> list[Best]:
    """The best trial of every pooler in the study file ``path`` (only ``specs`` if given).

    Refuses (DinbenchError) a study that does not exist, a pooler it has not tuned, or an unequal
    budget: every pooler must have its study's full budget of counted trials."""
    optuna = _optuna()
    if not path.is_file():
        raise DinbenchError(f"no study at {path}; make it with: dinbench tune --dataset {path.parent.name} "
                            f"--study {path.stem} --pooler ... --trials N")
    storage = _storage(storage_url(path))
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    wanted = names if specs is None else [poolers.canonical(s) for s in specs]
    missing = [s for s in wanted if s not in names]
    if missing:
        raise DinbenchError(f"study '{path.stem}' has not tuned {', '.join(missing)} (it has {', '.join(names) or 'none'})")
    out = []
    budget = max(int(optuna.load_study(study_name=s, storage=storage).user_attrs.get("budget", 0)) for s in wanted)
    for spec in wanted:
        study = optuna.load_study(study_name=spec, storage=storage)
        done = counts(study)
        if done < budget:
            raise DinbenchError(
                f"study '{path.stem}': {spec} has {done} of {budget} trials; every pooler needs the same budget - "
                f"finish it with: dinbench tune --dataset {path.parent.name} --study {path.stem} --pooler {spec} --trials {budget}")
        best = _best(study)
        if best is None:
            raise DinbenchError(f"study '{path.stem}': no trial of {spec} completed (all pruned or failed)")
        setup = study.user_attrs.get("setup", {})
        space = setup.get("space", {})
        names_searched = sorted(k for k, v in space.get("shared", {}).items() if "kind" in v) + sorted(
            k for k, v in space.get("own", {}).get(poolers.parse_spec(spec)[0], {}).items() if "kind" in v)
        out.append(Best(spec, best.number, float(best.value), dict(best.user_attrs["config"]), done, budget,
                        names_searched))
    return out

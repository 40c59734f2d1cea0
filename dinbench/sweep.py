"""Executing a sweep's runs in parallel: a local process pool, or Ray tasks on a cluster.

Each run is exactly ``train_run(cfg, prepared, results_dir)``, as ``dinbench run`` does it, in a
process whose torch uses ``threads`` threads: the same seed at the same thread count gives the same
metrics as a sequential ``dinbench run --threads T``.

Where records go:

- ``local``: every worker writes its run's folder straight into the results dir (one machine, one
  disk; run folders are claimed with an exclusive mkdir, so workers never collide).
- ``ray``: a task trains into a temporary folder on whichever node runs it and *returns the run
  folder's files* (record, predictions, model: megabytes) to the driver, which writes them into its
  results dir, record last. Ray clusters rarely share a disk; this way the records land where the
  driver's ``dinbench report`` finds them without one, the driver is the only writer of its
  results dir, and a task whose node dies leaves nothing half-written there. The prepared dataset
  travels the other way through Ray's object store (``ray.put`` once per dataset), so the nodes
  need dinbench installed but no copy of the data.

Ray is optional (``pip install 'dinbench[ray]'``) and imported only inside ``import_ray`` (when a
sweep or ``dinbench tune`` runs on Ray).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any, Callable

from dinbench.config import RunConfig
from dinbench.errors import DinbenchError

EXECUTORS = ("local", "ray")


class SweepInterrupted(DinbenchError):
    """Ctrl-C during a sweep: running runs checkpoint themselves; the CLI exits with 130."""

    exit_code = 130


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _gpu_count(device: str) -> int:
    if device not in ("cuda", "auto"):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_of_worker(index: int, gpus: int) -> int:
    """The GPU the ``index``-th local worker (0-based, in start order) is pinned to: round-robin."""
    return index % gpus


def runs_per_device(workers: int, gpus: int) -> list[int]:
    """How many of ``workers`` concurrent runs share each of ``gpus`` GPUs (round-robin pinning)."""
    counts = [0] * gpus
    for index in range(workers):
        counts[gpu_of_worker(index, gpus)] += 1
    return counts


def describe_sharing(workers: int, gpus: int) -> str:
    """The plan's words for how runs share the devices: '2 GPUs x 4 runs each', or the cores on CPU."""
    if not gpus:
        return "no GPU: the runs share the cores"
    counts = runs_per_device(workers, gpus)
    low, high = min(counts), max(counts)
    each = f"{high} run(s) each" if low == high else f"{low}-{high} run(s) each"
    return f"{gpus} GPU(s) x {each}"


def local_workers(runs: int, workers: int | None, threads: int | None, runs_per_gpu: int | None, gpus: int,
                  cores: int) -> tuple[int, int]:
    """(workers, threads) of a local sweep: the defaults filled in for ``runs`` runs on ``gpus`` GPUs
    and ``cores`` cores; ``runs_per_gpu`` (None: 1) runs share each GPU. Options already checked."""
    if workers is None:
        if gpus:
            workers = (runs_per_gpu or 1) * gpus
        else:
            workers = cores // threads if threads else cores
        workers = max(1, min(workers, runs))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


@dataclass
class Plan:
    """How a sweep runs: executor, parallel runs, torch threads per run, GPUs."""

    executor: str
    workers: int  # local: processes; ray: 0 (the cluster's free CPUs decide)
    threads: int
    gpus: int = 0  # local: GPUs shared out round-robin among the workers (gpu_of_worker)
    gpus_per_run: float | None = 0.0  # ray: GPUs each task reserves (None: 1 if the cluster has GPUs, else 0)
    address: str | None = None
    cores: int = field(default_factory=available_cores)

    def describe(self) -> str:
        if self.executor == "ray":
            where = self.address or os.environ.get("RAY_ADDRESS") or "the local Ray cluster"
            gpus = f", {self.gpus_per_run:g} GPU" if self.gpus_per_run else (", GPUs if any" if self.gpus_per_run is None else "")
            return f"Ray at {where} ({self.threads} CPU{gpus} per run)"
        return (f"{self.workers} local worker(s) x {self.threads} thread(s) ({self.cores} cores; "
                f"{describe_sharing(self.workers, self.gpus)})")


def plan(executor: str, runs: int, workers: int | None, threads: int | None, gpus_per_run: float | None,
         device: str, address: str | None, runs_per_gpu: int | None = None) -> Plan:
    """Check the executor options and fill in the defaults; one-line DinbenchError for bad values."""
    if executor not in EXECUTORS:
        raise DinbenchError(f"unknown --executor '{executor}'; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise DinbenchError(f"--workers must be at least 1 (got {workers})")
    if threads is not None and threads < 1:
        raise DinbenchError(f"--threads must be at least 1 (got {threads})")
    if runs_per_gpu is not None and runs_per_gpu < 1:
        raise DinbenchError(f"--runs-per-gpu must be at least 1 (got {runs_per_gpu})")
    if gpus_per_run is not None and gpus_per_run < 0:
        raise DinbenchError(f"--gpus-per-run must be 0 or more (got {gpus_per_run:g})")
    if executor == "ray":
        if workers is not None:
            raise DinbenchError("--workers is for --executor local; on Ray the cluster's free CPUs decide "
                                "(set --threads, the CPUs each run reserves)")
        if runs_per_gpu is not None:
            raise DinbenchError(f"--runs-per-gpu is for --executor local; on Ray give each run a share of a GPU "
                                f"instead: --gpus-per-run {1 / runs_per_gpu:.3g} puts {runs_per_gpu} runs on each GPU")
        gpus = gpus_per_run if gpus_per_run is not None else {"cuda": 1.0, "auto": None}.get(device, 0.0)
        return Plan("ray", workers=0, threads=threads or 1, gpus_per_run=gpus, address=address)
    if address is not None or gpus_per_run is not None:
        raise DinbenchError("--address and --gpus-per-run are for --executor ray; drop them or add --executor ray")
    cores = available_cores()
    gpus = _gpu_count(device)
    if runs_per_gpu is not None:
        if not gpus:
            raise DinbenchError(f"--runs-per-gpu needs a GPU, and --device {device} trains on none here; drop it "
                                "(on the CPU, --workers and --threads share out the cores)")
        if workers is not None:
            raise DinbenchError(f"give --workers or --runs-per-gpu, not both (--runs-per-gpu {runs_per_gpu} means "
                                f"--workers {runs_per_gpu * gpus} on the {gpus} GPU(s) here)")
    workers, threads = local_workers(runs, workers, threads, runs_per_gpu, gpus, cores)
    if not gpus and workers * threads > cores:
        raise DinbenchError(
            f"--workers {workers} x --threads {threads} = {workers * threads} threads would oversubscribe the "
            f"{cores} core(s) of this machine and slow every run down; make workers x threads at most {cores}"
        )
    return Plan("local", workers=workers, threads=threads, gpus=gpus, cores=cores)


@dataclass
class Outcome:
    """What became of one run: its folder and record, or a one-line error."""

    run_dir: Path | None = None
    record: dict[str, Any] | None = None
    error: str | None = None
    files: dict[str, bytes] | None = None  # ray: the run folder's files, for the driver to write
    run_id: str | None = None


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message (DinbenchErrors as they are, others with their type)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, DinbenchError):
        return text or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


# ---- local: a process pool ------------------------------------------------------------------

_DATASETS: dict[tuple[str, str], Any] = {}  # per worker process: (data dir, name) -> Prepared
_STOP = None  # per worker process: the sweep's stop event (set by the driver on Ctrl-C)
_PROGRESS = None  # per worker process: the queue its runs' progress goes to the driver by
RunProgress = Callable[[int, str, int, int], None]  # (index of the config in todo, stage, done, total)
PROGRESS_POLL_S = 0.2  # how often the driver shows what the queue brought


def _init_worker(threads: int, gpus: int, counter, stop, progress=None) -> None:
    """Runs once in each pool process: pin torch's threads (and a GPU, round-robin)."""
    import torch

    global _STOP, _PROGRESS
    _STOP, _PROGRESS = stop, progress
    if progress is not None:
        progress.cancel_join_thread()  # exit without waiting for the driver to read the last reports
    torch.set_num_threads(threads)
    if gpus:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        torch.cuda.set_device(gpu_of_worker(index, gpus))


def _report(index: int, stage: str, done: int, total: int) -> None:
    _PROGRESS.put((index, stage, done, total))


def _local_task(cfg: RunConfig, data_dir: str, results_dir: str, resume_dir: str | None = None,
                index: int | None = None) -> Outcome:
    """One run in a pool process; every failure comes back as a one-line error, never an exception."""
    from dinbench.prepared import contract
    from dinbench.train import train_run

    if _STOP is not None and _STOP.is_set():
        return Outcome(error="not started: the sweep was interrupted")
    try:
        key = (data_dir, cfg.dataset)
        if key not in _DATASETS:
            _DATASETS[key] = contract.load(Path(data_dir), cfg.dataset)
        stop = _STOP.is_set if _STOP is not None else None  # checkpoint at the next batch on Ctrl-C
        progress = functools.partial(_report, index) if _PROGRESS is not None and index is not None else None
        run_dir, record = train_run(cfg, _DATASETS[key], Path(results_dir), stop=stop, progress=progress,
                                    resume_dir=Path(resume_dir) if resume_dir else None)
        return Outcome(run_dir=run_dir, record=record)
    except Exception as exc:  # noqa: BLE001 - reported as one line; the sweep goes on
        return Outcome(error=_one_line(exc))


def _drain(queue, on_progress: RunProgress | None) -> None:
    """Hand what the workers reported so far to ``on_progress``."""
    while queue is not None:
        try:
            message = queue.get_nowait()
        except Empty:
            return
        if on_progress is not None:
            on_progress(*message)


@contextlib.contextmanager
def sigterm_interrupts():
    """While the block runs, SIGTERM (``kill PID``, a scheduler's stop) stops like Ctrl-C: it raises
    KeyboardInterrupt in the main thread, so a sweep or ``tune`` driver stops its pool's workers and
    leaves its bookkeeping right, instead of dying with its workers left running as orphans."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def local_pool(plan: Plan, progress: bool = False) -> tuple[ProcessPoolExecutor, Any, Any]:
    """The local executor's process pool for ``plan`` (each worker's torch threads and GPU pinned, see
    ``_init_worker``), its stop event (set it on Ctrl-C: running work checkpoints or stops) and, with
    ``progress``, the queue the workers report their progress on (else None).
    Used by sweeps and by ``dinbench tune``'s trials."""
    import multiprocessing as mp

    # spawn, not fork: a forked torch (its thread pools, maybe CUDA) is not safe to use
    ctx = mp.get_context("spawn")
    counter, stop = ctx.Value("i", 0), ctx.Event()
    queue = ctx.Queue() if progress else None
    pool = ProcessPoolExecutor(max_workers=plan.workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(plan.threads, plan.gpus, counter, stop, queue))
    return pool, stop, queue


def _execute_local(plan: Plan, todo: list[RunConfig], data_dir: Path, results_dir: Path,
                   on_done: Callable[[RunConfig, Outcome], None], resume: list[Path | None],
                   on_progress: RunProgress | None = None) -> None:
    with sigterm_interrupts():  # kill PID stops like Ctrl-C: workers stopped, runs marked interrupted
        pool, stop, queue = local_pool(plan, progress=on_progress is not None)
        try:
            pending = {pool.submit(_local_task, cfg, str(data_dir), str(results_dir), str(where) if where else None, i): cfg
                       for i, (cfg, where) in enumerate(zip(todo, resume))}
            while pending:
                finished, _ = wait(pending, timeout=PROGRESS_POLL_S if queue is not None else None,
                                   return_when=FIRST_COMPLETED)
                _drain(queue, on_progress)
                for future in finished:
                    cfg = pending.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        outcome = Outcome(error="its worker process died (killed, or out of memory?); "
                                                "its record, if any, stays 'running'")
                    except Exception as exc:  # noqa: BLE001
                        outcome = Outcome(error=_one_line(exc))
                    on_done(cfg, outcome)
        except KeyboardInterrupt:
            stop.set()  # running runs checkpoint and mark themselves interrupted; queued ones do not start
            pool.shutdown(wait=True, cancel_futures=True)
            raise SweepInterrupted("sweep interrupted; rerun the same command to continue (completed runs are skipped)") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# ---- ray: tasks on a cluster ---------------------------------------------------------------

def _ray_task(cfg: RunConfig, prepared, threads: int, argv: list[str]) -> Outcome:
    """One run on a Ray worker: train into a temporary folder and return the folder's files."""
    import torch

    from dinbench.train import train_run

    torch.set_num_threads(threads)
    sys.argv = list(argv)  # the record's "command" names the sweep that made it
    with tempfile.TemporaryDirectory(prefix="dinbench-ray-") as tmp:
        error = None
        try:
            train_run(cfg, prepared, Path(tmp))
        except Exception as exc:  # noqa: BLE001 - reported as one line; the sweep goes on
            error = _one_line(exc)
        runs = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if not runs:
            return Outcome(error=error or "no run folder was made")
        run_dir = runs[0]
        files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
        return Outcome(error=error, files=files, run_id=run_dir.name)


def store_run(results_dir: Path, run_id: str, files: dict[str, bytes]) -> Path:
    """Write a run folder returned by a Ray task into ``results_dir`` (record.json last, each atomically)."""
    import json

    from dinbench.atomic import write_atomic
    from dinbench.records import RECORD

    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise DinbenchError(f"a Ray task returned a bad run id {run_id!r}")
    results_dir.mkdir(parents=True, exist_ok=True)
    run_dir = results_dir / run_id
    run_dir.mkdir()  # exclusive: run ids carry a timestamp and a random token
    for name in sorted(files, key=lambda n: n == RECORD):
        if "/" in name or "\\" in name:
            raise DinbenchError(f"a Ray task returned a bad file name {name!r}")
        data = files[name]
        write_atomic(run_dir / name, lambda tmp, data=data: tmp.write_bytes(data))
    json.loads(files.get(RECORD, b"{}"))  # a record that does not parse fails here, loudly
    return run_dir


def _fit_cluster(plan: Plan, ray) -> None:
    """Settle ``--device auto``'s GPUs and refuse, in one line, tasks no node of the cluster could run
    (Ray would otherwise wait for them forever)."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
    most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
    if plan.gpus_per_run is None:
        plan.gpus_per_run = 1.0 if most_gpus else 0.0  # the runs' device "auto" then finds a GPU, or the CPU
    if plan.threads > most_cpus:
        raise DinbenchError(f"--threads {plan.threads}: no node of the Ray cluster has that many CPUs (at most "
                            f"{most_cpus:g}); lower --threads")
    if plan.gpus_per_run > most_gpus:
        raise DinbenchError(f"each run asks for {plan.gpus_per_run:g} GPU but no node of the Ray cluster has "
                            f"{'any' if not most_gpus else 'that many'} (at most {most_gpus:g}); "
                            "use --device cpu, or a smaller --gpus-per-run")


def import_ray():
    """The ``ray`` module, or a one-line DinbenchError saying how to install it (Ray is optional)."""
    try:
        import ray
    except ImportError:
        raise DinbenchError("--executor ray needs Ray, which is not installed: pip install 'dinbench[ray]'") from None
    return ray


def connect_ray(plan: Plan):
    """Connect to the Ray cluster of ``plan`` and check its tasks fit a node (``_fit_cluster``); the
    ``ray`` module. Every failure is one line. The caller calls ``ray.shutdown()`` when done.
    Used by ray sweeps and by ``dinbench tune --executor ray``."""
    ray = import_ray()
    try:
        ray.init(address=plan.address, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise DinbenchError(
            f"cannot connect to the Ray cluster at {plan.address or os.environ.get('RAY_ADDRESS') or 'auto'} "
            f"({_one_line(exc)}); start one with `ray start --head` or fix --address"
        ) from None
    try:
        _fit_cluster(plan, ray)
    except BaseException:
        ray.shutdown()
        raise
    return ray


def _execute_ray(plan: Plan, todo: list[RunConfig], results_dir: Path,
                 on_done: Callable[[RunConfig, Outcome], None], shipped: dict[str, Any]) -> None:
    import json

    ray = connect_ray(plan)
    try:
        refs = {name: ray.put(prepared) for name, prepared in shipped.items()}
        task = ray.remote(num_cpus=plan.threads, num_gpus=plan.gpus_per_run, max_retries=0)(_ray_task)
        pending = {task.remote(cfg, refs[cfg.dataset], plan.threads, sys.argv): cfg for cfg in todo}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    cfg = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a crashed worker or node
                        outcome = Outcome(error=_one_line(exc))
                    if outcome.files is not None:
                        try:
                            outcome.run_dir = store_run(results_dir, outcome.run_id, outcome.files)
                            outcome.record = json.loads(outcome.files["record.json"])
                        except (OSError, ValueError, KeyError, DinbenchError) as exc:
                            outcome.error = outcome.error or f"could not store its record: {_one_line(exc)}"
                        outcome.files = None
                    on_done(cfg, outcome)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)
            raise SweepInterrupted("sweep interrupted; rerun the same command to continue (completed runs are skipped)") from None
    finally:
        ray.shutdown()


def execute(plan: Plan, todo: list[RunConfig], data_dir: Path, results_dir: Path,
            on_done: Callable[[RunConfig, Outcome], None], shipped: dict[str, Any] | None = None,
            resume: list[Path | None] | None = None, on_progress: RunProgress | None = None) -> None:
    """Run every config of ``todo``; ``on_done(cfg, outcome)`` is called in the driver as each ends.

    ``shipped``: dataset name -> Prepared, for Ray. ``resume``: per config, the folder of an
    interrupted run of it to continue from its checkpoint (local executor only), or None.
    ``on_progress(i, stage, done, total)``: the training progress of ``todo[i]`` (dinbench.train's
    progress callback), called in the driver; the local executor reports it, Ray does not.
    """
    if plan.executor == "ray":
        _execute_ray(plan, todo, results_dir, on_done, shipped or {})
    else:
        _execute_local(plan, todo, data_dir, results_dir, on_done, resume or [None] * len(todo), on_progress)


@dataclass
class Todo:
    """A sweep's grid split by what the results dir already holds."""

    existing: list[Any]  # records.Loaded of completed runs of the grid (skipped)
    configs: list[RunConfig]  # to run, in grid order
    resume: list[Path | None]  # per config to run: an interrupted run's folder to continue, or None


def split_done(configs: list[RunConfig], fingerprints: dict[str, str], results_dir: Path, skip_existing: bool,
               resumable: bool) -> Todo:
    """Which runs of ``configs`` are done (a completed record of the same run identity in
    ``results_dir``), which are to run, and which of those continue an interrupted run's checkpoint
    (``resumable``: the local executor, whose workers see this disk)."""
    from dinbench.checkpoint import CHECKPOINT
    from dinbench.grid import record_identity, run_identity
    from dinbench.records import load_records

    done: dict[str, Any] = {}
    interrupted: dict[str, Path] = {}
    if skip_existing:
        for item in load_records(results_dir)[0]:
            key = record_identity(item.record)
            if key is not None:
                done.setdefault(key, item)
            key = record_identity(item.record, ("interrupted",))
            if key is not None and resumable and (item.path.parent / CHECKPOINT).is_file():
                interrupted[key] = item.path.parent
    todo = Todo([], [], [])
    for cfg in configs:
        key = run_identity(fingerprints[cfg.dataset], cfg.to_dict())
        if key in done:
            todo.existing.append(done[key])
        else:
            todo.configs.append(cfg)
            todo.resume.append(interrupted.pop(key, None))
    return todo

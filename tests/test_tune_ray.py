"""dinbench tune --executor ray, without Ray: a fake ``ray`` module stands in for a cluster.

The fake runs each task in this process, but only as a Ray worker on another node could: its
arguments and result go through pickle (Ray's object store), and while it runs, opening any SQLite
file fails (no shared disk: only the driver may touch the study). Tasks finish newest first, so
with several in flight they end out of order, as on a cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import pickle
import sqlite3
import sys
import types

import pytest

pytest.importorskip("optuna")

from dinbench import space as space_mod  # noqa: E402
from dinbench import sweep, tuning  # noqa: E402
from dinbench.errors import DinbenchError  # noqa: E402
from dinbench.options import Search  # noqa: E402

from helpers import assert_user_error  # noqa: E402


class _Ref:
    _ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(self._ids)

    def __eq__(self, other) -> bool:  # a ref survives pickling, as Ray's do
        return isinstance(other, _Ref) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"ObjectRef({self.id})"


@contextlib.contextmanager
def _no_driver_files(monkeypatch):
    """While a task runs: no SQLite file opens (the study is the driver's, on the driver's disk)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a Ray task opened a database: {args}")

    with monkeypatch.context() as mp:
        mp.setattr(sqlite3, "connect", refuse)
        mp.setattr(tuning, "_storage", refuse)
        yield


class FakeRay(types.ModuleType):
    """The parts of ``ray`` that dinbench uses, for a cluster of ``nodes`` (ray.nodes() entries)."""

    def __init__(self, monkeypatch, nodes, fail_on_call: int | None = None) -> None:
        super().__init__("ray")
        self._mp = monkeypatch
        self._nodes = nodes
        self.fail_on_call = fail_on_call  # this task (0-based) dies, as a node lost mid-trial
        self.address = "unset"
        self.objects: dict[_Ref, bytes] = {}
        self.queued: dict[_Ref, tuple] = {}
        self.done: dict[_Ref, bytes] = {}
        self.calls: list[tuple[str, str]] = []  # (task name, pooler) per task submitted
        self.resources: dict = {}
        self.peak = 0  # most tasks in flight at once
        self.cancelled: list[_Ref] = []
        self.shutdowns = 0

    def init(self, address=None, **kwargs) -> None:
        self.address = address

    def nodes(self):
        return self._nodes

    def put(self, obj) -> _Ref:
        ref = _Ref()
        self.objects[ref] = pickle.dumps(obj)
        return ref

    def remote(self, **resources):
        self.resources = resources
        fake = self

        class Remote:
            def __init__(self, fn) -> None:
                self.fn = fn

            def remote(self, *args):
                ref = _Ref()
                fake.calls.append((self.fn.__name__, args[0].pooler))
                fake.queued[ref] = (self.fn, pickle.dumps(args), len(fake.calls) - 1)
                return ref

        return Remote

    def _run(self, ref) -> None:
        fn, blob, call = self.queued.pop(ref)
        if call == self.fail_on_call:
            self.done[ref] = b"died"
            return
        args = [pickle.loads(self.objects[a]) if isinstance(a, _Ref) else a for a in pickle.loads(blob)]
        with _no_driver_files(self._mp):
            self.done[ref] = pickle.dumps(fn(*args))

    def wait(self, refs, num_returns=1):
        refs = list(refs)
        self.peak = max(self.peak, len(refs))
        ref = next((r for r in reversed(refs) if r in self.done), refs[-1])  # newest first
        if ref not in self.done:
            self._run(ref)
        return [ref], [r for r in refs if r != ref]

    def get(self, ref):
        if self.done[ref] == b"died":
            raise RuntimeError("The worker died unexpectedly while executing this task.\n(more lines)")
        return pickle.loads(self.done.pop(ref))

    def cancel(self, ref) -> None:
        self.cancelled.append(ref)

    def shutdown(self) -> None:
        self.shutdowns += 1


def cpus(n: int, gpus: float = 0.0) -> list[dict]:
    return [{"Alive": True, "Resources": {"CPU": float(n), "GPU": gpus}}]


@pytest.fixture
def fake_ray(monkeypatch):
    def make(nodes=None, **kw) -> FakeRay:
        fake = FakeRay(monkeypatch, nodes if nodes is not None else cpus(2), **kw)
        monkeypatch.setitem(sys.modules, "ray", fake)
        return fake

    return make


def fast_space() -> space_mod.Space:
    """The default space with batches the size of the tiny dataset: a trial takes a fraction of a second."""
    base = space_mod.default_space()
    return space_mod.Space({**base.shared, "batch_size": Search("choice", values=(512, 1024))}, base.own)


def setup_for(tiny, epochs: int = 2) -> tuning.Setup:
    return tuning.Setup("synthetic", tiny.fingerprint, fast_space(), {"epochs": epochs}, 0)


def ray_tune(tiny, path, specs, budget, threads=1, epochs=2):
    plan = sweep.plan("ray", 1, None, threads, None, "cpu", None)
    executor = tuning.RayExecutor(plan, tiny)
    finished = []
    try:
        tuning.tune(setup_for(tiny, epochs), specs, budget, path, executor, None, finished.append)
    finally:
        executor.close()
    return finished, executor


def trials_of(path, spec):
    import optuna

    return optuna.load_study(study_name=spec, storage=tuning.storage_url(path)).get_trials()


def summary(path, spec):
    return [(t.number, t.state.name, t.value, t.params, t.intermediate_values, t.user_attrs["history"])
            for t in trials_of(path, spec)]


def test_one_trial_at_a_time_on_ray_is_the_inline_study_pruning_included(fake_ray, tiny, tmp_path):
    """With one slot, the snapshot a task prunes against is the study as it is while the trial
    trains: the same trials, values, per-epoch values and pruning decisions as in this process."""
    fake = fake_ray(cpus(1))
    finished, executor = ray_tune(tiny, tmp_path / "ray.db", ["average"], 8)
    inline = tmp_path / "inline.db"
    tuning.tune(setup_for(tiny), ["average"], 8, inline, tuning.InlineExecutor(), tiny)
    assert summary(tmp_path / "ray.db", "average") == summary(inline, "average")
    states = [f.state for f in finished]
    assert "pruned" in states and states.count("complete") >= 5  # the pruner did act, on the Ray side
    assert executor.workers == 1 and fake.peak == 1
    assert [name for name, _ in fake.calls] == ["ray_trial_task"] * 8


def test_trials_go_through_ray_tasks_with_the_same_budget_per_pooler(fake_ray, tiny, tmp_path):
    fake = fake_ray(cpus(3) + [{"Alive": False, "Resources": {"CPU": 64.0}}])
    path = tmp_path / "s.db"
    finished, executor = ray_tune(tiny, path, ["average", "din:none"], 3)
    assert sorted(pooler for _, pooler in fake.calls) == ["average"] * 3 + ["din:none"] * 3
    assert sorted(f.spec for f in finished) == ["average"] * 3 + ["din:none"] * 3
    assert executor.workers == 3 and fake.peak == 3  # the alive node's CPUs / --threads, all in use
    assert fake.resources == {"num_cpus": 1, "num_gpus": 0.0, "max_retries": 0}
    assert fake.shutdowns == 1
    shipped, = [pickle.loads(b) for b in fake.objects.values()]
    assert len(shipped.splits["test"]) == 0 and len(shipped.splits["valid"]) == len(tiny.splits["valid"])
    for spec in ("average", "din:none"):
        trials = trials_of(path, spec)
        assert len(trials) == 3 and tuning.counts(tuning.load(path, spec)) == 3
        for t in trials:  # the driver wrote each task's per-epoch values: the pruner's input for later trials
            assert t.state.name == "COMPLETE"
            assert t.intermediate_values == {e: g for e, g in enumerate(t.user_attrs["history"], 1)}
            assert sorted(t.intermediate_values) == [1, 2] and t.value == max(t.intermediate_values.values())
    best = {b.spec: b for b in tuning.best_trials(path)}
    assert best["average"].budget == best["din:none"].budget == 3


def test_a_resumed_ray_study_asks_only_the_missing_trials(fake_ray, tiny, tmp_path):
    path = tmp_path / "s.db"
    fake_ray(cpus(2))
    ray_tune(tiny, path, ["average", "dot:softmax"], 2, epochs=1)
    # a driver killed mid-trial leaves that trial running in the study: it must neither count nor block
    study = tuning.open_studies(path, setup_for(tiny, 1), ["dot:softmax"], 2)["dot:softmax"]
    study.sampler = tuning._sampler(0, 2)
    study.ask()
    fake = fake_ray(cpus(2))
    finished, _ = ray_tune(tiny, path, ["average", "dot:softmax"], 3, epochs=1)
    assert sorted(pooler for _, pooler in fake.calls) == ["average", "dot:softmax"]  # one more each, not three
    assert sorted((f.spec, f.done) for f in finished) == [("average", 3), ("dot:softmax", 3)]
    for spec in ("average", "dot:softmax"):
        states = [t.state.name for t in trials_of(path, spec)]
        assert states.count("COMPLETE") + states.count("PRUNED") == 3
    assert [t.state.name for t in trials_of(path, "dot:softmax")].count("FAIL") == 1  # the cut-off one, not counted
    fake = fake_ray(cpus(2))
    assert ray_tune(tiny, path, ["average", "dot:softmax"], 3, epochs=1)[0] == [] and fake.calls == []


def test_a_lost_ray_task_is_one_line_and_the_trials_under_way_do_not_count(fake_ray, tiny, tmp_path):
    fake = fake_ray(cpus(2), fail_on_call=2)
    path = tmp_path / "s.db"
    with pytest.raises(DinbenchError) as info:
        ray_tune(tiny, path, ["average"], 4, epochs=1)
    msg = str(info.value)
    assert msg.startswith("a trial's Ray task failed (RuntimeError: The worker died unexpectedly") and "\n" not in msg
    assert "rerun the same command to continue" in msg
    assert fake.shutdowns == 1 and fake.cancelled  # the other trial in flight was cancelled
    study = tuning.load(path, "average")
    assert tuning.counts(study) == len([t for t in trials_of(path, "average") if t.state.name == "COMPLETE"]) < 4
    assert not [t for t in trials_of(path, "average") if t.state.name == "RUNNING"]


def test_the_snapshot_pruner_decides_as_the_studys_pruner():
    """A Ray task prunes against a copy of the completed trials; the copy decides as the study file would."""
    import random

    import optuna

    rng = random.Random(0)
    decisions = set()
    for case in range(40):
        completed = [(0.0, {e: rng.uniform(0.4, 0.8) for e in range(1, rng.randint(1, 4) + 1)})
                     for _ in range(rng.randint(0, 8))]
        completed = [(max(c.values()), c) for _, c in completed]
        live = optuna.create_study(direction="maximize", pruner=tuning._pruner())
        for value, curve in completed:
            live.add_trial(optuna.trial.create_trial(value=value, intermediate_values=curve, params={}, distributions={}))
        trial = live.ask()
        report = tuning.snapshot_report(completed)
        for epoch in range(1, 5):
            gauc = rng.choice([rng.uniform(0.4, 0.8), math.nan])
            got = report(epoch, gauc)
            if math.isfinite(gauc):
                trial.report(gauc, epoch)
                want = trial.should_prune()
            else:
                want = False
            assert got == want, (case, epoch)
            decisions.add(got)
            if got:
                break
    assert decisions == {True, False}
    assert tuning.completed_curves(live) == [(v, c) for v, c in completed]


def test_ray_slots_count_the_tasks_the_alive_nodes_hold():
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}},
             {"Alive": True, "Resources": {"CPU": 5.0}},
             {"Alive": False, "Resources": {"CPU": 100.0, "GPU": 8.0}}]
    assert tuning.ray_slots(nodes, 2, 0) == 4 + 2
    assert tuning.ray_slots(nodes, 1, 1.0) == 2  # GPUs bind: the CPU-only node holds none
    assert tuning.ray_slots(nodes, 1, 0.25) == 8
    assert tuning.ray_slots(nodes, 3, 0.5) == 2  # 8 CPUs / 3 on the GPU node
    assert tuning.ray_slots([], 1, 0) == 1


def test_tune_on_ray_from_the_command_line(fake_ray, cli, tiny_data_dir, tmp_path):
    fake = fake_ray(cpus(2))
    invoke, _, results = cli
    space = tmp_path / "space.toml"
    space.write_text("[shared]\nbatch_size = { choices = [512, 1024] }\n", encoding="utf-8")
    args = ("tune", "--dataset", "synthetic", "--pooler", "average,dot:softmax", "--trials", "2", "--epochs", "1",
            "--executor", "ray", "--ray-address", "10.0.0.1:6379", "--space", str(space),
            "--data-dir", str(tiny_data_dir), "--results-dir", str(results))
    out = invoke(*args, dirs=False)
    assert out.exit_code == 0, out.output
    flat = " ".join(out.stdout.split())
    assert "Ray at 10.0.0.1:6379 (1 CPU per run); up to 2 trial(s) at once" in flat
    assert fake.address == "10.0.0.1:6379"
    for spec in ("average", "dot:softmax"):  # one line per finished trial, under the progress bars
        assert f"{spec} trial 0: complete" in flat and f"{spec} trial 1: complete" in flat
    assert "2/2" in flat and "best trial per pooler" in flat and "4 trial(s) run" in flat
    path = results / "_tuning" / "synthetic" / "default.db"
    assert sorted(pooler for _, pooler in fake.calls) == ["average", "average", "dot:softmax", "dot:softmax"]
    assert [tuning.counts(tuning.load(path, s)) for s in ("average", "dot:softmax")] == [2, 2]
    fake = fake_ray(cpus(2))
    again = invoke(*args, dirs=False)  # done: nothing runs, no cluster needed
    assert again.exit_code == 0, again.output
    assert "(0 to run)" in " ".join(again.stdout.split()) and fake.calls == [] and fake.address == "unset"


def test_tune_on_ray_user_errors(fake_ray, cli, tiny_data_dir, tmp_path, monkeypatch):
    invoke, _, results = cli
    base = ("tune", "--trials", "1", "--epochs", "1", "--data-dir", str(tiny_data_dir), "--results-dir", str(results))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    assert_user_error(invoke(*base, "--executor", "ray", dirs=False), "needs Ray", "pip install 'dinbench[ray]'")
    assert not (results / "_tuning").exists()  # refused before any study file
    fake_ray(cpus(2))
    assert_user_error(invoke(*base, "--executor", "ray", "--workers", "2", dirs=False),
                      "--workers is for --executor local", "cluster's free CPUs decide")
    assert_user_error(invoke(*base, "--address", "10.0.0.1:6379", dirs=False),
                      "--address and --gpus-per-run are for --executor ray")
    assert_user_error(invoke(*base, "--executor", "ray", "--threads", "3", dirs=False),
                      "--threads 3: no node of the Ray cluster has that many CPUs")
    assert_user_error(invoke(*base, "--executor", "ray", "--device", "cuda", dirs=False),
                      "no node of the Ray cluster has any")
    assert_user_error(invoke(*base, "--executor", "dask", dirs=False), "unknown --executor 'dask'")

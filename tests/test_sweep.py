"""dinbench sweep: the same records as sequential runs (local process pool, and a local Ray cluster),
resumable sweeps (completed runs skipped), failing runs reported without stopping the sweep, and
one-line errors for bad option values."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from dinbench import sweep as sweep_mod
from dinbench.checkpoint import RunInterrupted
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.grid import run_identity
from dinbench.train import train_run
from helpers import REPO_ROOT, assert_user_error

GRID = ("--pooler", "average,din", "--seeds", "2", "--epochs", "1", "--embedding-dim", "8", "--batch-size", "128")


def _invoke(*argv: str):
    from dinbench.cli import app

    return CliRunner().invoke(app, list(argv), catch_exceptions=True)


def _metrics(results) -> dict[tuple[str, int], dict]:
    """(pooler, seed) -> what must not depend on how the run was executed."""
    out = {}
    for path in sorted(results.glob("*/record.json")):
        r = json.loads(path.read_text())
        assert r["status"] == "completed", r.get("reason")
        assert r["run_id"] == path.parent.name
        assert (path.parent / r["predictions"]["test"]).is_file() and (path.parent / "model.pt").is_file()
        key = (r["pooler"], r["seed"])
        assert key not in out, f"two records of {key}"
        out[key] = {"test": r["test"], "best_epoch": r["best_epoch"], "config": r["config"],
                    "valid": [e.get("valid") for e in r["epochs"]], "loss": [e["train_loss"] for e in r["epochs"]],
                    "fingerprint": r["dataset"]["fingerprint"]}
    return out


@pytest.fixture(scope="module")
def sequential(tiny_data_dir, tmp_path_factory):
    """The 4 runs of GRID made one after another by `dinbench run --threads 1`."""
    results = tmp_path_factory.mktemp("sequential")
    r = _invoke("run", *GRID, "--threads", "1", "--data-dir", str(tiny_data_dir), "--results-dir", str(results))
    assert r.exit_code == 0, r.output
    metrics = _metrics(results)
    assert len(metrics) == 4
    return metrics


def _grid_configs(**given) -> list[RunConfig]:
    """The RunConfigs the CLI makes from these options (the rest at their defaults)."""
    from dinbench.grid import resolve

    return resolve(given).expand().configs


def test_local_sweep_writes_the_records_of_sequential_runs_and_resumes(tiny, tiny_data_dir, tmp_path, sequential):
    results = tmp_path / "results"
    # one run of the grid was interrupted earlier: the sweep continues it from its checkpoint
    cfg = next(c for c in _grid_configs(pooler="average,din", seeds=2, epochs=1, embedding_dim=8, batch_size=128)
               if c.pooler == "average" and c.seed == 1)
    steps = itertools.count()
    with pytest.raises(RunInterrupted):
        train_run(cfg, tiny, results, stop=lambda: next(steps) >= 5)
    argv = ("sweep", *GRID, "--executor", "local", "--workers", "2", "--threads", "1",
            "--data-dir", str(tiny_data_dir), "--results-dir", str(results))
    r = _invoke(*argv)
    assert r.exit_code == 0, r.output
    out = " ".join(r.stdout.split())
    assert "0 already done" in out and "4 to run on 2 local worker(s) x 1 thread(s)" in out
    assert "1 interrupted run(s) continue from their checkpoints" in out
    for pooler, seed in sequential:  # one line per finished run: pooler, seed, GAUC and where the record went
        assert f"{pooler} seed {seed}: test AUC" in out
    assert out.count("/record.json") == 4
    assert "4 run(s) done, 0 failed, 0 skipped" in out and "results of this sweep" in out
    assert _metrics(results) == sequential  # same seed, same thread count: the same numbers
    records = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    assert {rec["torch_threads"] for rec in records} == {1}
    assert [(r["pooler"], r["seed"]) for r in records if r.get("resumed")] == [("average", 1)]

    again = _invoke(*argv)  # a finished sweep has nothing left to run
    assert again.exit_code == 0, again.output
    out = " ".join(again.stdout.split())
    assert "4 already done" in out and "(skipped), 0 to run" in out
    assert "0 run(s) done, 0 failed, 4 skipped" in out and "(0 new, 4 existing run(s))" in out
    assert len(list(results.glob("*/record.json"))) == 4


def test_run_identity_tells_which_records_a_sweep_may_skip():
    base = RunConfig(pooler="din", seed=1).to_dict()
    key = run_identity("fp", base)
    assert run_identity("fp", json.loads(json.dumps(base))) == key  # as read back from a record
    assert run_identity("fp", {**base, "device": "cuda", "eval_batch_size": 99}) == key  # cannot change numbers
    for changed in ({"seed": 2}, {"lr": 0.01}, {"pooler": "din:softmax"}, {"architecture": "two-tower"},
                    {"dataset": "other"}, {"pooler_options": {"attention_hidden": [16]}}):
        assert run_identity("fp", {**base, **changed}) != key, changed
    # an option din does not have (an older record stored every pooler's) does not make another run
    assert run_identity("fp", {**base, "pooler_options": {"heads": 2}}) == key
    assert run_identity("other-data", base) != key


def test_a_failing_run_is_one_line_and_the_others_finish(tiny_data_dir, tmp_path):
    good = RunConfig(pooler="average", epochs=1, embedding_dim=4, mlp_hidden=(8,), batch_size=256)
    bad = RunConfig(**{**good.to_dict(), "dataset": "missing"})
    seen = []
    plan = sweep_mod.Plan("local", workers=1, threads=1)
    sweep_mod.execute(plan, [bad, good], tiny_data_dir, tmp_path / "results", lambda c, o: seen.append((c, o)))
    assert [c.dataset for c, _ in seen] == ["missing", "synthetic"]
    failed, done = seen[0][1], seen[1][1]
    assert failed.record is None and "missing" in failed.error and "\n" not in failed.error
    assert done.error is None and done.record["status"] == "completed"
    assert (done.run_dir / "record.json").is_file()


@pytest.mark.parametrize("args, fragments", [
    (("--executor", "dask"), ("unknown --executor 'dask'", "local, ray")),
    (("--workers", "0"), ("--workers must be at least 1",)),
    (("--threads", "0"), ("--threads must be at least 1",)),
    (("--workers", str(sweep_mod.available_cores() + 1), "--threads", "1"), ("oversubscribe",)),
    (("--address", "127.0.0.1:1"), ("--address and --gpus-per-run are for --executor ray",)),
    (("--executor", "ray", "--workers", "2"), ("--workers is for --executor local",)),
    (("--executor", "ray", "--gpus-per-run", "-1"), ("--gpus-per-run must be 0 or more",)),
    (("--runs-per-gpu", "0"), ("--runs-per-gpu must be at least 1",)),
    (("--runs-per-gpu", "2"), ("--runs-per-gpu needs a GPU", "--device cpu")),
    (("--executor", "ray", "--runs-per-gpu", "4"), ("--runs-per-gpu is for --executor local", "--gpus-per-run 0.25")),
    (("--seeds", "0"), ("--seeds must be at least 1",)),
    (("--pooler", "nope"), ("nope",)),
    (("--dataset", ","), ("--dataset names no dataset",)),
    (("--dataset", "synthetic,nothere"), ("dataset 'nothere' is not prepared",)),
    (("--lr", "-1"), ("--lr must be a positive number",)),
])
def test_bad_sweep_options_are_one_line_errors(tiny_data_dir, tmp_path, args, fragments):
    r = _invoke("sweep", "--epochs", "1", *args, "--data-dir", str(tiny_data_dir), "--results-dir", str(tmp_path / "r"))
    assert_user_error(r, *fragments)
    assert not list((tmp_path / "r").glob("*/record.json"))


def test_runs_per_gpu_pins_k_workers_to_each_gpu_round_robin():
    assert [sweep_mod.gpu_of_worker(i, 2) for i in range(8)] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert sweep_mod.runs_per_device(8, 2) == [4, 4] and sweep_mod.runs_per_device(3, 2) == [2, 1]
    # workers = K x GPUs unless --workers says otherwise, at most one per run; threads = cores / workers
    assert sweep_mod.local_workers(100, None, None, 4, gpus=2, cores=16) == (8, 2)
    assert sweep_mod.local_workers(100, None, None, None, gpus=2, cores=16) == (2, 8)  # default: 1 per GPU
    assert sweep_mod.local_workers(5, None, None, 4, gpus=2, cores=16) == (5, 3)
    assert sweep_mod.local_workers(100, None, 1, 4, gpus=2, cores=4) == (8, 1)  # a GPU run needs little CPU
    assert sweep_mod.local_workers(100, 3, None, None, gpus=0, cores=16) == (3, 5)
    assert sweep_mod.local_workers(100, None, 2, None, gpus=0, cores=16) == (8, 2)
    assert sweep_mod.describe_sharing(8, 2) == "2 GPU(s) x 4 run(s) each"
    assert sweep_mod.describe_sharing(3, 2) == "2 GPU(s) x 1-2 run(s) each"
    assert sweep_mod.describe_sharing(4, 0) == "no GPU: the runs share the cores"


def test_the_plan_says_how_many_runs_share_each_gpu(monkeypatch):
    monkeypatch.setattr(sweep_mod, "_gpu_count", lambda device: 2 if device in ("cuda", "auto") else 0)
    monkeypatch.setattr(sweep_mod, "available_cores", lambda: 16)
    plan = sweep_mod.plan("local", 40, None, None, None, "cuda", None, runs_per_gpu=4)
    assert (plan.workers, plan.threads, plan.gpus) == (8, 2, 2)
    assert plan.describe() == "8 local worker(s) x 2 thread(s) (16 cores; 2 GPU(s) x 4 run(s) each)"
    assert sweep_mod.plan("local", 40, None, None, None, "cuda", None).describe().endswith("2 GPU(s) x 1 run(s) each)")
    cpu = sweep_mod.plan("local", 40, 4, 2, None, "cpu", None)
    assert cpu.describe() == "4 local worker(s) x 2 thread(s) (16 cores; no GPU: the runs share the cores)"
    with pytest.raises(DinbenchError, match="give --workers or --runs-per-gpu, not both"):
        sweep_mod.plan("local", 40, 8, None, None, "cuda", None, runs_per_gpu=4)
    with pytest.raises(DinbenchError, match="--runs-per-gpu needs a GPU"):
        sweep_mod.plan("local", 40, None, None, None, "cpu", None, runs_per_gpu=4)


def test_ray_missing_is_one_line_telling_to_install_the_extra(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as when it is not installed
    r = _invoke("sweep", *GRID, "--executor", "ray", "--data-dir", str(tiny_data_dir),
                "--results-dir", str(tmp_path / "r"))
    assert_user_error(r, "needs Ray", "pip install 'dinbench[ray]'")


def test_core_modules_do_not_import_ray():
    code = ("import sys, dinbench.cli, dinbench.sweep, dinbench.grid, dinbench.train; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT).returncode == 0


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster on 127.0.0.1 (2 CPUs, no GPU) started and stopped by these tests; its address."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'dinbench[ray]' to run this test")
    with pytest.MonkeyPatch.context() as mp:
        # the cluster's workers import dinbench from this checkout
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
        context = ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
        try:
            yield context.address_info["gcs_address"]
        finally:
            ray.shutdown()


def _ray_sweep(address: str, tmp_path, data, *args: str):
    return subprocess.run(
        [sys.executable, "-m", "dinbench.cli", "sweep", *GRID, "--executor", "ray", "--address", address,
         "--data-dir", str(data), "--results-dir", str(tmp_path / "results"), *args],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
    )


def test_ray_sweep_writes_the_records_of_sequential_runs(ray_cluster, tiny_data_dir, tmp_path, sequential):
    r = _ray_sweep(ray_cluster, tmp_path, tiny_data_dir, "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert f"Ray at {ray_cluster}" in out and "4 run(s) done, 0 failed" in out
    results = tmp_path / "results"
    assert _metrics(results) == sequential  # records returned to the driver and written where report looks
    records = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    assert all("sweep" in rec["command"] and rec["torch_threads"] == 1 for rec in records)


@pytest.mark.parametrize("args, fragment", [
    (("--threads", "3"), "no node of the Ray cluster has that many CPUs"),
    (("--device", "cuda"), "no node of the Ray cluster has any"),
])
def test_ray_refuses_runs_no_node_can_take(ray_cluster, tiny_data_dir, tmp_path, args, fragment):
    r = _ray_sweep(ray_cluster, tmp_path, tiny_data_dir, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert err.startswith("error:") and fragment in err and "\n" not in err, err

"""Results are never lost or mixed: concurrent runs, and datasets whose files no longer match their manifest."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from dinbench.prepared import contract
from helpers import REPO_ROOT, assert_user_error
from test_import import amazon_layout

TINY_RUN = ("--pooler", "average", "--epochs", "1", "--embedding-dim", "4", "--mlp-hidden", "8",
            "--batch-size", "256", "--max-len", "10", "--threads", "1")


def _tamper(path: Path) -> None:
    """Flip one label of the train split: a changed file that still reads fine."""
    train = pd.read_parquet(path / "train.parquet")
    train.loc[0, "label"] = 1 - train.loc[0, "label"]
    train.to_parquet(path / "train.parquet")


def test_two_runs_started_at_once_in_separate_processes_both_land_complete_records(tiny_data_dir, tmp_path):
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dinbench.cli", "run", *TINY_RUN,
               "--data-dir", str(tiny_data_dir), "--results-dir", str(results)]
    procs = [subprocess.Popen([*command, "--seed", str(s)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in (0, 0)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    records = [json.loads(p.read_text()) for p in results.glob("*/record.json")]
    assert len(records) == 2 and len({r["run_id"] for r in records}) == 2
    assert all(r["status"] == "completed" and "auc" in r["test"] for r in records)
    assert records[0]["test"] == records[1]["test"]  # same seed, same numbers: nothing mixed
    assert not list(results.glob("*/.tmp-*"))  # no half-written files left behind


def test_tampered_synthetic_is_refused_with_the_exact_rebuild_command(cli, tiny_data_dir, tmp_path):
    invoke, data, _ = cli
    shutil.copytree(tiny_data_dir, data)
    _tamper(data / "synthetic")
    result = invoke("run", *TINY_RUN)
    assert_user_error(result, "no longer matches its manifest fingerprint",
                      f"rebuild it with: dinbench download synthetic --force --users 150 --mean-length 8.0 --data-dir {data}")


def test_tampered_import_is_refused_with_the_exact_import_command(cli, tmp_path):
    invoke, data, _ = cli
    source = tmp_path / "mine.tsv"
    amazon_layout().rename(columns={"user_id": "uid"}).to_csv(source, index=False, sep="\t")
    assert invoke("import", str(source), "--name", "mine", "--user-col", "uid").exit_code == 0
    _tamper(data / "mine")
    assert_user_error(invoke("run", "--dataset", "mine", *TINY_RUN),
                      f"rebuild it with: dinbench import {source.resolve()} --name mine --force --user-col uid --data-dir {data}")


def test_rebuild_command_of_a_registry_dataset_and_the_default_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("DINBENCH_DATA_DIR", raising=False)
    manifest = {"source": {"kind": "amazon", "dataset": "amazon-electronics"}}
    assert contract.rebuild_command(Path("datasets"), "amazon-electronics", manifest) == \
        "dinbench download amazon-electronics --force"
    synthetic = {"source": {"kind": "synthetic", "config": {"users": 2500, "seed": 0}}}
    assert contract.rebuild_command(Path("datasets"), "synthetic", synthetic) == "dinbench download synthetic --force"


def test_atomic_writes_get_a_normal_file_mode_not_mkstemps_0600(tmp_path):
    import os

    from dinbench.atomic import write_atomic

    old = os.umask(0o022)
    try:
        target = tmp_path / "report.md"
        write_atomic(target, lambda tmp: tmp.write_text("x"))
        assert target.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)

"""The reproducibility guard of `report`: seeds made on different data are never averaged, and
runs under different configurations stay separate rows with the differing fields named."""

from __future__ import annotations

from pathlib import Path

from dinbench.atomic import write_json_atomic
from dinbench.config import RunConfig
from dinbench.records import SCHEMA
from helpers import assert_user_error


def _record(results: Path, run_id: str, seed: int, fingerprint: str = "a" * 40, pooler: str = "average", **config):
    cfg = {**RunConfig(pooler=pooler, seed=seed).to_dict(), **config}
    write_json_atomic(results / run_id / "record.json", {
        "schema": SCHEMA, "run_id": run_id, "status": "completed",
        "dataset": {"name": "synthetic", "fingerprint": fingerprint}, "pooler": pooler, "architecture": "ranking",
        "seed": seed, "config": cfg, "test": {"auc": 0.7 + seed / 100, "gauc": 0.7, "logloss": 0.5}, "best_epoch": 1,
    })


def test_report_refuses_seeds_made_on_different_data(cli):
    invoke, _, results = cli
    _record(results, "run-old", 0, fingerprint="1" * 40)
    _record(results, "run-new", 1, fingerprint="2" * 40)
    err = assert_user_error(invoke("report"), "refusing to average runs of dataset 'synthetic'", "made on different data",
                            "fingerprint 111111111111 in 1 run(s), e.g. run-old",
                            "fingerprint 222222222222 in 1 run(s), e.g. run-new")
    assert "results folder" in err


def test_report_refuses_a_baseline_made_on_other_data_than_the_pooler(cli):
    invoke, _, results = cli
    _record(results, "base", 0, fingerprint="1" * 40, pooler="average")
    _record(results, "din", 0, fingerprint="2" * 40, pooler="din:none")
    assert_user_error(invoke("report"), "made on different data")


def test_report_keeps_configurations_apart_and_names_the_differing_fields(cli):
    invoke, _, results = cli
    _record(results, "a0", 0)
    _record(results, "a1", 1)
    _record(results, "b0", 0, lr=0.01, epochs=3)
    r = invoke("report", "--format", "csv")
    assert r.exit_code == 0, r.output
    rows = r.stdout.strip().splitlines()[1:]
    assert len(rows) == 2  # two configurations: two rows, never one average of three runs
    assert sorted(row.split(",")[5] for row in rows) == ["1", "2"]  # seeds per row
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 configurations" in notes[0] and "differing in epochs, lr:" in notes[0]


def test_same_data_and_configuration_average_quietly(cli):
    invoke, _, results = cli
    _record(results, "a0", 0)
    _record(results, "a1", 1)
    r = invoke("report", "--format", "csv")
    assert r.exit_code == 0 and "note:" not in r.stderr
    assert len(r.stdout.strip().splitlines()) == 2

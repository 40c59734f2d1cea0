"""The command line end to end, in temporary folders: download -> run -> report, and user errors."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket

import pandas as pd
import pytest

from dinbench import records
from helpers import assert_user_error

RUN_ARGS = ("run", "--pooler", "average,din", "--seeds", "2", "--epochs", "1", "--embedding-dim", "8",
            "--batch-size", "128")


def _record_files(results):
    return sorted(results.glob("*/record.json")) if results.exists() else []


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """download + run once for the module; tests copy the results folder when they alter it."""
    from typer.testing import CliRunner

    from dinbench.cli import app

    root = tmp_path_factory.mktemp("cli")
    data, results = root / "datasets", root / "results"
    runner = CliRunner()
    dl = runner.invoke(app, ["download", "synthetic", "--users", "150", "--mean-length", "8", "--data-dir", str(data)])
    run = runner.invoke(app, [*RUN_ARGS, "--data-dir", str(data), "--results-dir", str(results)])
    return dl, run, data, results


def test_download_prepares_synthetic(finished):
    dl, _, data, _ = finished
    assert dl.exit_code == 0, dl.output
    manifest = json.loads((data / "synthetic" / "manifest.json").read_text())
    assert manifest["counts"]["users"] == 150
    assert manifest["source"]["config"]["mean_length"] == 8.0
    assert "prepared synthetic: 150 users" in " ".join(dl.stdout.split())  # immune to line wrapping


def test_run_writes_one_record_per_pooler_and_seed(finished):
    _, run, _, results = finished
    assert run.exit_code == 0, run.output
    files = _record_files(results)
    assert len(files) == 4
    recs = [json.loads(f.read_text()) for f in files]
    assert sorted((r["pooler"], r["seed"]) for r in recs) == [("average", 0), ("average", 1), ("din:none", 0), ("din:none", 1)]
    assert all(r["config"]["epochs"] == 1 and r["config"]["embedding_dim"] == 8 for r in recs)
    assert all(len(r["epochs"]) == 1 for r in recs)
    # two runs never share a run directory
    assert len({f.parent for f in files}) == 4
    assert all(r["run_id"] == f.parent.name for r, f in zip(recs, files))
    assert "4 run(s) done" in run.stdout
    # the run ends with its headline and points to the report, instead of printing the table
    out = " ".join(run.stdout.split())
    best = max(("average", "din:none"), key=lambda p: sum(r["test"]["gauc"] for r in recs if r["pooler"] == p))
    assert f"best on synthetic: {best}, test GAUC" in out and "(mean of 2 seeds)" in out
    assert "dinbench report" in out and "95% CI" not in out and "RelaImpr (GAUC)" not in out
    assert all(r["pid"] == os.getpid() and r["host"] == socket.gethostname() for r in recs)  # for stale-run checks


def test_report_table(finished, cli):
    invoke, _, _ = cli
    _, _, _, results = finished
    r = invoke("report", "--results-dir", str(results), dirs=False)
    assert r.exit_code == 0, r.output
    assert "average" in r.stdout and "din:none" in r.stdout and "RelaImpr" in r.stdout
    assert "(4 runs in" in " ".join(r.stdout.split())  # the title counts every run; immune to wrapping


def test_report_wide_has_every_column_and_the_default_fits_the_terminal(finished, cli):
    invoke, _, _ = cli
    _, _, _, results = finished
    compact = invoke("report", "--results-dir", str(results), dirs=False)
    wide = invoke("report", "--results-dir", str(results), "--wide", dirs=False)
    assert compact.exit_code == 0 and wide.exit_code == 0, wide.output
    for header in ("p (bootstrap)", "train rows/s", "test AUC", "vs baseline"):
        assert header in " ".join(wide.stdout.split()) and header not in compact.stdout
    assert "…" not in compact.stdout and "…" not in wide.stdout


def test_report_formats(finished, cli):
    invoke, _, _ = cli
    _, _, _, results = finished

    def report(*args):
        res = invoke("report", "--results-dir", str(results), *args, dirs=False)
        assert res.exit_code == 0, res.output
        return res.stdout

    table = pd.read_csv(io.StringIO(report("--format", "csv")))
    assert sorted(table["pooler"]) == ["average", "din:none"]
    assert (table["seeds"] == 2).all()
    assert (table["dataset"] == "synthetic").all()
    base = table.set_index("pooler").loc["average"]
    assert base["relaimpr_gauc"] == pytest.approx(0.0)
    recs = [json.loads(f.read_text()) for f in _record_files(results)]
    avg = [r["test"]["gauc"] for r in recs if r["pooler"] == "average"]
    assert base["gauc_mean"] == pytest.approx(sum(avg) / 2, abs=1e-6)

    rows = json.loads(report("--format", "json"))
    assert isinstance(rows, list) and sorted(r["pooler"] for r in rows) == ["average", "din:none"]
    assert all(r["seeds"] == 2 for r in rows)

    md = report("--format", "markdown")
    assert md.startswith("| dataset |") and "| average |" in md and "|---|" in md

    tex = report("--format", "latex")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "din:none" in tex


def test_report_output_file(finished, cli, tmp_path):
    invoke, _, _ = cli
    _, _, _, results = finished
    out = tmp_path / "report.csv"
    r = invoke("report", "--results-dir", str(results), "--format", "csv", "--output", str(out), dirs=False)
    assert r.exit_code == 0, r.output
    assert len(pd.read_csv(out)) == 2
    assert "wrote" in r.stdout and "pooler" not in r.stdout  # the table went to the file, not the screen
    md = tmp_path / "report.md"
    r = invoke("report", "--results-dir", str(results), "--output", str(md), dirs=False)
    assert r.exit_code == 0 and md.read_text().startswith("| dataset |")


def test_corrupt_record_is_skipped_with_a_warning(finished, cli, tmp_path):
    invoke, _, _ = cli
    _, _, _, src = finished
    results = tmp_path / "copy"
    shutil.copytree(src, results)
    victim = _record_files(results)[0]
    text = victim.read_text()
    victim.write_text(text[: len(text) // 2])  # truncated JSON
    r = invoke("report", "--results-dir", str(results), "--format", "csv", dirs=False)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(io.StringIO(r.stdout))
    assert table["seeds"].sum() == 3  # the other three runs are still reported
    # rich may wrap the long path on stderr: compare with the line breaks taken out
    err = r.stderr.replace("\n", "")
    assert "warning" in err and str(victim) in err


def test_corrupt_record_warning_is_one_line_naming_the_file(tmp_path, cli):
    invoke, _, _ = cli
    # longer than any terminal: a path this long is always wrapped unless wrapping is off
    results = tmp_path / ("r" * 200) / ("s" * 200) / ("t" * 200)
    bad = results / ("run-" + "y" * 100) / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"schema": 1, "ru')
    r = invoke("report", "--results-dir", str(results), dirs=False)
    assert r.exit_code == 2  # nothing readable left
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert str(bad) in warning[0], r.stderr


def test_run_directories_are_never_shared(tmp_path, monkeypatch):
    # Same second, same dataset/pooler/seed, and the random suffix collides once: mkdir must not reuse.
    tokens = iter(["aaaaaa", "aaaaaa", "bbbbbb", "cccccc"])
    monkeypatch.setattr(records.secrets, "token_hex", lambda n: next(tokens))
    first = records.new_run_dir(tmp_path, "d", "din:none", 0)
    second = records.new_run_dir(tmp_path, "d", "din:none", 0)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.endswith("-d-din-none-s0-aaaaaa")
    assert second.name.endswith("-bbbbbb") or second.name.endswith("-cccccc")


def test_poolers_and_datasets_list_things(cli, tiny_data_dir):
    invoke, _, _ = cli
    r = invoke("poolers")
    assert r.exit_code == 0
    for name in ("average", "din:none", "din:softmax", "default"):
        assert name in r.stdout
    r = invoke("datasets")  # empty data folder: the embedded dataset is known but not prepared
    assert r.exit_code == 0 and "synthetic" in r.stdout and "not prepared" in r.stdout
    r = invoke("datasets", "--data-dir", str(tiny_data_dir), dirs=False)
    assert r.exit_code == 0 and "prepared" in r.stdout and "not prepared" not in r.stdout
    assert "150" in r.stdout


def test_env_vars_choose_the_folders(cli, tmp_path, monkeypatch, tiny_data_dir):
    invoke, _, _ = cli
    monkeypatch.setenv("DINBENCH_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("DINBENCH_RESULTS_DIR", str(tmp_path / "env-results"))
    r = invoke("run", "--pooler", "average", "--epochs", "1", "--embedding-dim", "4", dirs=False)
    assert r.exit_code == 0, r.output
    assert len(_record_files(tmp_path / "env-results")) == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "datasets").exists()


def test_unknown_pooler(cli):
    invoke, data, results = cli
    r = invoke("run", "--pooler", "average,attention")
    err = assert_user_error(r, "attention", "average", "din")
    assert "choose from" in err
    assert not _record_files(results) and not data.exists()


def test_unknown_pooler_variant(cli):
    invoke, _, _ = cli
    assert_user_error(invoke("run", "--pooler", "din:max"), "din:none", "din:softmax")


def test_unknown_dataset_for_run(cli):
    invoke, _, results = cli
    r = invoke("run", "--dataset", "electronics", "--epochs", "1")
    assert_user_error(r, "`dinbench import FILE --name electronics`")
    assert not _record_files(results)


def test_unknown_dataset_for_download(cli):
    invoke, data, _ = cli
    assert_user_error(invoke("download", "electronics"), "dinbench import FILE --name NAME")
    assert not data.exists()


@pytest.mark.parametrize(
    "option, fragment",
    [("--epochs", "--epochs"), ("--batch-size", "--batch-size"), ("--max-len", "--max-len"),
     ("--seeds", "--seeds"), ("--embedding-dim", "--embedding-dim")],
)
def test_bad_numbers_refused_before_any_work(cli, option, fragment):
    invoke, data, results = cli
    r = invoke("run", option, "0")
    assert_user_error(r, fragment, "at least 1")
    # nothing was done: no dataset generated, no run record written
    assert not data.exists() or not any(data.iterdir())
    assert not _record_files(results)


def test_bad_protocol_and_device(cli):
    invoke, data, results = cli
    assert_user_error(invoke("run", "--protocol", "nope"), "nope", "din, paper")
    assert_user_error(invoke("run", "--device", "tpu"), "tpu")
    assert not _record_files(results) and not data.exists()


def test_report_with_no_records(cli):
    invoke, _, results = cli
    assert_user_error(invoke("report"), "no completed run records", "dinbench run")
    results.mkdir()
    assert_user_error(invoke("report"), "no completed run records")


def test_report_bad_format_and_filters(finished, cli):
    invoke, _, _ = cli
    _, _, _, results = finished
    assert_user_error(invoke("report", "--format", "xml", "--results-dir", str(results), dirs=False), "csv", "latex")
    assert_user_error(invoke("report", "--dataset", "nope", "--results-dir", str(results), dirs=False),
                      "no run records match")
    r = invoke("report", "--pooler", "average", "--format", "csv", "--results-dir", str(results), dirs=False)
    assert r.exit_code == 0 and pd.read_csv(io.StringIO(r.stdout))["pooler"].tolist() == ["average"]

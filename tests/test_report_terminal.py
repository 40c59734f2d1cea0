"""What `dinbench report` shows at an ordinary terminal (issue 14): a compact table that fits, never
a cut number, configurations named by what differs, every column with --wide and in files; p-values
written in full in CSV and as math in LaTeX; stale `running` records named and discarded."""

from __future__ import annotations

import csv as csvlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from dinbench import report, ui
from dinbench.atomic import write_json_atomic
from dinbench.config import RunConfig, comparable
from dinbench.records import SCHEMA, Loaded, load_records, stale_runs

DEFAULT_POOLERS = ("none", "average", "time-decay", "dot:softmax", "din:none", "din:softmax")


def _runs(poolers=DEFAULT_POOLERS, seeds=3, configs=({},)) -> pd.DataFrame:
    """Runs of ``poolers`` x ``configs`` (RunConfig overrides) x seeds, with made-up GAUCs."""
    rows, rng = [], np.random.default_rng(0)
    for c, overrides in enumerate(configs):
        key = comparable(RunConfig(**overrides).to_dict())
        for i, pooler in enumerate(poolers):
            for seed in range(seeds):
                g = 0.74 + 0.04 * i + 0.003 * rng.standard_normal()
                rows.append(dict(dataset="synthetic", fingerprint="f" * 40, protocol="din", architecture="ranking",
                                 config=report.config_id(key), config_json=json.dumps(key, sort_keys=True),
                                 pooler=pooler, seed=seed, auc=g, gauc=g, logloss=0.5, best_epoch=4.0,
                                 rows_per_s=12345.0, wall_seconds=1.0, run_id=f"r{c}-{i}-{seed}", predictions=None))
    return pd.DataFrame(rows)


def _shown(table: pd.DataFrame, width: int, wide: bool = False) -> str:
    console = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    ui.print_table(console, table, "dinbench report", "average", wide=wide)
    return console.file.getvalue()


def _numbers(table: pd.DataFrame) -> list[str]:
    """Every number the compact table holds, as it must appear: whole."""
    out = []
    for dataset, rows, _ in report.compact_rows(table):
        for row in rows:
            out += [cell for cell in row[1:] if cell not in ("—", "best", "≈ best", "below")]
    return out


@pytest.mark.parametrize("width", [80, 100, 160])
def test_compact_table_fits_the_terminal_with_every_column_and_every_number_whole(width):
    table = report.summarize(_runs(), n_boot=10)
    text = _shown(table, width)
    assert all(len(line) <= width for line in text.splitlines()), text
    assert "…" not in text
    header = next(line for line in text.splitlines() if line.startswith("pooler"))
    assert re.split(r"\s{2,}", header.strip()) == list(report.COMPACT_HEADERS)  # all seven columns
    for number in _numbers(table):
        assert number in text, (number, text)
    assert "train rows/s" not in text and "12,345" not in text  # the wide columns stay out


def test_a_terminal_too_narrow_for_the_compact_table_loses_columns_not_digits():
    table = report.summarize(_runs(poolers=("average", "bilinear:softmax", "din:softmax")), n_boot=10)
    text = _shown(table, 60)
    assert all(len(line) <= 60 for line in text.splitlines()) and "…" not in text
    assert "(95% CI and vs best left out to fit 60 columns" in " ".join(text.split())
    for row in report.compact_rows(table)[0][1]:
        assert row[2] in text and row[4] in text  # GAUC ± std and RelaImpr, whole


def test_wide_table_has_every_column_and_cuts_nothing_even_past_the_terminal():
    table = report.summarize(_runs(), n_boot=10)
    header, rows, _ = report.display_rows(table)
    text = _shown(table, 100, wide=True)
    flat = " ".join(text.split())
    for h in ("test AUC", "p (seeds)", "p (bootstrap)", "vs baseline", "best epoch", "train rows/s"):
        assert h in flat
    assert "…" not in text
    for row in rows:
        for cell in row[1:]:
            assert cell in text, cell


def test_rows_that_differ_in_configuration_are_named_by_the_differing_fields():
    configs = ({"batch_size": 256, "optimizer": "adam"}, {"batch_size": 1024, "optimizer": "lazy-adam"})
    runs = _runs(poolers=("average", "din:none"), seeds=2, configs=configs)
    table = report.summarize(runs, n_boot=10)
    assert set(table["config_label"]) == {"batch 256, optimizer adam", "batch 1024, optimizer lazy-adam"}
    compact = _shown(table, 160)
    assert "average (batch 256, optimizer adam)" in compact and "din:none (batch 1024, optimizer lazy-adam)" in compact
    assert not any(cid in compact for cid in table["config"])  # no hashes
    md = report.render(table, "markdown", "average")
    assert "| config |" in md and "| batch 1024, optimizer lazy-adam | din:none |" in md
    csv = pd.read_csv(io.StringIO(report.render(table, "csv", "average")))
    assert set(csv["config"]) == set(table["config"]) and "config_label" in csv  # ids stay, labels beside them
    # one configuration: nothing to tell apart, no label
    assert set(report.summarize(_runs(seeds=2), n_boot=10)["config_label"]) == {""}


def test_csv_writes_p_values_in_full_and_latex_writes_less_than_as_math():
    runs = _runs(poolers=("average", "din:none"), seeds=6)
    runs.loc[runs["pooler"] == "din:none", "gauc"] = runs.loc[runs["pooler"] == "average", "gauc"].to_numpy() + \
        0.05 + 1e-4 * np.arange(6)  # far better on every seed: p of the paired t-test far below 0.001
    table = report.summarize(runs, n_boot=10)
    p = table.set_index("pooler").loc["din:none", "p_seeds"]
    assert 0 < p < 1e-4
    rows = {r["pooler"]: r for r in csvlib.DictReader(io.StringIO(report.render(table, "csv", "average")))}
    assert float(rows["din:none"]["p_seeds"]) == p  # the number itself, exactly, never 0.000000
    assert "e" not in rows["din:none"]["p_seeds"]  # positional: 0.0000123..., not 1.23e-05
    assert rows["average"]["p_seeds"] == ""  # the baseline has no p
    tex = report.render(table, "latex", "average")
    assert "$<$0.001" in tex
    assert "<" not in tex.replace("$<$", "")  # never '<' in text mode (OT1 prints it as '¡')


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_table_compiles(tmp_path):  # pragma: no cover - only where TeX is installed
    runs = _runs(poolers=("average", "din:none"), seeds=3)
    tex = report.render(report.summarize(runs, n_boot=10), "latex", "average")
    doc = tmp_path / "t.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + tex + "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path, capture_output=True)
    assert done.returncode == 0, done.stdout[-2000:]


# ----------------------------------------------------------------------------- stale runs


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _record(results, run_id, status="completed", **extra):
    cfg = RunConfig(pooler=extra.pop("pooler", "average"), seed=0)
    write_json_atomic(results / run_id / "record.json", {
        "schema": SCHEMA, "run_id": run_id, "status": status,
        "dataset": {"name": "synthetic", "fingerprint": "a" * 40}, "pooler": cfg.pooler, "architecture": "ranking",
        "seed": 0, "config": cfg.to_dict(), "test": {"auc": 0.7, "gauc": 0.7, "logloss": 0.5}, "best_epoch": 1,
        **extra,
    })


def test_report_names_a_stale_run_in_one_line_and_discard_stale_deletes_it(cli):
    invoke, _, results = cli
    here = socket.gethostname()
    _record(results, "done")
    _record(results, "killed", status="running", pooler="din:none", host=here, pid=_dead_pid())
    _record(results, "alive", status="running", host=here, pid=os.getpid())  # still training
    _record(results, "elsewhere", status="running", host=here + "-other", pid=_dead_pid())  # cannot be checked
    _record(results, "old", status="running")  # written before records named their process
    assert [i.path.parent.name for i in stale_runs(load_records(results)[0])] == ["killed"]

    r = invoke("report")
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, r.stderr
    assert "stale run killed (din:none seed 0 on synthetic)" in warnings[0]
    assert "is gone" in warnings[0] and "--discard-stale" in warnings[0] and str(results / "killed") in warnings[0]

    r = invoke("report", "--discard-stale")
    assert r.exit_code == 0, r.output
    assert "discarded stale run killed" in r.stdout and "warning" not in r.stderr
    assert not (results / "killed").exists()
    assert all((results / name).exists() for name in ("done", "alive", "elsewhere", "old"))


def test_records_name_their_host_and_process():
    from dinbench.records import environment

    env = environment()
    assert env["host"] == socket.gethostname() and env["pid"] == os.getpid()


def test_stale_lines_name_the_results_folder_when_it_is_not_the_default(tmp_path):
    _record(tmp_path, "killed", status="running", host=socket.gethostname(), pid=_dead_pid())
    stale = stale_runs(load_records(tmp_path)[0])
    (line,) = ui.stale_lines(stale, tmp_path)
    assert f"dinbench report --discard-stale --results-dir {tmp_path}" in line
    assert isinstance(stale[0], Loaded)


def test_sweep_names_the_stale_runs_of_its_results_folder(tmp_path):
    _record(tmp_path, "done")
    _record(tmp_path, "killed", status="running", host=socket.gethostname(), pid=_dead_pid())
    err = Console(width=300, file=io.StringIO(), force_terminal=False, color_system=None)
    ui.warn_stale(err, tmp_path)  # what `dinbench sweep` calls before it starts
    lines = err.file.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: stale run killed")


def test_tuned_rows_show_each_poolers_chosen_settings_in_wide_and_files(tmp_path):
    """Issue 15: the wide table and every file format name the settings each tuned pooler ran at (the
    study's searched axes, from the record's config and pooler options); untuned tables gain nothing."""
    def tuned(run_id, pooler, lr, **own):
        cfg = RunConfig(pooler=pooler, lr=lr, seed=0, pooler_options=own)
        write_json_atomic(tmp_path / run_id / "record.json", {
            "schema": SCHEMA, "run_id": run_id, "status": "completed",
            "dataset": {"name": "synthetic", "fingerprint": "a" * 40}, "pooler": cfg.pooler,
            "architecture": "ranking", "seed": 0, "config": cfg.to_dict(), "best_epoch": 1,
            "test": {"auc": 0.7, "gauc": 0.7 + lr, "logloss": 0.5},
            "tuning": {"study": "s", "db": "_tuning/synthetic/s.db", "pooler": pooler, "trial": 3,
                       "searched": ["lr", *own]}})

    tuned("a", "average", 0.002)
    tuned("d", "din:softmax", 0.004, attention_hidden=[40, 20])
    table = report.summarize(report.runs_frame(load_records(tmp_path)[0]), baseline="average")
    header, rows, _ = report.display_rows(table)
    cells = {r[header.index("pooler")]: r[header.index("settings")] for r in rows}
    assert cells == {"average (tuned)": "lr=0.002", "din:softmax (tuned)": "lr=0.004, attention_hidden=40-20"}
    assert "attention_hidden=40-20" in report.render(table, "csv", "average")
    assert "lr=0.002" in report.render(table, "markdown", "average") and "lr=0.002" in report.render(table, "latex", "average")
    assert "lr=0.004" in _shown(table, 240, wide=True)


def test_a_tuned_group_is_labelled_by_its_study_not_by_blanks_for_the_searched_axes(tmp_path):
    """Beside default-settings runs, a tuned group's label names its study; the axes it searched
    (each pooler's own value, in the settings column) are left out rather than shown as '—'."""
    def record(run_id, lr, tuned):
        cfg = RunConfig(pooler="average", lr=lr, seed=0)
        write_json_atomic(tmp_path / run_id / "record.json", {
            "schema": SCHEMA, "run_id": run_id, "status": "completed",
            "dataset": {"name": "synthetic", "fingerprint": "a" * 40}, "pooler": cfg.pooler,
            "architecture": "ranking", "seed": 0, "config": cfg.to_dict(), "best_epoch": 1,
            "test": {"auc": 0.7, "gauc": 0.7, "logloss": 0.5},
            **({"tuning": {"study": "fair8", "db": "_tuning/synthetic/fair8.db", "pooler": "average",
                           "trial": 2, "searched": ["lr"]}} if tuned else {})})

    record("t", 0.002, True)
    record("d", 0.001, False)
    runs = report.runs_frame(load_records(tmp_path)[0])
    labels = sorted(report.config_labels(runs).values())
    assert labels == ["lr 0.001", "tuned in study fair8"]
    assert "settings" not in report.summarize(_runs(), baseline="average")  # untuned: no column

"""A run's peak memory: measured per run (not per process), written in its record, shown by the report."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dinbench import memory
from dinbench.config import RunConfig
from dinbench.records import peak_mb

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-run reset needs Linux /proc")
FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(8,), batch_size=256, max_len=20, patience=5)
MB = 2**20


@linux_only
def test_the_host_peak_is_the_runs_own_not_the_processs():
    big = np.ones(300 * MB // 8)  # touched: 300 MB resident
    del big  # the process's all-time peak now holds it; a run started afterwards must not
    first = memory.PeakMemory("cpu")
    small = np.ones(20 * MB // 8)
    after_small = first.read()
    assert after_small["host_scope"] == "run"
    second = memory.PeakMemory("cpu")
    big = np.ones(200 * MB // 8)
    after_big = second.read()
    del big, small
    assert after_big["host_mb"] - after_small["host_mb"] > 150  # the 200 MB array counts in the second run only
    assert after_small["device_mb"] is None and after_big["device_mb"] is None  # CPU: no device figure


def test_without_a_reset_the_figure_is_the_processs_and_says_so(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "no" / "such" / "file")
    read = memory.PeakMemory("cpu").read()
    assert read["host_scope"] == "process"
    assert read["host_mb"] >= memory._process_peak_mb() - 1 > 0


@linux_only
def test_a_run_record_carries_its_peak_and_the_report_shows_it(tiny, tmp_path):
    from dinbench import report
    from dinbench.records import load_records
    from dinbench.train import train_run

    _, record = train_run(RunConfig(pooler="average", epochs=1, **FAST), tiny, tmp_path)
    peak = record["peak_memory"]
    assert peak["host_scope"] == "run" and peak["device_mb"] is None
    assert 10 < peak["host_mb"] < 100_000 and peak_mb(record) == peak["host_mb"]
    loaded, _ = load_records(tmp_path)
    runs, table, _ = report.build(report.runs_frame(loaded), "average")
    header, rows, _ = report.display_rows(table)
    assert header[-1] == "peak MB" and rows[0][-1] == f"{peak['host_mb']:,.0f}"


def test_the_device_figure_wins_where_there_is_one_and_old_records_have_none():
    assert peak_mb({"peak_memory": {"host_mb": 900.0, "host_scope": "run", "device_mb": 123.4}}) == 123.4
    assert peak_mb({"peak_memory": {"host_mb": 900.0, "host_scope": "run", "device_mb": None}}) == 900.0
    assert peak_mb({}) is None

"""benchmarks/speed.py --interleave: a model trained in turns sees every row of every epoch once, in
whole batches, as the sequential measurement trains it (the turn protocol, without the peer)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import speed  # noqa: E402


def test_turns_cover_each_epoch_once_in_whole_batches(monkeypatch, capsys):
    rng = np.random.default_rng(0)
    rows, size, turns, epochs = 1000, 64, 3, 2

    def epoch_batches():
        order = rng.permutation(rows)
        return [order[i:i + size] for i in range(0, rows, size)]

    trained: list[list[np.ndarray]] = []
    monkeypatch.setattr(sys, "stdin", io.StringIO("go\n" * (turns * epochs) + "end\n"))
    seconds = speed._turns(epoch_batches, turns, trained.append)

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ready"
    took = [line.split() for line in out[1:]]
    assert len(took) == len(trained) == turns * epochs
    assert [int(t[2]) for t in took] == [sum(len(b) for b in part) for part in trained]
    assert abs(seconds - sum(float(t[1]) for t in took)) < 1e-3
    for e in range(epochs):  # each epoch: its turns' batches are whole batches covering every row once
        batches = [b for part in trained[e * turns:(e + 1) * turns] for b in part]
        assert len(batches) == -(-rows // size) and all(len(b) == size for b in batches[:-1])
        assert sorted(np.concatenate(batches).tolist()) == list(range(rows))


def test_turns_stop_at_end(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("go\nend\ngo\n"))
    calls = []
    speed._turns(lambda: [np.arange(4), np.arange(4, 8)], 2, calls.append)
    assert len(calls) == 1  # nothing after "end"


def test_flop_split_multiplies_back_to_the_speed_ratio():
    # dinbench: 24,000 rows/s at 1e6 FLOPs a row; the peer: 3,000 rows/s of a 7.5e6-FLOP naive form
    ours = dict(rows_per_s=24_000.0, train_flops=1e6 * 500, train_rows_seen=500, naive_flops_per_row=7.5e6)
    peer = dict(rows_per_s=3_000.0)
    split = speed.flop_split(ours, peer)
    assert split["speed_ratio"] == 8.0
    assert split["flop_ratio"] == 7.5
    assert abs(split["ours_gflops"] - 24.0) < 1e-12 and abs(split["peer_gflops"] - 22.5) < 1e-12
    assert abs(split["flop_ratio"] * split["throughput_ratio"] - split["speed_ratio"]) < 1e-12


def test_a_benchmark_s_bad_run_option_stops_in_one_line():
    """benchmarks' pass-through options (peak_rss.run_overrides): a value RunConfig refuses ends the
    script with its one-line reason before any worker starts; good values pass through as given."""
    import argparse

    import pytest
    from peak_rss import run_overrides

    ok = run_overrides(argparse.Namespace(optimizer="adam", compile=None, run_device="cpu"))
    assert ok == {"optimizer": "adam", "device": "cpu"}
    # a script's own --device (gpu.py passes the device to RunConfig itself) is not passed on twice
    assert run_overrides(argparse.Namespace(optimizer=None, compile=None, device="cuda")) == {}
    for bad in (dict(optimizer="foo", compile=None), dict(optimizer=None, compile=None, run_device="tpu")):
        with pytest.raises(SystemExit) as stop:
            run_overrides(argparse.Namespace(**bad))
        assert str(stop.value).startswith("error: unknown --") and "\n" not in str(stop.value)
    with pytest.raises(SystemExit) as stop:  # a mode the device cannot run (the default device here: the CPU)
        run_overrides(argparse.Namespace(optimizer=None, compile="cuda-graphs", run_device="cpu"))
    assert str(stop.value).startswith("error: --compile cuda-graphs needs a CUDA device") and "\n" not in str(stop.value)

"""The live progress of `run` and `sweep`: each run's line shows its ETA and, once an epoch is
scored, that epoch's valid GAUC."""

from __future__ import annotations

import io
import re

from rich.console import Console

from dinbench import sweep as sweep_mod
from dinbench import ui
from dinbench.config import RunConfig

FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(8,), batch_size=256, max_len=20, patience=5)


def _rendered(board: ui.RunBoard) -> list[str]:
    out = Console(record=True, width=200, file=io.StringIO())
    out.print(board.progress.get_renderable())
    return out.export_text().splitlines()


def test_a_run_line_shows_its_stage_batches_and_eta_over_all_its_epochs():
    now = [0.0]
    console = Console(file=io.StringIO(), width=200)
    with ui.run_board(console, 2, clock=lambda: now[0]) as board, board.run("din:none seed 0") as update:
        for t, done in enumerate((10, 20, 30)):  # 10 batches a second, in epoch 2 of 2 (100 batches each)
            now[0] = float(t)
            update("epoch 2/2, valid GAUC 0.8123", done, 100)
        line = next(row for row in _rendered(board) if "din:none seed 0" in row)
        overall = next(row for row in _rendered(board) if row.lstrip().startswith("all"))
    assert "epoch 2/2, valid GAUC 0.8123" in line
    assert "30/100" in line
    assert "ETA 0:00:07" in line  # (200 - 130) batches left over both epochs at 10 a second
    assert "0/2 runs" in overall and "ETA" in overall


def test_a_resumed_run_counts_its_speed_from_where_it_resumed():
    now = [0.0]
    with ui.run_board(Console(file=io.StringIO()), 1, clock=lambda: now[0]) as board, board.run("x") as update:
        update("epoch 3/4", 50, 100)  # resumed mid-way: 250 of 400 batches were done before
        now[0] = 1.0
        update("epoch 3/4", 60, 100)
        now[0] = 2.0
        update("epoch 3/4", 70, 100)
        line = next(row for row in _rendered(board) if "epoch 3/4" in row)
    assert "ETA 0:00:13" in line  # 130 left at 10 a second, not at the 260 a second of the jump


def test_training_reports_the_last_epochs_valid_gauc(tiny, tmp_path):
    from dinbench.train import train_run

    stages = []
    _, record = train_run(RunConfig(pooler="average", epochs=3, **FAST), tiny, tmp_path,
                          progress=lambda stage, done, total: stages.append(stage))
    shown = list(dict.fromkeys(stages))
    gauc = [e["valid"]["gauc"] for e in record["epochs"]]
    assert shown == ["epoch 1/3", f"epoch 2/3, valid GAUC {gauc[0]:.4f}", f"epoch 3/3, valid GAUC {gauc[1]:.4f}"]


def test_the_paper_protocol_has_no_valid_gauc_to_show(tiny, tmp_path):
    from dinbench.train import train_run

    stages = []
    train_run(RunConfig(pooler="average", epochs=2, protocol="paper", **FAST), tiny, tmp_path,
              progress=lambda stage, done, total: stages.append(stage))
    assert list(dict.fromkeys(stages)) == ["epoch 1/2", "epoch 2/2"]


def test_a_local_sweep_reports_each_runs_progress_to_the_driver(tiny_data_dir, tmp_path):
    todo = [RunConfig(pooler="average", epochs=2, seed=s, **FAST) for s in (0, 1)]
    seen, done = [], []
    sweep_mod.execute(sweep_mod.Plan("local", workers=2, threads=1), todo, tiny_data_dir, tmp_path / "results",
                      lambda cfg, outcome: done.append(outcome), on_progress=lambda *msg: seen.append(msg))
    assert all(o.error is None for o in done)
    for index, outcome in zip((0, 1), sorted(done, key=lambda o: o.record["seed"])):
        stages = [stage for i, stage, _, _ in seen if i == index]
        first_valid = outcome.record["epochs"][0]["valid"]["gauc"]
        assert stages[0] == "epoch 1/2" and f"epoch 2/2, valid GAUC {first_valid:.4f}" in stages, stages
    assert all(0 < d <= t for _, _, d, t in seen)


def test_the_sweep_board_shows_running_runs_and_drops_finished_ones(tiny_data_dir, tmp_path, monkeypatch):
    """ui's sweep display: a line per running run from on_progress, gone when the run ends."""
    todo = sweep_mod.Todo(existing=[], configs=[RunConfig(pooler="average", seed=0, **FAST)], resume=[None])
    frames = []

    def fake_execute(plan, configs, root, out, on_done, shipped, resume, on_progress):
        on_progress(0, "epoch 2/10, valid GAUC 0.7000", 5, 10)
        frames.append(_rendered(board_of[0]))
        on_done(configs[0], sweep_mod.Outcome(error="boom"))
        frames.append(_rendered(board_of[0]))

    board_of = []
    real_board = ui.run_board

    def capturing_board(*args, **kwargs):
        manager = real_board(*args, **kwargs)

        class Wrap:
            def __enter__(self):
                board_of.append(manager.__enter__())
                return board_of[-1]

            def __exit__(self, *exc):
                return manager.__exit__(*exc)

        return Wrap()

    monkeypatch.setattr(ui, "run_board", capturing_board)
    monkeypatch.setattr(sweep_mod, "execute", fake_execute)
    console = Console(file=io.StringIO(), width=200)
    finished, failures = ui._sweep_progress(console, sweep_mod, None, todo, tmp_path, tmp_path, {}, False)
    assert failures == 1 and finished == []
    assert any("average seed 0" in row and "valid GAUC 0.7000" in row and re.search(r"ETA", row) for row in frames[0])
    assert not any("average seed 0" in row for row in frames[1])
    assert any("1/1 runs" in row for row in frames[1])

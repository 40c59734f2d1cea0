"""Interrupted training: SIGINT/SIGTERM save a checkpoint, the record says interrupted, resume is exact."""

from __future__ import annotations

import json
import os
import signal

import pytest

from dinbench.checkpoint import CHECKPOINT, RunInterrupted
from dinbench.errors import DinbenchError
from dinbench.config import RunConfig, config_from_record
from dinbench.train import train_run
from helpers import assert_user_error

FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(16, 8), batch_size=128, max_len=20, lr=0.03)


def _cfg(**overrides) -> RunConfig:
    return RunConfig(**{**FAST, "pooler": "din:softmax", "epochs": 3, "seed": 5, **overrides})


def _signal_after_epoch(signum: int, epoch: int = 1):
    """A progress callback that sends ``signum`` to this process when ``epoch`` finishes its last batch."""

    def progress(stage: str, done: int, total: int) -> None:
        if stage.startswith(f"epoch {epoch}/") and done == total:
            os.kill(os.getpid(), signum)

    return progress


def _interrupted(tiny, results, cfg, **kwargs):
    with pytest.raises(RunInterrupted) as info:
        train_run(cfg, tiny, results, **kwargs)
    return info.value.run_dir


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_after_an_epoch_checkpoints_and_resume_matches_an_uninterrupted_run(tiny, tmp_path, signum):
    results = tmp_path / "results"
    _, straight = train_run(_cfg(), tiny, results)
    sigint_before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a shell's background job

    run_dir = _interrupted(tiny, results, _cfg(), progress=_signal_after_epoch(signum))
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "interrupted"
    assert signal.Signals(signum).name in record["reason"] and "epoch 2, step 0" in record["reason"]
    assert record["resume"] == f"dinbench run --resume {run_dir.name}"
    assert (run_dir / CHECKPOINT).is_file()
    assert signal.getsignal(signum) is not None  # handlers restored: the default ones are back
    assert signal.getsignal(signal.SIGINT) is sigint_before

    _, resumed = train_run(_cfg(), tiny, results, resume_dir=run_dir)
    assert resumed["status"] == "completed" and resumed["resumed"] is True
    assert resumed["test"] == straight["test"]
    assert [e["valid"] for e in resumed["epochs"]] == [e["valid"] for e in straight["epochs"]]
    assert resumed["best_epoch"] == straight["best_epoch"]
    assert not (run_dir / CHECKPOINT).exists()  # the completed record replaces the checkpoint


def test_interrupt_mid_epoch_resumes_exactly_with_bucketing_and_lr_decay(tiny, tmp_path):
    cfg = dict(bucket=True, optimizer="sgd", lr=0.5, lr_decay_steps=5, lr_decay=0.5, epochs=2)
    results = tmp_path / "results"
    _, straight = train_run(_cfg(**cfg), tiny, results)
    calls = []

    def stop_at_step_7() -> bool:  # the 7th batch boundary: mid-way through epoch 1
        calls.append(1)
        return len(calls) == 7

    run_dir = _interrupted(tiny, results, _cfg(**cfg), stop=stop_at_step_7)
    assert "epoch 1, step 6" in json.loads((run_dir / "record.json").read_text())["reason"]
    _, resumed = train_run(_cfg(**cfg), tiny, results, resume_dir=run_dir)
    assert resumed["test"] == straight["test"]
    assert [e["train_loss"] for e in resumed["epochs"]] == pytest.approx([e["train_loss"] for e in straight["epochs"]])


def test_completed_run_is_not_resumed(tiny, tmp_path):
    run_dir, _ = train_run(_cfg(epochs=1), tiny, tmp_path / "results")
    with pytest.raises(DinbenchError, match="completed, not interrupted"):
        train_run(_cfg(epochs=1), tiny, tmp_path / "results", resume_dir=run_dir)


CLI_ARGS = ("--pooler", "din:softmax", "--seed", "5", "--epochs", "3", "--embedding-dim", "4", "--mlp-hidden", "16,8",
            "--batch-size", "128", "--max-len", "20", "--lr", "0.03")


def test_cli_resume_ends_with_the_uninterrupted_metrics(cli, tiny_data_dir, tiny):
    invoke, _, results = cli
    folders = ("--data-dir", str(tiny_data_dir), "--results-dir", str(results))
    first = invoke("run", *CLI_ARGS, *folders, dirs=False)
    assert first.exit_code == 0, first.output
    (path,) = results.glob("*/record.json")
    straight = json.loads(path.read_text())

    run_dir = _interrupted(tiny, results, config_from_record(straight["config"]), progress=_signal_after_epoch(signal.SIGINT))
    resumed = invoke("run", "--resume", run_dir.name, *folders, dirs=False)
    assert resumed.exit_code == 0, resumed.output
    record = json.loads((run_dir / "record.json").read_text())
    assert record["status"] == "completed" and record["test"] == straight["test"]
    assert_user_error(invoke("run", "--resume", "no-such-run", *folders, dirs=False), "no run 'no-such-run'")
    assert_user_error(invoke("run", "--resume", run_dir.name, *folders, dirs=False), "completed, not interrupted")


def test_cli_interrupt_names_the_resume_command_and_exits_130(cli, tiny_data_dir, monkeypatch):
    from dinbench import train

    invoke, _, results = cli
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **k: real_fit(*a, **{**k, "stop": lambda: True}))
    result = invoke("run", *CLI_ARGS, "--data-dir", str(tiny_data_dir), "--results-dir", str(results), dirs=False)
    assert result.exit_code == 130, result.output
    err = result.stderr.strip()
    assert err.startswith("error:") and "\n" not in err
    (path,) = results.glob("*/record.json")
    run_id = path.parent.name
    assert f"continue with: dinbench run --resume {run_id} --data-dir {tiny_data_dir} --results-dir {results}" in err
    assert json.loads(path.read_text())["status"] == "interrupted"

"""Batches gathered from the behaviour store, and training runs: determinism, records, model selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dinbench.batches import batch_indices, make_store
from dinbench.errors import DinbenchError
from dinbench.config import RunConfig
from dinbench.runtime import LocalRuntime
from dinbench.train import CHECK_EVERY, Diverged, Trainer, fit, train_run

# Small and fast: 4-wide embeddings, a small MLP, a learning rate that moves the metrics in few epochs.
FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(16, 8), batch_size=128, max_len=20, lr=0.03)


def _user_sequences(p):
    """user id -> DataFrame of its behaviours in order (built independently of user_start)."""
    return {int(u): g.reset_index(drop=True) for u, g in p.behaviours.groupby("user", sort=True)}


@pytest.mark.parametrize("max_len", [3, 50])
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_gather_returns_the_users_earlier_behaviours(tiny, split, max_len):
    store = make_store(tiny)
    frame = tiny.splits[split]
    samples = store.samples(frame, max_len)
    seqs = _user_sequences(tiny)
    idx = np.random.default_rng(0).permutation(len(samples))[:150]
    batch = store.batch(samples, idx)
    B, L = batch.hist_item.shape
    assert B == len(idx)
    assert L == max(min(int(frame["hist_end"].iloc[i]), max_len) for i in idx)  # padded to the batch's longest
    for row, i in enumerate(idx):
        user, end = int(frame["user"].iloc[i]), int(frame["hist_end"].iloc[i])
        seq = seqs[user]
        n = min(end, max_len)
        hist = seq.iloc[end - n : end]  # most recent max_len before the target, oldest first
        assert batch.mask[row].tolist() == [True] * n + [False] * (L - n)
        assert samples.hist_len[i] == n
        assert batch.hist_item[row, :n].tolist() == hist["item"].tolist()
        assert batch.hist_category[row, :n].tolist() == hist["category"].tolist()
        assert (batch.hist_item[row, n:] == 0).all() and (batch.hist_category[row, n:] == 0).all()
        target_time = int(seq["time"].iloc[end])
        assert batch.age[row, :n].tolist() == [float(target_time - t) for t in hist["time"]]
        assert (batch.age[row, n:] == 0).all()
        assert int(batch.item[row]) == int(frame["item"].iloc[i])
        assert int(batch.category[row]) == int(frame["category"].iloc[i])
        assert float(batch.label[row]) == float(frame["label"].iloc[i])
    # the positive candidate of a sample is the behaviour at hist_end
    pos = frame[frame["label"] == 1].head(50)
    for u, e, item in zip(pos["user"], pos["hist_end"], pos["item"]):
        assert seqs[int(u)]["item"].iloc[int(e)] == item
    assert (batch.age[batch.mask] >= 0).all()  # Unix seconds: the history is never after its target


def test_batch_indices_cover_every_row_once():
    rng = np.random.default_rng(0)
    parts = batch_indices(1000, 128, rng)
    assert [len(p) for p in parts] == [128] * 7 + [104]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1000))
    assert np.concatenate(batch_indices(10, 3)).tolist() == list(range(10))  # in order without rng


def _run(tiny, tmp_path, **overrides):
    # validated here, at the boundary, as the CLI and the grid do
    cfg = RunConfig(**{**FAST, "pooler": "din:softmax", "epochs": 2, "seed": 0, **overrides})
    return train_run(cfg, tiny, tmp_path / "results")


def test_same_seed_gives_identical_metrics(tiny, tmp_path):
    dir_a, a = _run(tiny, tmp_path, seed=3)
    dir_b, b = _run(tiny, tmp_path, seed=3)
    assert dir_a != dir_b
    assert a["test"] == b["test"]
    assert [e["valid"] for e in a["epochs"]] == [e["valid"] for e in b["epochs"]]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["best_epoch"] == b["best_epoch"]
    _, c = _run(tiny, tmp_path, seed=4)
    assert c["test"] != a["test"]
    assert [e["train_loss"] for e in c["epochs"]] != [e["train_loss"] for e in a["epochs"]]


def test_record_contents(tiny, tmp_path):
    run_dir, record = _run(tiny, tmp_path, seed=1, pooler="average")
    on_disk = json.loads((run_dir / "record.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(record))
    assert on_disk["run_id"] == run_dir.name and run_dir.parent == tmp_path / "results"
    assert on_disk["status"] == "completed" and on_disk["schema"] == 1
    cfg = on_disk["config"]
    assert cfg["pooler"] == "average" and cfg["seed"] == 1 and cfg["epochs"] == 2
    assert cfg["embedding_dim"] == 4 and cfg["mlp_hidden"] == [16, 8] and cfg["lr"] == 0.03
    assert on_disk["seed"] == 1 and on_disk["pooler"] == "average"
    assert on_disk["dataset"]["name"] == "synthetic"
    assert on_disk["dataset"]["fingerprint"] == tiny.fingerprint
    assert on_disk["dataset"]["counts"] == tiny.manifest["counts"]
    versions = on_disk["versions"]
    for pkg in ("python", "dinbench", "torch", "numpy", "pandas", "scikit-learn"):
        assert versions[pkg] and versions[pkg] != "not installed", pkg
    assert isinstance(on_disk["epochs"], list) and [e["epoch"] for e in on_disk["epochs"]] == [1, 2]
    for e in on_disk["epochs"]:
        assert math.isfinite(e["train_loss"]) and e["train_seconds"] >= 0
        assert set(e["valid"]) >= {"auc", "gauc", "logloss"}
        assert e["valid"]["gauc_users"] + e["valid"]["gauc_skipped_users"] == tiny.n_users
    assert on_disk["best_epoch"] in (1, 2)
    test = on_disk["test"]
    assert set(test) >= {"auc", "gauc", "logloss", "gauc_users", "gauc_skipped_users"}
    assert 0.0 <= test["auc"] <= 1.0 and 0.0 <= test["gauc"] <= 1.0 and test["logloss"] > 0
    assert test["gauc_users"] == tiny.n_users  # every user has one positive and one negative in test
    assert on_disk["train_rows"] == len(tiny.splits["train"])
    assert on_disk["train_rows_per_s"] > 0 and on_disk["wall_seconds"] > 0
    assert on_disk["parameters"] > 0 and on_disk["device"] == "cpu"
    assert "seed" not in on_disk["config_key"] and "pooler" not in on_disk["config_key"]


def test_paper_protocol_trains_on_train_plus_valid(tiny, tmp_path):
    _, record = _run(tiny, tmp_path, protocol="paper", epochs=2)
    assert record["train_rows"] == len(tiny.splits["train"]) + len(tiny.splits["valid"])
    assert record["train_rows"] == tiny.manifest["counts"]["train_samples"] + tiny.manifest["counts"]["valid_samples"]
    assert len(record["epochs"]) == 2
    assert all("valid" not in e for e in record["epochs"])
    assert record["best_epoch"] == 2  # no selection: the last epoch
    assert record["config"]["protocol"] == "paper"


def test_best_epoch_is_argmax_of_valid_gauc_and_its_weights_are_tested(tiny, tmp_path):
    _, full = _run(tiny, tmp_path, pooler="average", epochs=5, patience=10)
    gaucs = [e["valid"]["gauc"] for e in full["epochs"]]
    assert len(gaucs) == 5  # patience larger than the epochs: nothing stopped early
    assert full["best_epoch"] == int(np.argmax(gaucs)) + 1
    # The test metrics are those of the best epoch's weights: training only up to that epoch
    # (same seed, so the same weights at that epoch) must give the very same test metrics.
    _, upto = _run(tiny, tmp_path, pooler="average", epochs=full["best_epoch"], patience=10)
    assert upto["best_epoch"] == full["best_epoch"]
    assert upto["test"] == full["test"]


def test_early_stopping_after_patience(tiny, tmp_path):
    _, record = _run(tiny, tmp_path, pooler="average", epochs=8, patience=0)
    gaucs = [e["valid"]["gauc"] for e in record["epochs"]]
    best = -math.inf
    for i, g in enumerate(gaucs):
        improved = g > best
        best = max(best, g)
        if not improved:  # patience 0: the first epoch without improvement is the last
            assert i == len(gaucs) - 1
    assert len(gaucs) == 8 or gaucs[-1] <= max(gaucs[:-1])
    assert record["best_epoch"] == int(np.argmax(gaucs)) + 1


@pytest.mark.parametrize(
    "bad",
    [dict(epochs=0), dict(batch_size=0), dict(max_len=0), dict(embedding_dim=0), dict(lr=0.0),
     dict(patience=-1), dict(protocol="nope"), dict(pooler="nope"), dict(device="tpu")],
)
def test_invalid_config_is_refused_before_training(tiny, tmp_path, bad):
    with pytest.raises(DinbenchError):
        _run(tiny, tmp_path, **bad)
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def _recording_steps(monkeypatch, replace=None):
    """Trainer.step, with every returned loss recorded (read back here: a test may sync) and, where
    ``replace(call)`` (1-based over the run) gives a value, that value returned instead."""
    losses: list[float] = []
    real = Trainer.step

    def step(self, rows):
        loss, aux = real(self, rows)  # aux: the model's auxiliary term (None without one)
        value = replace(len(losses) + 1) if replace is not None else None
        if value is not None:
            loss = torch.tensor(value, dtype=loss.dtype, device=loss.device)
        losses.append(float(loss.detach()))
        return loss, aux

    monkeypatch.setattr(Trainer, "step", step)
    return losses


def test_nan_loss_stops_the_run_and_marks_the_record_failed(tiny, tmp_path, monkeypatch):
    results = tmp_path / "results"
    losses = _recording_steps(monkeypatch)
    with pytest.raises(DinbenchError, match=r"epoch 1, step \d+.*--lr.*failed") as info:
        train_run(RunConfig(pooler="average", epochs=3, **{**FAST, "lr": 1e30}), tiny, results)
    first_bad = next(i for i, v in enumerate(losses, 1) if not math.isfinite(v))
    assert f"at epoch 1, step {first_bad};" in str(info.value)  # the first step whose loss was not finite
    (record_path,) = results.glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "failed" and ("nan" in record["reason"] or "inf" in record["reason"])
    assert record["reason"].endswith(f"at epoch 1, step {first_bad}")
    from dinbench.records import load_records
    from dinbench.report import runs_frame

    loaded, _ = load_records(results)
    assert runs_frame(loaded).empty  # a failed run is never reported as a result


@pytest.mark.parametrize("epoch,step", [(1, 1), (2, CHECK_EVERY + 7), (2, 2 * CHECK_EVERY)])
def test_divergence_is_reported_at_the_first_non_finite_step(tiny, monkeypatch, epoch, step):
    """The loss is read back only every CHECK_EVERY steps and at an epoch's end, but Diverged names the
    first step whose loss was NaN or infinite, even when later steps are finite again."""
    cfg = RunConfig(pooler="average", epochs=3, **{**FAST, "batch_size": 16})
    per_epoch = -(-len(tiny.splits["train"]) // 16)
    assert per_epoch > 2 * CHECK_EVERY  # the steps above lie inside the epoch, past a check
    bad = (epoch - 1) * per_epoch + step
    values = {bad: float("nan"), bad + 1: float("inf")}  # the first, then another; later steps finite
    losses = _recording_steps(monkeypatch, values.get)
    with pytest.raises(Diverged) as info:
        fit(cfg, tiny)
    assert (info.value.epoch, info.value.step) == (epoch, step) and math.isnan(info.value.value)
    checked = -(-step // CHECK_EVERY) * CHECK_EVERY  # the next check (or the epoch's end) stops it
    assert len(losses) == (epoch - 1) * per_epoch + min(checked, per_epoch)


def test_the_evaluation_batch_follows_the_device_and_the_record_says_which(tiny, tmp_path):
    from dinbench.runtime import eval_batch_size

    assert eval_batch_size(0, "cpu") == 4096 and eval_batch_size(0, torch.device("cuda")) == 65536
    assert eval_batch_size(123, "cuda") == 123 and eval_batch_size(123, "cpu") == 123  # a size given is kept
    cfg = RunConfig(pooler="average", epochs=1, embedding_dim=4, mlp_hidden=(8,), max_len=10)
    assert cfg.eval_batch_size == 0  # the default: decided by the device when the run starts
    _, record = train_run(cfg, tiny, tmp_path)
    assert record["config"]["eval_batch_size"] == 4096


def test_a_batch_out_of_device_memory_is_scored_again_in_halves(tiny):
    """predict splits a batch that raises OutOfMemoryError until it fits: the same scores as small batches."""
    from dinbench.runtime import predict

    trainer = Trainer(RunConfig(pooler="din:softmax", epochs=1, embedding_dim=4, mlp_hidden=(8,), max_len=10), tiny,
                      LocalRuntime())
    model, store, valid = trainer.learner.model, trainer.data.store, trainer.data.valid
    sizes: list[int] = []

    class Small(torch.nn.Module):  # a device that holds at most 40 rows a batch
        needs_padded = model.needs_padded

        def forward(self, batch):
            sizes.append(len(batch.label))
            if len(batch.label) > 40:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return model(batch)

    expected = predict(model, store, valid, 32, "cpu")
    got = predict(Small(), store, valid, 4096, "cpu")
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert sizes[0] == len(valid) > 40 and max(s for s in sizes if s <= 40) <= 40  # tried whole, then halves
    assert sum(s for s in sizes if s <= 40) == len(valid)  # every row scored once

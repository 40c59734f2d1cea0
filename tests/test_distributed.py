"""One run on several processes: torchrun + DistributedDataParallel on gloo (CPU) gives the metrics of
a single process, writes one record, and refuses what it cannot do in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dinbench import poolers
from dinbench.batches import make_store
from dinbench.config import RunConfig, config_from_record
from dinbench.distributed import DistributedRuntime
from dinbench.model.build import build_model
from dinbench.train import train_run
from helpers import REPO_ROOT, assert_user_error

# SGD, not Adam: Adam would hide a gradient off by a constant factor. 1,648 training rows: batches of 101
# split 51/50 between the ranks (a mean of the ranks' means would be wrong); a batch of 1,647 leaves a
# last batch of 1 row, so rank 1 has an empty slice.
SGD = ("--optimizer", "sgd", "--lr", "0.5")
CASES = {
    "uneven slices": ("--pooler", "average,din", "--epochs", "2", "--batch-size", "101", *SGD),
    "empty slice": ("--pooler", "time-decay", "--epochs", "1", "--batch-size", "1647", *SGD),
    # under DDP the tables keep dense gradients; lazy Adam takes the rows with a non-zero gradient
    "lazy-adam": ("--pooler", "din", "--epochs", "2", "--batch-size", "101", "--optimizer", "lazy-adam", "--lr", "0.01"),
}


def test_every_rank_slice_is_contiguous_and_the_slices_cover_the_batch_once():
    idx = np.random.default_rng(0).permutation(1000)[:203]
    for world in (1, 2, 3, 8):
        parts = [DistributedRuntime(rank=r, world=world, local_rank=r, backend="gloo").shard(idx) for r in range(world)]
        assert np.array_equal(np.concatenate([p for p, _ in parts]), idx)  # in order: rank r takes the r-th slice
        assert [n for _, n in parts] == [len(p) for p, _ in parts]
        assert max(n for _, n in parts) - min(n for _, n in parts) <= 1
    # fewer rows than ranks: the empty rank gets one row that does not count (weight 0)
    part, n = DistributedRuntime(rank=2, world=3, local_rank=2, backend="gloo").shard(idx[:2])
    assert n == 0 and len(part) == 1


@pytest.mark.parametrize("architecture", ["ranking", "two-tower"])
def test_every_pooler_uses_all_its_parameters_in_a_step(tiny, architecture):
    """DDP runs with find_unused_parameters=False: a parameter left out of a step would hang it."""
    samples = make_store(tiny).samples(tiny.splits["train"], 20)
    batch = make_store(tiny).batch(samples, np.arange(64))
    for spec in poolers.expand("all"):
        if architecture == "two-tower" and poolers.REGISTRY[poolers.parse_spec(spec)[0]].cls.uses_candidate:
            continue
        for options in ({}, {"learn_decay": True}) if spec == "time-decay" else ({},):
            cfg = RunConfig(pooler=spec, architecture=architecture, embedding_dim=4, mlp_hidden=(8,),
                            pooler_options=options)
            model = build_model(cfg, tiny).train()
            logits, _ = model(batch)
            logits.sum().backward()
            unused = [name for name, p in model.named_parameters() if p.grad is None]
            assert not unused, (spec, options, unused)


@pytest.mark.parametrize("case", CASES)
def test_torchrun_two_gloo_processes_match_one_process(tiny_data_dir, tiny, tmp_path, case):
    args = (*CASES[case], "--patience", "5", "--embedding-dim", "8")
    results = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "dinbench.cli", "run", "--distributed", *args, "--threads", "1",
         "--data-dir", str(tiny_data_dir), "--results-dir", str(results)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "each run on 2 processes (DistributedDataParallel, gloo)" in " ".join(r.stdout.split())
    files = sorted(results.glob("*/record.json"))
    assert len(files) == (2 if case == "uneven slices" else 1), files  # one record per run, by rank 0 only
    for path in files:
        rec = json.loads(path.read_text())
        assert rec["status"] == "completed" and rec["world_size"] == 2
        assert rec["distributed"] == {"world_size": 2, "backend": "gloo"}
        cfg = config_from_record(rec["config"])
        _, single = train_run(cfg, tiny, tmp_path / "single")  # one process, one thread
        assert single["world_size"] == 1
        # the same global batches and gradient, summed in another order: equal up to rounding
        # (measured: logloss differs by ~1e-9, AUC and GAUC not at all)
        for metric, tol in (("auc", 1e-3), ("gauc", 1e-3), ("logloss", 1e-5)):
            assert rec["test"][metric] == pytest.approx(single["test"][metric], abs=tol), metric
        assert len(rec["epochs"]) == len(single["epochs"])  # the same early-stopping decisions
        assert rec["best_epoch"] == single["best_epoch"]
        if len(single["epochs"]) > 1:  # training moved the model: the comparison is not of two untrained models
            assert single["epochs"][0]["train_loss"] != pytest.approx(single["epochs"][1]["train_loss"], rel=1e-3)
        for mine, theirs in zip(rec["epochs"], single["epochs"]):
            assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-5)
            assert mine["valid"]["gauc"] == pytest.approx(theirs["valid"]["gauc"], abs=1e-3)


@pytest.mark.parametrize("args, fragments", [
    ((), ("--distributed must be started by torchrun", "torchrun --nproc-per-node")),
    (("--l2-minibatch", "0.01"), ("--l2-minibatch does not combine with --distributed",)),
    (("--resume", "some-run"), ("--resume does not combine with --distributed",)),
])
def test_distributed_refusals_are_one_line(cli, monkeypatch, args, fragments):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    invoke, _, results = cli
    r = invoke("run", "--distributed", "--pooler", "average", "--epochs", "1", *args)
    assert_user_error(r, *fragments)
    assert not list(results.glob("*/record.json"))

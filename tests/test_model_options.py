"""Model-level options: architectures, attention groups, presets, mini-batch aware L2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinbench import poolers
from dinbench.batches import make_store
from dinbench.config import PRESETS, RunConfig, apply_preset
from dinbench.errors import DinbenchError
from dinbench.model.ctr import CTRModel
from dinbench.model.regularization import MiniBatchL2, feature_counts
from dinbench.train import train_run

from helpers import assert_user_error

FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(16, 8), batch_size=128, max_len=20, lr=0.03)


def _batch(tiny, n=64):
    store = make_store(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    return store.batch(samples, np.arange(n))


def test_two_tower_refuses_a_candidate_dependent_pooler():
    with pytest.raises(DinbenchError, match="two-tower"):
        CTRModel(10, 3, lambda d: poolers.build("din", d), embedding_dim=4, architecture="two-tower")


def test_two_tower_user_side_never_sees_the_candidate(tiny):
    torch.manual_seed(0)
    model = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build("average", d),
                     embedding_dim=4, mlp_hidden=(8,), architecture="two-tower").eval()
    batch = _batch(tiny)
    seen = {}
    model.user_tower.register_forward_hook(lambda m, i, o: seen.setdefault("user", o.detach().clone()))
    model(batch)
    user_a = seen.pop("user")
    batch.item = torch.roll(batch.item, 1)  # other candidates, same histories
    batch.category = torch.roll(batch.category, 1)
    model(batch)
    assert torch.equal(user_a, seen["user"])


def test_separate_attention_groups_pool_items_and_categories_apart(tiny):
    torch.manual_seed(0)
    model = CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build("din:softmax", d),
                     embedding_dim=4, mlp_hidden=(8,), attention_groups="separate").eval()
    assert len(model.poolers) == 2 and all(p.dim == 4 for p in model.poolers)
    batch = _batch(tiny)
    logits, weights = model(batch)
    assert logits.shape == (64,) and torch.isfinite(logits).all()
    # each group's softmax sums to 1, so their mean does too
    sums = weights.sum(1)[batch.mask.any(1)]
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_every_pooler_trains_in_both_groupings_and_both_architectures(tiny, tmp_path):
    """One epoch per combination: a finite record, and two-tower only for candidate-free poolers."""
    for spec in ("sum", "time-decay", "dot:none", "multihead:softmax"):
        for groups in ("joint", "separate"):
            _, record = train_run(RunConfig(pooler=spec, epochs=1, attention_groups=groups, **FAST), tiny, tmp_path)
            assert np.isfinite(record["test"]["gauc"])
    _, record = train_run(RunConfig(pooler="time-decay", epochs=1, architecture="two-tower", **FAST), tiny, tmp_path)
    assert record["architecture"] == "two-tower" and np.isfinite(record["test"]["auc"])


def test_preset_paper_and_explicit_options_win():
    merged = apply_preset("paper", {"lr": 0.5, "epochs": None})
    assert merged["lr"] == 0.5  # explicit
    assert merged["epochs"] == PRESETS["paper"]["epochs"]  # None = not given: the preset's value
    cfg = RunConfig(**merged)
    assert (cfg.optimizer, cfg.batch_size, cfg.embedding_dim, cfg.grad_clip) == ("sgd", 32, 64, 5.0)
    with pytest.raises(DinbenchError, match="unknown preset"):
        apply_preset("nope", {})


def test_feature_counts_count_candidates_and_history_windows():
    beh = np.array([1, 2, 3, 1, 2])  # behaviour rows 0..4 with these ids
    # sample A: history rows 0..2, candidate 2; sample B: rows 1..4, candidate 3
    counts = feature_counts(beh, np.array([0, 1]), np.array([3, 4]), np.array([2, 3]), n=3)
    # id 1: row 0 (A) + row 3 (B) = 2; id 2: row 1 (A, B) + row 4 (B) + cand A = 4; id 3: row 2 (A, B) + cand B = 3
    assert counts.tolist() == [0, 2, 4, 3]


def test_minibatch_l2_penalises_only_present_rows_scaled_by_frequency():
    items = torch.nn.Embedding(5, 2)
    cats = torch.nn.Embedding(3, 2)
    reg = MiniBatchL2(np.array([0, 1, 2, 4, 8]), np.array([0, 1, 10]), weight=0.5)
    ids = torch.tensor([[1, 3, 0], [3, 3, 0]])
    cids = torch.tensor([[2, 0, 0], [2, 2, 0]])
    want = 0.5 * (items.weight[1].pow(2).sum() / 1 + items.weight[3].pow(2).sum() / 4
                  + cats.weight[2].pow(2).sum() / 10)
    got = reg(items, cats, ids, cids)
    assert torch.allclose(got, want)
    got.backward()
    assert items.weight.grad[2].abs().sum() == 0 and items.weight.grad[4].abs().sum() == 0  # absent rows
    assert items.weight.grad[0].abs().sum() == 0  # padding


def test_l2_minibatch_changes_training(tiny, tmp_path):
    _, plain = train_run(RunConfig(pooler="average", epochs=1, **FAST), tiny, tmp_path)
    _, reg = train_run(RunConfig(pooler="average", epochs=1, l2_minibatch=0.5, **FAST), tiny, tmp_path)
    assert plain["test"]["logloss"] != reg["test"]["logloss"]
    assert reg["config"]["l2_minibatch"] == 0.5


def test_cli_two_tower_skips_attention_poolers(cli):
    invoke, _, results = cli
    assert invoke("download", "synthetic", "--users", "150", "--mean-length", "8").exit_code == 0
    r = invoke("run", "--pooler", "average,din", "--architecture", "ranking,two-tower", "--epochs", "1",
               "--embedding-dim", "4", "--batch-size", "256")
    assert r.exit_code == 0, r.output
    assert "two-tower skips din:none" in r.stdout
    assert len(list(results.glob("*/record.json"))) == 3  # average x 2 architectures + din ranking
    report = invoke("report", "--format", "csv")
    assert report.stdout.count("two-tower") == 1 and report.stdout.count("ranking") == 2
    assert_user_error(invoke("run", "--pooler", "din", "--architecture", "two-tower"), "two-tower")

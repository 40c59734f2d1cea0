"""``--architecture three-tower`` (issue 16 item 4): user tower, item tower, a cross tower over cheap
history x candidate counts, fused late by a small MLP; candidate poolers refused as in two-tower."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dinbench import poolers
from dinbench.batches import BehaviourStore
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.model.ctr import CROSS_FEATURES, CTRModel, cross_features
from dinbench import report
from dinbench.train import train_run
from helpers import assert_user_error

def _runs(rows):
    base = dict(dataset="d", fingerprint="f", protocol="din", config="c", logloss=0.5, best_epoch=1,
                rows_per_s=1.0, wall_seconds=1.0, run_id="r")
    return pd.DataFrame([{**base, **r} for r in rows])


FAST = dict(dataset="synthetic", embedding_dim=4, mlp_hidden=(16, 8), batch_size=128, max_len=20, lr=0.03)


def _batch(tiny, n=64):
    store = BehaviourStore(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    return store, samples, store.batch(samples, np.arange(n))


def _model(tiny, spec="average"):
    torch.manual_seed(0)
    return CTRModel(tiny.n_items, tiny.n_categories, lambda d: poolers.build(spec, d), embedding_dim=4,
                    mlp_hidden=(8,), architecture="three-tower")


def test_cross_features_count_the_candidate_in_the_history():
    class B:  # the fields cross_features reads
        mask = torch.tensor([[True, True, False, True], [False, False, False, False]])
        hist_category = torch.tensor([[2, 5, 2, 2], [2, 2, 2, 2]])  # padding holds ids too: never counted
        hist_item = torch.tensor([[7, 9, 7, 8], [7, 7, 7, 7]])
        category = torch.tensor([2, 2])
        item = torch.tensor([7, 7])

    f = cross_features(B)
    assert f.shape == (2, CROSS_FEATURES)
    # row 0: category 2 at positions 0 and 3 (ranks 2 and 0), item 7 at position 0 (rank 2), length 3
    expected = [np.log1p(2), 1.0, 2 / 3, np.log1p(1), 1 / 3, np.log1p(3)]
    torch.testing.assert_close(f[0], torch.tensor(expected, dtype=torch.float32))
    assert (f[1] == 0).all()  # an empty history: nothing counts


def test_three_tower_refuses_a_candidate_dependent_pooler(tiny):
    with pytest.raises(DinbenchError, match="three-tower"):
        CTRModel(10, 3, lambda d: poolers.build("din", d), embedding_dim=4, architecture="three-tower")


def test_user_tower_never_sees_the_candidate_but_the_cross_tower_does(tiny):
    model = _model(tiny).eval()
    _, _, batch = _batch(tiny)
    seen = {}
    model.user_tower.register_forward_hook(lambda m, i, o: seen.setdefault("user", o.detach().clone()))
    model.cross_tower.register_forward_hook(lambda m, i, o: [seen.setdefault("cross", i[0].detach().clone()), None][1])
    logits, _ = model(batch)
    user_a, cross_a = seen.pop("user"), seen.pop("cross")
    batch.item = torch.roll(batch.item, 1)
    batch.category = torch.roll(batch.category, 1)
    logits_b, _ = model(batch)
    assert torch.equal(user_a, seen["user"])
    assert not torch.equal(cross_a, seen["cross"]) and not torch.equal(logits, logits_b)
    assert logits.shape == (64,) and torch.isfinite(logits).all()


def test_gradients_reach_every_parameter_and_the_static_batch_changes_nothing(tiny):
    model = _model(tiny, "time-decay").train()
    store, samples, batch = _batch(tiny)
    idx = np.arange(64)
    real = int(samples.hist_len[idx].sum())
    static = store.batch_static(samples, torch.from_numpy(idx), 20, capacity=real + 11)
    grads = []
    for b in (batch, static):
        model.zero_grad(set_to_none=True)
        logits, _ = model(b)
        (logits * torch.linspace(-1, 1, 64)).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert {n for n, _ in model.named_parameters()} - {"embeddings.item.weight", "embeddings.category.weight"} <= set(grads[0])
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_one_epoch_and_the_report_places_it_between_ranking_and_two_tower(tiny, tmp_path, cli):
    _, record = train_run(RunConfig(pooler="average", epochs=1, architecture="three-tower", **FAST), tiny, tmp_path)
    assert record["architecture"] == "three-tower" and np.isfinite(record["test"]["auc"])
    runs = _runs([dict(architecture=a, pooler="average", seed=0, auc=0.6, gauc=g)
                  for a, g in (("two-tower", 0.7), ("ranking", 0.6), ("three-tower", 0.65))])
    table = report.summarize(runs, baseline="average")
    assert list(table["architecture"]) == ["ranking", "three-tower", "two-tower"]
    invoke, data, _ = cli
    assert_user_error(invoke("run", "--pooler", "din", "--architecture", "three-tower", "--dataset", "synthetic"),
                      "three-tower")

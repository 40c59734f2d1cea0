"""dien: what it computes (against a plain per-row reference), its variants, its auxiliary loss and the
seam that carries it (negatives drawn by the store, the term added to the objective and recorded), and
its refusal under cuda-graphs. The registry-wide properties (padding, empty histories, gradients, the
static batch) are in tests/test_poolers.py, tests/test_pooler_zoo.py and tests/test_compile.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dinbench import graph_step, poolers
from dinbench.batches import BehaviourStore
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.model.build import build_model
from dinbench.poolers.packed import Packed
from helpers import padded_case

DIM = 8
VARIANTS = ("augru", "agru", "aigru")


def _pooler(spec: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    return poolers.build(spec, DIM, **options)


def _cell(gru, x, h, a, mode):
    """One step of SteeredGRU, written out: (1 - u') h + u' tanh(W_n x + r * (U_n h)), u' per ``mode``."""
    if mode == "aigru":
        x = a * x
    gx, gh = gru.input(x).chunk(gru.gates), gru.recurrent(h).chunk(gru.gates)
    r = torch.sigmoid(gx[0] + gh[0])
    n = torch.tanh(gx[-1] + r * gh[-1])
    u = a if mode == "agru" else torch.sigmoid(gx[1] + gh[1]) * (a if mode == "augru" else 1.0)
    return (1 - u) * h + u * n


def _reference(pooler, query, keys, mask, negatives=None):
    """Row by row over the real positions only: (pooled [B, D], weights [B, L], auxiliary loss or None)."""
    B, L, _ = keys.shape
    pooled, weights, pair_losses = torch.zeros(B, DIM), torch.zeros(B, L), []
    for b in range(B):
        e = keys[b][mask[b]]  # [n, D]
        if len(e) == 0:
            continue
        h, states = torch.zeros(pooler.hidden), []
        for x in e:
            h = _cell(pooler.extractor, x, h, None, "gru")
            states.append(h)
        s = torch.stack(states)  # [n, H]
        q = query[b] if pooler.query_project is None else pooler.query_project(query[b])
        q = q.expand_as(s)
        score = pooler.first(torch.cat([q, s, q - s, q * s], -1))
        for layer in pooler.rest:
            score = layer(score)
        a = torch.softmax(score.squeeze(-1), 0)  # [n]
        weights[b, mask[b]] = a
        h = torch.zeros(pooler.hidden)
        for x, a_t in zip(s, a):
            h = _cell(pooler.evolver, x, h, a_t, pooler.evolution)
        pooled[b] = h if pooler.out is None else pooler.out(h)
        if negatives is not None:
            pred = s[:-1] if pooler.aux_project is None else pooler.aux_project(s[:-1])
            neg = negatives[b][mask[b]]
            for t in range(len(e) - 1):
                pair_losses.append(-(F.logsigmoid(pred[t] @ e[t + 1]) + F.logsigmoid(-(pred[t] @ neg[t + 1]))))
    aux = None if negatives is None else pooler.aux_weight * torch.stack(pair_losses).mean()
    return pooled, weights, aux


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("hidden", [0, 6], ids=["hidden=D", "hidden=6"])
@pytest.mark.parametrize("layout", ["right", "interleaved"])
def test_dien_computes_what_the_paper_says(variant, hidden, layout):
    """The packed, batched forward equals a plain per-row loop over the real positions: extractor GRU,
    attention of the candidate on each state (softmax), the steered evolution GRU, its last state; and
    the auxiliary loss is the mean over (t, t+1) pairs of the next-behaviour log-loss."""
    pooler = _pooler(f"dien:{variant}", gru_hidden=hidden).train()
    query, _, (keys, mask), _, _ = padded_case(7, 5, layout, DIM)
    mask[2] = False  # an empty history
    mask[3] = False
    mask[3, 4] = True  # one behaviour: no (t, t+1) pair
    negatives = torch.randn(keys.shape, generator=torch.Generator().manual_seed(1))
    packed = Packed.from_padded(keys, mask)
    packed.negatives = negatives[mask]  # [N, D], row-major like the keys
    out, w = pooler.pool_packed(query, packed)
    with torch.no_grad():
        ref_out, ref_w, ref_aux = _reference(pooler, query, keys, mask, negatives)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pooler.auxiliary_loss(), ref_aux, atol=1e-5, rtol=1e-5)
    assert (out[2] == 0).all()


def test_the_three_evolutions_differ():
    query, _, (keys, mask), _, _ = padded_case(3, 6, "interleaved", DIM)
    mask[:, :2] = True
    outs = {}
    for variant in VARIANTS:
        with torch.no_grad():
            outs[variant] = _pooler(f"dien:{variant}", 0).eval()(query, keys, mask)[0]
    augru, aigru = _pooler("dien:augru"), _pooler("dien:aigru")
    aigru.load_state_dict(augru.state_dict())  # the same weights, steered differently
    with torch.no_grad():
        assert not torch.allclose(augru.eval()(query, keys, mask)[0], aigru.eval()(query, keys, mask)[0], atol=1e-4)
    for a, b in (("augru", "agru"), ("augru", "aigru"), ("agru", "aigru")):
        assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)
    assert _pooler("dien:agru").evolver.gates == 2 and _pooler("dien").evolver.gates == 3
    assert poolers.canonical("dien") == "dien:augru" and _pooler("dien").evolution == "augru"


def test_options_are_checked_in_one_line():
    for options, fragment in (({"aux_weight": -1.0}, "aux-weight"), ({"aux_weight": float("inf")}, "aux-weight"),
                              ({"gru_hidden": -2}, "gru-hidden"), ({"attention_activation": "tanh"}, "dice")):
        with pytest.raises(DinbenchError, match=fragment) as info:
            poolers.build("dien", DIM, **options)
        assert "\n" not in str(info.value)
    with pytest.raises(DinbenchError, match="dien:augru, dien:agru, dien:aigru"):
        poolers.parse_spec("dien:gru")


def test_the_auxiliary_loss_only_in_training_and_only_with_negatives():
    pooler = _pooler("dien", gru_hidden=6)
    query, _, (keys, mask), _, _ = padded_case(5, 4, "right", DIM)
    packed = Packed.from_padded(keys, mask)
    pooler.train().pool_packed(query, packed)
    assert pooler.auxiliary_loss() is None  # no negatives handed over
    packed.negatives = torch.randn_like(packed.keys)
    pooler.pool_packed(query, packed)
    aux = pooler.auxiliary_loss()
    assert aux is not None and aux.dim() == 0 and torch.isfinite(aux)
    aux.backward()  # the auxiliary loss reaches the extractor and its own projection, not the evolution
    assert (pooler.aux_project.weight.grad != 0).any() and (pooler.extractor.input.weight.grad != 0).any()
    assert pooler.evolver.input.weight.grad is None
    pooler.eval().pool_packed(query, packed)
    assert pooler.auxiliary_loss() is None  # evaluation never computes it
    off = _pooler("dien", aux_weight=0.0).train()
    off.pool_packed(query, packed)
    assert off.auxiliary_loss() is None and not off.has_auxiliary_loss and not off.needs_negatives


# ---------------------------------------------------------------- negatives


def test_negatives_are_never_the_users_items_and_follow_the_seed(tiny):
    store = BehaviourStore(tiny)
    store.draw_negatives(tiny, seed=3)
    neg = store.neg_item.numpy()
    beh = tiny.behaviours
    users, items = beh["user"].to_numpy(), beh["item"].to_numpy()
    seen = {(u, i) for u, i in zip(users, items)}
    assert len(neg) == len(beh) and neg.min() >= 1 and neg.max() <= tiny.n_items
    assert not any((u, n) in seen for u, n in zip(users, neg))
    category = dict(zip(tiny.items["item"], tiny.items["category"]))
    assert all(category[n] == c for n, c in zip(neg, store.neg_category.numpy()))
    again = BehaviourStore(tiny)
    again.draw_negatives(tiny, seed=3)
    assert torch.equal(again.neg_item, store.neg_item)
    other = BehaviourStore(tiny)
    other.draw_negatives(tiny, seed=4)
    assert not torch.equal(other.neg_item, store.neg_item)
    assert len(set(neg)) > len(neg) // 10  # spread over the items, not one item


def test_batches_gather_the_negatives_only_when_asked(tiny):
    store = BehaviourStore(tiny)
    samples = store.samples(tiny.splits["train"], 20)
    idx = np.arange(40)
    assert store.batch(samples, idx).hist_neg_item is None
    with pytest.raises(ValueError, match="draw_negatives"):
        store.batch(samples, idx, negatives=True)
    store.draw_negatives(tiny, seed=0)
    batch = store.batch(samples, idx, negatives=True)
    rows = samples.hist_start[idx][:, None] + np.arange(batch.mask.shape[1])[None, :]  # [B, L] behaviour rows
    mask = batch.mask.numpy()
    expected = np.where(mask, store.neg_item.numpy()[np.minimum(rows, len(tiny.behaviours) - 1)], 0)
    assert np.array_equal(batch.hist_neg_item.numpy(), expected)
    expected_cat = np.where(mask, store.neg_category.numpy()[np.minimum(rows, len(tiny.behaviours) - 1)], 0)
    assert np.array_equal(batch.hist_neg_category.numpy(), expected_cat)
    assert store.batch(samples, idx).hist_neg_item is None  # evaluation's batches: none
    static = store.batch_static(samples, torch.from_numpy(idx), 20, int(samples.hist_len[idx].sum()) + 9,
                                negatives=True)
    assert torch.equal(static.hist_neg_item[:, : mask.shape[1]][batch.mask], batch.hist_neg_item[batch.mask])


# ---------------------------------------------------------------- the seam in the model and the trainer


def _cfg(**kw):
    base = dict(pooler="dien", embedding_dim=4, mlp_hidden=(8,), max_len=20, batch_size=128, lr=0.01)
    return RunConfig(**{**base, **kw})


def test_the_model_embeds_negatives_only_in_training(tiny):
    torch.manual_seed(0)
    for groups in ("joint", "separate"):
        model = build_model(_cfg(attention_groups=groups), tiny)
        assert model.needs_negatives and model.has_auxiliary_loss
        store = BehaviourStore(tiny)
        store.draw_negatives(tiny, seed=0)
        samples = store.samples(tiny.splits["train"], 20)
        batch = store.batch(samples, np.arange(64), negatives=True)
        model.train()(batch)
        terms = [p.auxiliary_loss() for p in model.poolers]
        assert all(t is not None for t in terms) and len(terms) == (1 if groups == "joint" else 2)
        torch.testing.assert_close(model.auxiliary_loss(), sum(terms))  # separate groups: one term per group
        model.eval()(batch)
        assert model.auxiliary_loss() is None
    assert not build_model(_cfg(pooler="din"), tiny).needs_negatives
    assert build_model(_cfg(pooler="din"), tiny).auxiliary_loss() is None


@pytest.mark.parametrize("aux_weight", [0.0, 1.0, 2.5])
def test_the_objective_is_the_click_loss_plus_the_weighted_auxiliary_term(tiny, aux_weight):
    """One training step's gradients are exactly those of BCE (aux_weight 0: plain BCE training, no
    negatives drawn) or of BCE + aux_weight * L_aux, recomputed here from a copy of the model."""
    from dinbench.runtime import LocalRuntime
    from dinbench.train import Trainer

    trainer = Trainer(_cfg(pooler_options={"aux_weight": aux_weight}), tiny, LocalRuntime())
    model = trainer.learner.model
    assert trainer.negatives == (aux_weight > 0) and (trainer.data.store.neg_item is None) == (aux_weight == 0)
    before = copy.deepcopy(model)
    rows = trainer.data.store.rows(np.arange(128))
    batch = trainer.data.store.batch(trainer.data.train, rows, negatives=aux_weight > 0)
    loss, aux = trainer.step(rows)
    logits, _ = before.train()(batch)
    bce = F.binary_cross_entropy_with_logits(logits.float(), batch.label)
    torch.testing.assert_close(loss, bce)
    if aux_weight == 0:
        assert aux is None and before.auxiliary_loss() is None
        objective = bce
    else:
        expected = before.auxiliary_loss()
        torch.testing.assert_close(aux, expected)
        objective = bce + expected
    objective.backward()
    for (name, p), q in zip(model.named_parameters(), before.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_the_auxiliary_loss_decreases_and_only_dien_records_it(tiny, tmp_path):
    from dinbench.train import train_run

    _, record = train_run(_cfg(epochs=4, batch_size=64), tiny, tmp_path / "dien")
    aux = [e["train_aux_loss"] for e in record["epochs"]]
    assert all(np.isfinite(aux)) and all(b < a for a, b in zip(aux, aux[1:])), aux
    assert aux[-1] < aux[0] - 0.02, aux
    _, din = train_run(_cfg(pooler="din", epochs=1), tiny, tmp_path / "din")
    assert set(din["epochs"][0]) == {"epoch", "train_loss", "train_seconds", "valid"}
    _, off = train_run(_cfg(epochs=1, pooler_options={"aux_weight": 0.0}), tiny, tmp_path / "off")
    assert "train_aux_loss" not in off["epochs"][0]


def test_a_resumed_run_keeps_the_auxiliary_sum(tiny, tmp_path):
    """Interrupted mid-epoch and resumed, the epoch's train_aux_loss equals the uninterrupted run's."""
    from dinbench.checkpoint import RunInterrupted
    from dinbench.train import train_run

    cfg = _cfg(epochs=2, batch_size=64)
    _, whole = train_run(cfg, tiny, tmp_path / "whole")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] == 30  # inside the second epoch (26 batches per epoch)

    with pytest.raises(RunInterrupted) as info:
        train_run(cfg, tiny, tmp_path / "cut", stop=stop)
    _, resumed = train_run(cfg, tiny, tmp_path / "cut", resume_dir=info.value.run_dir)
    for a, b in zip(whole["epochs"], resumed["epochs"]):
        assert a["train_aux_loss"] == pytest.approx(b["train_aux_loss"], rel=1e-9)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-9)


def test_same_seed_same_run(tiny, tmp_path):
    from dinbench.train import train_run

    _, a = train_run(_cfg(epochs=1), tiny, tmp_path / "a")
    _, b = train_run(_cfg(epochs=1), tiny, tmp_path / "b")
    assert a["epochs"][0]["train_aux_loss"] == b["epochs"][0]["train_aux_loss"] and a["test"] == b["test"]


# ---------------------------------------------------------------- cuda-graphs, the command line


def test_cuda_graphs_refuses_dien_in_one_line_and_auto_leaves_it_eager():
    cuda = torch.device("cuda")
    with pytest.raises(DinbenchError, match="cannot train pooler 'dien'") as info:
        graph_step.check(RunConfig(pooler="dien:agru", compile="cuda-graphs"), cuda, world=1)
    assert "\n" not in str(info.value) and "--compile on" in str(info.value)
    assert graph_step.resolve(RunConfig(pooler="dien"), cuda, world=1).compile == "off"
    assert graph_step.resolve(RunConfig(pooler="din"), cuda, world=1).compile == "cuda-graphs"


def test_dien_runs_from_the_command_line(cli, tiny_data_dir, tmp_path):
    invoke, _, _ = cli
    results = tmp_path / "cli-results"
    r = invoke("run", "--pooler", "dien,dien:aigru", "--dataset", "synthetic", "--epochs", "1", "--embedding-dim", "4",
               "--aux-weight", "0.5", "--data-dir", str(tiny_data_dir), "--results-dir", str(results), dirs=False)
    assert r.exit_code == 0, r.output
    records = [json.loads(f.read_text()) for f in sorted(results.glob("*/record.json"))]
    assert sorted(rec["pooler"] for rec in records) == ["dien:aigru", "dien:augru"]
    for rec in records:
        assert rec["status"] == "completed" and rec["config"]["pooler_options"]["aux_weight"] == 0.5
        assert np.isfinite(rec["epochs"][0]["train_aux_loss"]) and 0 <= rec["test"]["auc"] <= 1

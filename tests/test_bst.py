"""``bst`` (Behavior Sequence Transformer): what the registry-wide tests do not pin down.

Padding with arbitrary (filler) keys never matters, the position embedding makes the history's order
matter (and 'none' does not), the candidate's own output is what is pooled, bad head counts are one
clear error, and one epoch on the synthetic set trains.
"""

from __future__ import annotations

import math

import pytest
import torch

from dinbench import poolers
from dinbench.config import RunConfig
from dinbench.errors import DinbenchError
from dinbench.train import train_run
from helpers import assert_user_error

DIM = 8


def _bst(seed: int = 0, train: bool = False, **options):
    torch.manual_seed(seed)
    return poolers.build("bst", DIM, **options).train(train)


def _case(seed: int, batch: int = 5, length: int = 7):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, DIM, generator=g)
    keys = torch.randn(batch, length, DIM, generator=g)
    lens = torch.randint(1, length + 1, (batch,), generator=g)
    lens[0] = length
    mask = torch.arange(length)[None, :] < lens[:, None]  # right padding, oldest first
    age = (1 + 1000 * torch.rand(batch, length, generator=g)).sort(dim=1, descending=True).values
    return query, keys.masked_fill(~mask[..., None], 0.0), mask, age


def test_declaration():
    info = poolers.REGISTRY["bst"].info
    assert info.uses_candidate and info.uses_order
    assert [o.name for o in info.options] == ["layers", "heads", "position", "dropout"]
    assert poolers.resolve_options("bst", {}) == {"layers": 1, "heads": 2, "position": "order", "dropout": 0.0}
    assert poolers.canonical("bst") == "bst"


@pytest.mark.parametrize("options", [{}, {"position": "time", "layers": 2}, {"position": "none", "heads": 4}])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_filler_keys_at_padding_change_nothing(options, train):
    """Real embeddings (not zeros) at the padding, as a static batch lists them: output and gradients unchanged."""
    pooler = _bst(1, train, **options)
    query, keys, mask, age = _case(2)
    fillers = torch.where(mask[..., None], keys, keys[0, torch.randint(0, 7, mask.shape)])  # other rows' keys
    assert not torch.equal(fillers, keys)
    garbage_age = torch.where(mask, age, torch.rand(mask.shape) * 1e9)
    results = []
    for k, a in ((keys, age), (fillers, garbage_age)):
        k = k.clone().requires_grad_(True)
        pooler.zero_grad()
        out, w = pooler(query, k, mask, a)
        (out * torch.linspace(-1, 1, DIM)).sum().backward()
        results.append((out.detach(), w, k.grad, {n: p.grad.clone() for n, p in pooler.named_parameters()}))
    (out0, w0, g0, p0), (out1, w1, g1, p1) = results
    torch.testing.assert_close(out1, out0, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w1, w0, atol=1e-6, rtol=1e-6)
    assert (w1[~mask] == 0).all() and (g1[~mask] == 0).all()  # fillers neither weigh nor learn
    torch.testing.assert_close(g1, g0, atol=1e-6, rtol=1e-6)
    for name in p0:
        torch.testing.assert_close(p1[name], p0[name], atol=1e-6, rtol=1e-5, msg=name)


def test_position_embeddings_make_the_order_matter():
    query, keys, mask, age = _case(3)
    mask[:] = True
    reversed_keys = keys.flip(1)  # the same behaviours, most recent first
    with torch.no_grad():
        for options, order_matters in (({}, True), ({"position": "none"}, False), ({"position": "time"}, False)):
            pooler = _bst(4, **options)
            out, w = pooler(query, keys, mask, age)
            out_r, w_r = pooler(query, reversed_keys, mask, age.flip(1))  # ages travel with their behaviours
            assert (not torch.allclose(out_r, out, atol=1e-5)) == order_matters, options
            if not order_matters:
                torch.testing.assert_close(w_r, w.flip(1), atol=1e-6, rtol=1e-5)
        # by time, the same order with other ages is another input
        pooler = _bst(4, position="time")
        a, _ = pooler(query, keys, mask, age)
        b, _ = pooler(query, keys, mask, age * 64)
        assert not torch.allclose(a, b, atol=1e-5)
    assert poolers.build("bst", DIM).uses_order  # the registry-wide permutation test skips it by default


def test_order_ranks_count_real_positions_from_the_most_recent():
    pooler = _bst()
    mask = torch.tensor([[True, False, True, True, False], [False] * 5])
    index = pooler._position_index(mask, None)
    assert index[0, [0, 2, 3]].tolist() == [3, 2, 1]  # padding between real positions does not count
    timed = _bst(position="time")
    age = torch.tensor([[0.0, 1.0, 3.0, 1e30, -5.0]])
    assert timed._position_index(torch.ones(1, 5, dtype=torch.bool), age).tolist() == [[1, 2, 3, 48, 1]]
    with pytest.raises(ValueError, match="age"):
        timed(torch.randn(1, DIM), torch.randn(1, 5, DIM), torch.ones(1, 5, dtype=torch.bool), None)


def test_one_real_position_and_the_candidate_only():
    """A one-behaviour history: the candidate attends to itself and to it; weights in (0, 1) there."""
    pooler = _bst(5, layers=2)
    query, keys, mask, _ = _case(6, batch=2)
    mask[:] = False
    mask[0, 3] = True
    with torch.no_grad():
        out, w = pooler(query, keys, mask)
    assert (out[1] == 0).all() and (w[1] == 0).all()  # empty history pools to 0
    assert 0 < w[0, 3] < 1 and (w[0, [0, 1, 2, 4, 5, 6]] == 0).all()
    assert torch.isfinite(out).all() and out[0].abs().sum() > 0


def test_heads_must_divide_the_key_width_and_options_are_checked():
    with pytest.raises(DinbenchError, match="--heads 3 does not divide the key width 8") as info:
        poolers.build("bst", DIM, heads=3)
    assert "\n" not in str(info.value)
    for options, fragment in (({"position": "rank"}, "order, time, none"), ({"dropout": 1.0}, "dropout"),
                              ({"layers": 0}, "layers")):
        with pytest.raises(DinbenchError, match=fragment):
            poolers.build("bst", DIM, **options)
    assert poolers.label("bst", {"layers": 2, "position": "time"}) == "bst(layers=2, position=time)"


def test_dropout_is_off_by_default_so_train_mode_is_deterministic():
    pooler = _bst(7, train=True)
    query, keys, mask, _ = _case(8)
    a, _ = pooler(query, keys, mask)
    b, _ = pooler(query, keys, mask)
    assert torch.equal(a, b)
    noisy = _bst(7, train=True, dropout=0.5)
    assert not torch.equal(noisy(query, keys, mask)[0], noisy(query, keys, mask)[0])
    noisy.eval()
    assert torch.equal(noisy(query, keys, mask)[0], noisy(query, keys, mask)[0])


def test_one_epoch_on_the_synthetic_set(tiny, tmp_path):
    cfg = RunConfig(dataset="synthetic", pooler="bst", epochs=1, embedding_dim=4, mlp_hidden=(16, 8), batch_size=128,
                    max_len=20, seed=0, pooler_options={"layers": 2})
    run_dir, record = train_run(cfg, tiny, tmp_path / "results")
    assert record["status"] == "completed", record.get("status")
    assert math.isfinite(record["test"]["auc"]) and 0 < record["test"]["auc"] < 1


def test_a_bad_head_count_is_one_line_before_any_download(cli):
    invoke, data, _ = cli
    r = invoke("run", "--pooler", "bst", "--heads", "3", "--epochs", "1", "--embedding-dim", "8", "--dataset", "synthetic")
    assert_user_error(r, "--heads 3 does not divide the key width 16")
    assert not data.exists()

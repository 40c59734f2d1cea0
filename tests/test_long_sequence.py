"""The long-sequence retrieval poolers (sim:soft, sim:hard, eta): what each retrieves, that the
attention runs over the retrieved positions only, memory linear in the history length, and long
histories end to end (--max-len 1000 on synthetic data with long histories).

The properties every pooler shares (padding, empty histories, gradients, candidate dependence; order
where it applies) run over the registry in tests/test_poolers.py and tests/test_pooler_zoo.py, with
category ids that travel with the keys (helpers.with_ids) so that sim:hard is exercised by them too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dinbench import poolers
from dinbench.poolers.packed import Packed

DIM = 8
RETRIEVAL = ("sim:soft", "sim:hard", "eta")


def _build(spec: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    return poolers.build(spec, DIM, **options).eval()


def _case(seed: int, batch: int = 6, length: int = 40, categories: int = 4):
    """Interleaved padding (a few empty rows), random categories of history and candidate."""
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, DIM, generator=g)
    keys = torch.randn(batch, length, DIM, generator=g)
    mask = torch.rand(batch, length, generator=g) < 0.7
    mask[1] = False  # an empty history
    cats = torch.randint(1, categories + 1, (batch, length), generator=g)
    query_cats = torch.randint(1, categories + 1, (batch,), generator=g)
    cats[2] = torch.where(cats[2] == query_cats[2], query_cats[2] % categories + 1, cats[2])  # none of its category
    return query, keys, mask, cats, query_cats


def test_the_retrieval_poolers_are_registered_so_the_registry_tests_cover_them():
    assert set(RETRIEVAL) <= set(poolers.expand("all"))
    assert poolers.canonical("sim") == "sim:soft"
    for spec in RETRIEVAL:
        assert poolers.REGISTRY[poolers.parse_spec(spec)[0]].info.uses_candidate


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("top_k", [1, 3, 50])
def test_sim_hard_attends_only_to_the_most_recent_k_of_the_candidates_category(seed, top_k):
    query, keys, mask, cats, query_cats = _case(seed)
    pooler = _build("sim:hard", seed, top_k=top_k)
    with torch.no_grad():
        out, w = pooler(query, keys, mask, categories=cats, query_categories=query_cats)
    for b in range(len(mask)):
        same = (mask[b] & (cats[b] == query_cats[b])).nonzero().flatten()  # ascending: oldest first
        chosen = same[-top_k:]  # the K most recent of the category
        assert set((w[b] != 0).nonzero().flatten().tolist()) == set(chosen.tolist()), b
        assert (w[b] > 0).sum() == len(chosen)
        if len(chosen):
            torch.testing.assert_close(w[b].sum(), torch.tensor(1.0))  # softmax over the retrieved
            torch.testing.assert_close(out[b], w[b] @ keys[b])
        else:  # empty history (row 1) or none of the candidate's category (row 2): exactly 0
            assert (out[b] == 0).all()
    assert (out[1] == 0).all() and (out[2] == 0).all()


def test_sim_hard_without_a_category_match_has_finite_gradients_and_needs_the_ids():
    query, keys, mask, cats, query_cats = _case(0)
    pooler = _build("sim:hard", 0, top_k=3).train()
    keys.requires_grad_(True)
    out, _ = pooler(query, keys, mask, categories=cats, query_categories=query_cats)
    (out * torch.randn_like(out)).sum().backward()
    assert torch.isfinite(keys.grad).all() and (keys.grad[2] == 0).all()  # nothing of row 2 was retrieved
    for name, p in pooler.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).any(), name
    with pytest.raises(ValueError, match="sim:hard needs the categories"):
        pooler(query, keys, mask)


@pytest.mark.parametrize("seed", range(4))
def test_sim_soft_retrieves_the_exact_top_k_by_inner_product(seed):
    query, keys, mask, _, _ = _case(seed)
    pooler = _build("sim:soft", seed, top_k=5)
    with torch.no_grad():
        out, w = pooler(query, keys, mask)
    dots = torch.einsum("bd,bld->bl", query, keys).masked_fill(~mask, -torch.inf)  # [B, L]
    for b in range(len(mask)):
        k = min(5, int(mask[b].sum()))
        expected = dots[b].topk(k).indices if k else torch.empty(0, dtype=torch.long)
        assert set((w[b] != 0).nonzero().flatten().tolist()) == set(expected.tolist()), b
        torch.testing.assert_close(out[b], w[b] @ keys[b])


def test_sim_soft_retrieving_everything_is_din_softmax():
    """With top_k >= the history, the retrieval keeps every real position and the attention is din's
    softmax attention with the same unit (din's output bias is a shift that softmax ignores)."""
    query, keys, mask, _, _ = _case(5, length=12)
    sim = _build("sim:soft", 1, top_k=12)
    din = _build("din:softmax", 2)
    missing, unexpected = din.load_state_dict(sim.attention.state_dict(), strict=False)
    assert missing == ["rest.3.bias"] and not unexpected
    with torch.no_grad():
        out_s, w_s = sim(query, keys, mask)
        out_d, w_d = din(query, keys, mask)
    torch.testing.assert_close(w_s, w_d, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out_s, out_d, atol=1e-6, rtol=1e-5)


def _separated_case(seed: int, batch: int = 8, length: int = 12):
    """Unit keys at well-separated angles to a unit candidate: angle_j = π (j + 0.5) / length, in a
    random order per row. Equal norms, so the inner-product order is the cosine (angle) order."""
    g = torch.Generator().manual_seed(seed)
    query = torch.nn.functional.normalize(torch.randn(batch, DIM, generator=g), dim=-1)  # [B, D]
    other = torch.randn(batch, length, DIM, generator=g)
    other = other - (other * query[:, None]).sum(-1, keepdim=True) * query[:, None]  # ⟂ the candidate
    other = torch.nn.functional.normalize(other, dim=-1)
    angles = torch.stack([(torch.randperm(length, generator=g) + 0.5) * math.pi / length for _ in range(batch)])
    keys = torch.cos(angles)[..., None] * query[:, None] + torch.sin(angles)[..., None] * other  # [B, L, D]
    return query, keys, torch.ones(batch, length, dtype=torch.bool)


def test_eta_with_enough_hash_bits_retrieves_the_exact_top_k():
    """SimHash: a bit differs with probability angle / π, so the Hamming distance over 4,096 bits
    estimates each angle within ~0.01 π, far below the π / 12 separating the keys: the Hamming top-K
    is the exact top-K by inner product. With 2 bits (3 possible distances) it is not."""
    query, keys, mask = _separated_case(0)
    exact = torch.einsum("bd,bld->bl", query, keys).topk(4).indices  # [B, 4]
    packed = Packed.from_padded(keys, mask)
    eta = _build("eta", 0, top_k=4, hash_bits=4096)
    index, valid = eta.retrieve(query, packed)
    assert valid.all()
    assert [set(r) for r in index.tolist()] == [set(r) for r in exact.tolist()]
    coarse = _build("eta", 0, top_k=4, hash_bits=2)
    index, _ = coarse.retrieve(query, packed)
    assert [set(r) for r in index.tolist()] != [set(r) for r in exact.tolist()]


def test_eta_breaks_equal_hamming_distances_towards_the_most_recent():
    query, keys, mask, _, _ = _case(3, length=30)
    eta = _build("eta", 0, top_k=4, hash_bits=1)  # one bit: distance 0 or 1, ties everywhere
    packed = Packed.from_padded(keys, mask)
    index, valid = eta.retrieve(query, packed)
    distance = (eta.codes(keys) != eta.codes(query)[:, None]).sum(-1)  # [B, L]
    for b in range(len(mask)):
        real = mask[b].nonzero().flatten()
        # best = smallest distance, then the largest position: sort by (distance, -position)
        order = sorted(real.tolist(), key=lambda l: (int(distance[b, l]), -l))[:4]
        assert index[b][valid[b]].tolist() == order, b


def test_eta_hyperplanes_are_a_fixed_buffer_seeded_at_construction():
    a, b, c = _build("eta", 0), _build("eta", 0), _build("eta", 1)
    assert "hyperplanes" in dict(a.named_buffers()) and "hyperplanes" not in dict(a.named_parameters())
    assert a.hyperplanes.shape == (DIM, 64)
    assert torch.equal(a.hyperplanes, b.hyperplanes) and not torch.equal(a.hyperplanes, c.hyperplanes)
    assert "hyperplanes" in a.state_dict()  # saved with the model: a loaded model hashes alike
    query, keys, mask, _, _ = _case(0)
    before = a.hyperplanes.clone()
    out, _ = a.train()(query, keys.requires_grad_(True), mask)
    out.sum().backward()
    assert torch.equal(a.hyperplanes, before)


class _Shapes(TorchDispatchMode):
    """Records the shape of every tensor an aten op returns (forward, backward, inside no_grad too)."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
        return out


@pytest.mark.parametrize("spec", RETRIEVAL)
def test_no_tensor_is_quadratic_in_the_history_length(spec):
    """Every intermediate of a forward and backward (L = 97, nothing else of that size) has at most one
    dimension of size L, and the elements of all of them grow linearly in L (x2 length -> <= x2.1)."""
    totals = []
    for length in (97, 194):
        g = torch.Generator().manual_seed(0)
        batch = 3
        query = torch.randn(batch, DIM, generator=g, requires_grad=True)
        keys = torch.randn(batch, length, DIM, generator=g, requires_grad=True)
        mask = torch.ones(batch, length, dtype=torch.bool)
        mask[1, : length // 2] = False
        cats = torch.randint(1, 3, (batch, length), generator=g)
        pooler = _build(spec, 0, top_k=5, attention_hidden=(16,)).train()
        with _Shapes() as seen:
            out, _ = pooler(query, keys, mask, categories=cats, query_categories=torch.ones(batch, dtype=torch.long))
            out.sum().backward()
        assert seen.shapes
        assert not [s for s in seen.shapes if sum(d == length for d in s) >= 2], spec
        totals.append(sum(math.prod(s) for s in seen.shapes))
    assert totals[1] <= 2.1 * totals[0], totals


def test_long_histories_through_the_batch_pipeline_and_model(tmp_path):
    """Synthetic data with histories of up to 1,500 behaviours: --max-len 1000 keeps 1,000 of them
    (nothing in the samples or batches caps shorter), and every retrieval pooler trains a step on them."""
    from dinbench.batches import make_store
    from dinbench.config import RunConfig
    from dinbench.model.build import build_model
    from dinbench.prepared import contract
    from dinbench.sources.synthetic import SyntheticConfig, generate, source_info

    cfg = SyntheticConfig(users=8, mean_length=900.0, max_length=1500)
    behaviours, items = generate(cfg)
    contract.prepare(behaviours, "synthetic", tmp_path, source_info(cfg), item_attributes=items)
    data = contract.load(tmp_path, "synthetic")
    store = make_store(data)
    samples = store.samples(data.splits["test"], 1000)
    assert samples.hist_len.max() == 1000
    idx = np.argsort(-samples.hist_len)[:8]
    batch = store.batch(samples, idx)
    assert batch.mask.shape[1] == 1000 and int(batch.mask.sum(1).max()) == 1000
    for spec in RETRIEVAL:
        torch.manual_seed(0)
        model = build_model(RunConfig(pooler=spec, embedding_dim=4, mlp_hidden=(8,), max_len=1000), data).train()
        logits, weights = model(batch)
        logits.sum().backward()
        assert torch.isfinite(logits).all() and weights.shape == batch.mask.shape
        assert int((weights != 0).sum(1).max()) <= 50  # the default top_k retrieved, of up to 1,000
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), spec


def test_download_synthetic_takes_a_longest_history(cli):
    invoke, data, _ = cli
    result = invoke("download", "synthetic", "--users", "12", "--mean-length", "300", "--max-length", "1200")
    assert result.exit_code == 0, result.output
    import json

    manifest = json.loads((data / "synthetic" / "manifest.json").read_text())
    assert manifest["source"]["config"]["max_length"] == 1200
    assert "--max-length 1200" in manifest["source"]["rebuild"]

"""After training on the synthetic set, attention points at the history items related to the candidate.

The synthetic generator's ground truth says a history item is relevant to a candidate when both
share a hidden topic (items.parquet, column ``topic``); models never see topics. Ask each trained
attention pooler to score a history against a candidate that *is* one of its items: the item with
the highest weight must be of that topic far more often than chance, and the candidate's own item
must outweigh every history item of another topic. (Which of several same-topic items wins is not
determined by the data: they are equally relevant by construction.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dinbench import poolers
from dinbench.config import RunConfig
from dinbench.prepared import contract
from dinbench.sources.synthetic import SyntheticConfig, generate, source_info
from dinbench.train import fit

ATTENTION = [s for s in poolers.expand("all") if poolers.REGISTRY[s.split(":")[0]].cls.uses_candidate]
# Measured with this fixture (1,000 users, 4 epochs): dot, bilinear and din:softmax put the own item
# above every unrelated one in 93-100% of the judged rows (chance 21%); din:none and multihead learn
# the same ordering more slowly (39-70%), so for them the test asks for clearly-above-chance only.
# bst (its weights: the last block's candidate attention, after the history tokens have attended to
# one another) measured 56% own-item-above-every-unrelated, 69% top-is-related: the same class.
# dien's weights (the attention on its GRU's interest states) clear the strict bar with augru and agru;
# dien:aigru measured 78% own-item-above-every-unrelated, 88% top-is-related: the slower class.
SLOW_LEARNERS = {"din:none", "multihead:softmax", "multihead:none", "bst", "dien:aigru"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cfg = SyntheticConfig(users=1000, mean_length=12.0)
    behaviours, items = generate(cfg)
    root = tmp_path_factory.mktemp("attention")
    contract.prepare(behaviours, "synthetic", root, source_info(cfg), item_attributes=items)
    return contract.load(root, "synthetic")


@pytest.mark.parametrize("spec", ATTENTION)
def test_candidate_equal_to_a_history_item_is_attended(small, spec):
    fitted = fit(RunConfig(pooler=spec, epochs=4, patience=4, embedding_dim=16, batch_size=128), small)
    topic = np.r_[0, small.items["topic"].to_numpy()]  # [n_items + 1], 0 = padding
    samples = fitted.store.samples(small.splits["valid"], 50)
    idx = np.flatnonzero(samples.hist_len >= 3)
    batch = fitted.store.batch(samples, idx)
    rows = np.arange(len(idx))
    pick = np.random.default_rng(0).integers(0, samples.hist_len[idx])  # one real position per row
    batch.item = batch.hist_item[rows, pick].clone()
    batch.category = batch.hist_category[rows, pick].clone()
    fitted.model.eval()
    with torch.no_grad():
        _, weights = fitted.model(batch)
    w = weights.masked_fill(~batch.mask, -torch.inf).numpy()  # [B, L]
    hist, mask = batch.hist_item.numpy(), batch.mask.numpy()
    related = (topic[hist] == topic[batch.item.numpy()][:, None]) & mask  # [B, L] ground truth

    # Judge rows with at least two unrelated history items, where a random scorer would often fail.
    unrelated = mask & ~related
    judged = unrelated.sum(1) >= 2
    assert judged.sum() >= 100
    top_related = related[rows, w.argmax(1)][judged].mean()
    chance_top = (related.sum(1) / mask.sum(1))[judged].mean()  # argmax at a uniformly random position
    beats = w[rows, pick] > np.where(unrelated, w, -np.inf).max(1)  # own item above every unrelated one
    chance_beats = (1.0 / (1 + unrelated.sum(1)))[judged].mean()
    rate = beats[judged].mean()
    assert chance_beats < 0.3
    if spec in SLOW_LEARNERS:
        assert rate > chance_beats + 0.15 and top_related > chance_top, (rate, chance_beats, top_related, chance_top)
    else:
        assert rate >= 0.9 and top_related >= 0.9, (rate, top_related)

"""The embedded default dataset ``synthetic``: offline, seeded, generated in seconds.

It is built to have the structure the DIN paper is about, so poolers differ on it for a reason:

* Items belong to categories and categories to hidden **topics** (``categories_per_topic`` each).
  The topic is the ground truth of relatedness: a history item is *relevant* to a candidate when
  both share a topic. It is kept in ``items.parquet`` (column ``topic``) for attention analysis;
  models never see it, they see item and category ids only.
* Each user has several **interests** (3-5 topics by default, Dirichlet weights), so a history mixes them.
* Behaviours are generated one after another by a self-exciting process: the next behaviour's topic
  is drawn with probability proportional to

      alpha * interest_weight[topic] + beta * sum over earlier behaviours j of that topic of
                                              0.5 ** (age_j / half_life) + epsilon

  so whether the next item (the DIN protocol's positive) is of a topic depends on the history items
  *related to it* (local activation), on *how many* there are (interest intensity), and on how
  recent they are (recency, so time decay can matter). The protocol's negatives are uniform items,
  mostly of unrelated topics.
* Within a topic, a category is uniform and an item in it follows a Zipf popularity.
* Times are Unix seconds with exponential gaps (mean two days).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dinbench.errors import DinbenchError


@dataclass(frozen=True)
class SyntheticConfig:
    users: int = 2500
    topics: int = 50
    categories_per_topic: int = 2
    items_per_category: int = 25
    interests: tuple[int, int] = (3, 5)  # min and max interests (topics) per user
    mean_length: float = 24.0  # mean behaviours per user (at least 4, at most max_length)
    max_length: int = 100
    alpha: float = 0.3  # weight of the user's long-term interests
    beta: float = 3.0  # weight of the recent related behaviours (intensity)
    half_life: float = 2.0  # recency half-life, in behaviours
    epsilon: float = 0.05  # exploration: mass spread over all topics
    zipf: float = 1.0  # item popularity exponent inside a category
    seed: int = 0

    def validate(self) -> None:
        for name in ("users", "topics", "categories_per_topic", "items_per_category", "max_length"):
            if getattr(self, name) < 1:
                raise DinbenchError(f"synthetic option {name} must be at least 1 (got {getattr(self, name)})")
        lo, hi = self.interests
        if not 1 <= lo <= hi <= self.topics:
            raise DinbenchError(f"synthetic interests must satisfy 1 <= min <= max <= topics (got {lo}, {hi})")
        if self.topics < 2:
            raise DinbenchError("synthetic option topics must be at least 2")
        if not 4 <= self.mean_length <= self.max_length:
            raise DinbenchError(
                f"synthetic mean_length must lie in [4, max_length={self.max_length}] (got {self.mean_length})"
            )
        if self.half_life <= 0 or self.alpha < 0 or self.beta < 0 or self.epsilon <= 0:
            raise DinbenchError("synthetic half_life and epsilon must be > 0, alpha and beta >= 0")


def generate(cfg: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate behaviours and the per-item ground truth.

    Returns:
        behaviours: DataFrame[user, item, category, time] (raw ids, one row per behaviour)
        items: DataFrame[item, topic] (the hidden topic of every item)
    """
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    n_topics, cpt, ipc = cfg.topics, cfg.categories_per_topic, cfg.items_per_category
    n_categories = n_topics * cpt
    # item i (0-based) is in category i // ipc, which is in topic category // cpt
    popularity = 1.0 / np.arange(1, ipc + 1) ** cfg.zipf
    popularity /= popularity.sum()

    # Lengths: 4 + geometric, capped.
    p = 1.0 / max(cfg.mean_length - 3.0, 1.0)
    lengths = np.minimum(4 + rng.geometric(p, size=cfg.users) - 1, cfg.max_length)  # [U]

    # Interests: 2-4 topics per user with Dirichlet weights.
    interest = np.zeros((cfg.users, n_topics))  # [U, T]
    k = rng.integers(cfg.interests[0], cfg.interests[1] + 1, size=cfg.users)
    for u in range(cfg.users):
        chosen = rng.choice(n_topics, size=min(k[u], n_topics), replace=False)
        interest[u, chosen] = rng.dirichlet(np.ones(len(chosen)))

    decay = 0.5 ** (1.0 / cfg.half_life)
    excitation = np.zeros((cfg.users, n_topics))  # [U, T] decayed count of earlier behaviours per topic
    steps = int(lengths.max())
    topics = np.zeros((cfg.users, steps), dtype=np.int64)
    for t in range(steps):
        score = cfg.alpha * interest + cfg.beta * excitation + cfg.epsilon / n_topics
        prob = score / score.sum(axis=1, keepdims=True)
        u01 = rng.random(cfg.users)[:, None]
        topic_t = (prob.cumsum(axis=1) < u01).sum(axis=1).clip(max=n_topics - 1)  # [U]
        topics[:, t] = topic_t
        excitation *= decay
        excitation[np.arange(cfg.users), topic_t] += 1.0

    category = topics * cpt + rng.integers(0, cpt, size=topics.shape)  # [U, steps]
    rank = rng.choice(ipc, size=topics.shape, p=popularity)
    item = category * ipc + rank
    gaps = rng.exponential(2 * 86_400.0, size=topics.shape).astype(np.int64) + 1
    start = rng.integers(1_420_070_400, 1_500_000_000, size=(cfg.users, 1))  # 2015-2017
    time = start + np.cumsum(gaps, axis=1)

    real = np.arange(steps)[None, :] < lengths[:, None]  # [U, steps]
    user = np.broadcast_to(np.arange(1, cfg.users + 1)[:, None], topics.shape)
    behaviours = pd.DataFrame(
        {
            "user": user[real],
            "item": item[real] + 1,
            "category": category[real] + 1,
            "time": time[real],
        }
    )
    n_items = n_categories * ipc
    items = pd.DataFrame({"item": np.arange(1, n_items + 1), "topic": np.arange(n_items) // ipc // cpt + 1})
    return behaviours, items


COMMAND_OPTIONS = ("users", "topics", "mean_length", "max_length", "seed")  # the options of `dinbench download synthetic`


def rebuild_command(cfg: SyntheticConfig) -> str:
    """The `dinbench download synthetic` command that generates ``cfg`` again."""
    default = SyntheticConfig()
    return " ".join(["dinbench download synthetic --force"] + [
        f"--{k.replace('_', '-')} {getattr(cfg, k)}" for k in COMMAND_OPTIONS if getattr(cfg, k) != getattr(default, k)])


def source_info(cfg: SyntheticConfig) -> dict:
    config = asdict(cfg)
    config["interests"] = list(cfg.interests)
    return {"kind": "synthetic", "generator": "dinbench.sources.synthetic", "config": config,
            "rebuild": rebuild_command(cfg)}

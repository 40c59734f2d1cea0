"""Published reference numbers for ``dinbench report --paper``, beside ours for the same dataset.

The DIN paper's "AUC" (Zhou et al., KDD 2018, Table 3) is its impression-weighted user AUC, which
is our GAUC; BARS reports both. Numbers are copied as published, never recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    source: str
    model: str
    ours: str  # the dinbench pooler (and options) that corresponds to the model
    gauc: dict[str, float]  # paper column -> published value
    auc: dict[str, float]  # where published separately (BARS)


ELECTRONICS, MOVIELENS = "Amazon Electronics", "MovieLens-20M"

REFERENCES = (
    Reference("DIN paper, Table 3", "BaseModel (sum pooling)", "sum", {ELECTRONICS: 0.8624, MOVIELENS: 0.7300}, {}),
    Reference("DIN paper, Table 3", "DIN", "din:none", {ELECTRONICS: 0.8818, MOVIELENS: 0.7337}, {}),
    Reference("DIN paper, Table 3", "DIN with Dice", "din:none --mlp-activation dice",
              {ELECTRONICS: 0.8871, MOVIELENS: 0.7348}, {}),
    Reference("authors' code after a BatchNorm fix", "DIN", "din:none", {ELECTRONICS: 0.8698}, {}),
    Reference("authors' code after a BatchNorm fix", "DIN with Dice", "din:none --mlp-activation dice",
              {ELECTRONICS: 0.8711}, {}),
    Reference("BARS open benchmark (softmax attention)", "DIN", "din:softmax", {ELECTRONICS: 0.8835},
              {ELECTRONICS: 0.8860}),
)

# Our dataset names -> the paper's column.
DATASETS = {"amazon-electronics": ELECTRONICS, "movielens-20m": MOVIELENS}

PROTOCOL_NOTE = (
    "Protocol differences: the DIN paper and BARS report the best epoch as measured on the test set; "
    "dinbench selects the epoch on a validation split (protocol din) and scores test once "
    "(protocol paper: train on train + valid, fixed epochs, last epoch). The paper's \"AUC\" is its "
    "impression-weighted user AUC, i.e. our GAUC. Its runs used SGD (lr 1.0), batch 32 and 64-d embeddings "
    "(--preset paper); dinbench's default preset differs (docs/defaults.md)."
)


def references_for(dataset: str) -> list[dict[str, object]]:
    """Reference rows for one of our datasets: source, model, ours, gauc, auc (NaN-free; [] if none)."""
    column = DATASETS.get(dataset)
    if column is None:
        return []
    return [
        {"source": r.source, "model": r.model, "ours": r.ours, "gauc": r.gauc[column], "auc": r.auc.get(column)}
        for r in REFERENCES
        if column in r.gauc
    ]


def no_reference_note(dataset: str) -> str:
    return (f"no published DIN-paper numbers for '{dataset}': the paper used {ELECTRONICS} "
            f"(dinbench download amazon-electronics) and {MOVIELENS} (dinbench download movielens-20m)")

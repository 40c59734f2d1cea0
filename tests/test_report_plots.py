"""The report's analyses, plots, the paper side by side and the report directory (issue 6, parts 3-5).

The analyses are checked against brute-force computations on hand-made predictions; the figures
are produced from a small real run and read back as images; the attention analyses are checked
where the answer is known exactly (uniform ``average`` weights are blind to relevance, and sum to
1 over every history).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch

from dinbench import analysis, paper, publish
from dinbench.batches import make_store
from dinbench.config import RunConfig
from dinbench.metrics import auc, gauc
from dinbench.records import load_records
from dinbench.report import runs_frame, summarize
from dinbench.model.build import MODEL_FILE, load_model
from dinbench.runtime import predict
from dinbench.train import train_run


def test_length_buckets_are_right_closed_ranges():
    labels = analysis.length_bucket(np.array([0, 1, 2, 3, 5, 6, 10, 11, 20, 21, 50, 51, 100, 101, 400, 500, 501,
                                              1000, 1001, 5000]))
    assert list(labels) == ["0", "1-2", "1-2", "3-5", "3-5", "6-10", "6-10", "11-20", "11-20", "21-50", "21-50",
                            "51-100", "51-100", "101-200", "201-500", "201-500", "501-1000", "501-1000", "1001+",
                            "1001+"]
    assert analysis.bucket_order() == ["0", "1-2", "3-5", "6-10", "11-20", "21-50", "51-100", "101-200", "201-500",
                                       "501-1000", "1001+"]


def _predictions(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / f"{name}.parquet"
    frame.to_parquet(path)
    return str(path)


def _runs(rows) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": "d", "architecture": "ranking", "protocol": "din", "config": "c",
                          "run_id": f"r{i}", **r} for i, r in enumerate(rows)])


def test_gauc_by_length_matches_brute_force_on_each_bucket(tmp_path):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 301), 4)
    hist = np.repeat(rng.integers(1, 40, size=300), 4)  # one history length per user
    label = np.tile([1.0, 0.0, 1.0, 0.0], 300)
    frames = {s: pd.DataFrame({"user": users, "label": label, "score": rng.random(1200), "hist_len": hist})
              for s in (0, 1)}
    runs = _runs([{"pooler": "p", "seed": s, "predictions": _predictions(tmp_path, f"s{s}", f)}
                  for s, f in frames.items()])
    table = analysis.gauc_by_length(runs)
    for row in table.itertuples():
        per_seed = []
        for f in frames.values():
            sel = analysis.length_bucket(f["hist_len"].to_numpy()) == row.bucket
            per_seed.append(gauc(f["user"][sel], f["label"][sel], f["score"][sel]).value)
        assert row.gauc_mean == pytest.approx(np.mean(per_seed))
        assert row.gauc_std == pytest.approx(np.std(per_seed, ddof=1))
        assert row.users == len(np.unique(users[analysis.length_bucket(hist) == row.bucket]))
    assert list(table["bucket"]) == [b for b in analysis.bucket_order() if b in set(table["bucket"])]


def test_intensity_scores_the_sum_alone_and_leaves_out_constant_softmax_sums(tmp_path):
    rng = np.random.default_rng(1)
    n = 400
    label = np.tile([1.0, 0.0], n // 2)
    user = np.repeat(np.arange(n // 2), 2)
    informative = label * 2.0 + rng.normal(size=n)  # clicked candidates get larger sums
    hist_len = np.where(np.arange(n) % 10 == 0, 0, 7)  # some samples without a history: a softmax sums to 0 there
    rows = [
        {"pooler": "din:none", "seed": 0, "predictions": _predictions(
            tmp_path, "none", pd.DataFrame({"user": user, "label": label, "attention_sum": informative}))},
        {"pooler": "sim:soft", "seed": 0, "predictions": _predictions(  # normalised without ':softmax' in its name
            tmp_path, "simsoft", pd.DataFrame({"user": user, "label": label, "hist_len": hist_len,
                                               "attention_sum": np.where(hist_len > 0, 1.0 - 1e-6 * (user % 3), 0.0)}))},
        {"pooler": "din:softmax", "seed": 0, "predictions": _predictions(
            tmp_path, "softmax", pd.DataFrame({"user": user, "label": label, "attention_sum": np.ones(n)}))},
        {"pooler": "sum", "seed": 0, "predictions": _predictions(  # weights = mask: sum = history length
            tmp_path, "sum", pd.DataFrame({"user": user, "label": label, "attention_sum": informative}))},
        {"pooler": "average", "seed": 0, "predictions": _predictions(
            tmp_path, "avg", pd.DataFrame({"user": user, "label": label, "attention_sum": np.full(n, np.nan)}))},
    ]
    summary, samples = analysis.intensity(_runs(rows))
    assert list(summary["pooler"]) == ["din:none"]
    assert summary["auc_mean"].iloc[0] == pytest.approx(auc(label, informative))
    assert summary["gauc_mean"].iloc[0] == pytest.approx(gauc(user, label, informative).value)
    assert summary["mean_clicked"].iloc[0] > summary["mean_not_clicked"].iloc[0]
    assert list(samples["pooler"]) == ["din:none"]


def test_paper_references_are_the_published_numbers():
    rows = {(r["model"], r["source"]): r for r in paper.references_for("amazon-electronics")}
    assert rows[("DIN", "DIN paper, Table 3")]["gauc"] == 0.8818
    assert rows[("BaseModel (sum pooling)", "DIN paper, Table 3")]["gauc"] == 0.8624
    assert rows[("DIN with Dice", "DIN paper, Table 3")]["gauc"] == 0.8871
    assert rows[("DIN", "BARS open benchmark (softmax attention)")]["auc"] == 0.8860
    assert rows[("DIN", "authors' code after a BatchNorm fix")]["gauc"] == 0.8698
    ml = {r["model"]: r["gauc"] for r in paper.references_for("movielens-20m")}
    assert ml == {"BaseModel (sum pooling)": 0.7300, "DIN": 0.7337, "DIN with Dice": 0.7348}
    assert paper.references_for("amazon-beauty") == []


def test_paper_markdown_puts_our_matching_rows_beside_the_references():
    table = pd.DataFrame([{"dataset": "amazon-electronics", "protocol": "din", "architecture": "ranking",
                           "pooler": p, "gauc_mean": g, "gauc_std": 0.001, "auc_mean": g + 0.01, "auc_std": 0.001}
                          for p, g in (("sum", 0.85), ("din:none", 0.87), ("average", 0.86))])
    text = publish.paper_markdown(table)
    assert "0.8818" in text and "0.8624" in text and "| dinbench (din, ranking) | din:none |" in text
    assert "| average |" not in text  # no published counterpart
    assert "test set" in text and "validation" in text  # the protocol difference is stated


@pytest.fixture(scope="module")
def small_study(tmp_path_factory, tiny_data_dir):
    """Two seeds of average, time-decay and both din variants on the tiny synthetic set."""
    from dinbench.prepared import contract

    prepared = contract.load(tiny_data_dir, "synthetic")
    results = tmp_path_factory.mktemp("study")
    for pooler in ("average", "time-decay", "din:none", "din:softmax"):
        for seed in (0, 1):
            cfg = RunConfig(pooler=pooler, seed=seed, epochs=2, patience=2, embedding_dim=8, batch_size=128)
            train_run(cfg, prepared, results)
    return prepared, results


def test_saved_model_reloads_to_the_saved_test_predictions(small_study):
    prepared, results = small_study
    loaded, _ = load_records(results)
    item = next(i for i in loaded if i.record["pooler"] == "din:none")
    assert (item.path.parent / MODEL_FILE).exists() and item.record["artifacts"]["model"] == MODEL_FILE
    model = load_model(item.path.parent, item.record, prepared)
    store = make_store(prepared, "cpu")
    test = store.samples(prepared.splits["test"], item.record["config"]["max_len"])
    again = predict(model, store, test, 4096, torch.device("cpu"))
    saved = pd.read_parquet(item.path.parent / "predictions_test.parquet")
    np.testing.assert_allclose(again, saved["score"].to_numpy(), rtol=1e-6, atol=1e-7)


def test_average_weights_are_blind_to_relevance_and_attention_is_not(small_study):
    prepared, results = small_study
    loaded, _ = load_records(results)
    by = {(i.record["pooler"], i.record["seed"]): i for i in loaded}
    avg = analysis.relevant_attention(by[("average", 0)].path.parent, by[("average", 0)].record, prepared)
    assert avg["relevance_auc"] == pytest.approx(0.5)  # uniform weights: every pair ties
    assert avg["weight_share"] == pytest.approx(avg["relevant_share"])
    assert avg["rows"] > 20
    din = analysis.relevant_attention(by[("din:softmax", 0)].path.parent, by[("din:softmax", 0)].record, prepared)
    assert din["rows"] == avg["rows"]
    assert din["relevance_auc"] > 0.53  # 150 users, 2 epochs: learned attention already leans to the topic


def test_relevance_of_an_oracle_that_weighs_only_same_topic_items_is_perfect(small_study, monkeypatch):
    prepared, results = small_study
    loaded, _ = load_records(results)
    item = next(i for i in loaded if i.record["pooler"] == "average")
    topic = torch.from_numpy(np.r_[-1, prepared.items["topic"].to_numpy()])

    class Oracle(torch.nn.Module):
        def forward(self, batch):  # weight 1 on history items of the candidate's topic, 0 elsewhere
            w = (topic[batch.hist_item] == topic[batch.item][:, None]) & batch.mask
            return torch.zeros(len(batch.item)), w.float()

    monkeypatch.setattr(analysis, "_load", lambda *a: Oracle())
    m = analysis.relevant_attention(item.path.parent, item.record, prepared)
    assert m["relevance_auc"] == 1.0 and m["weight_share"] == 1.0
    assert 0 < m["relevant_share"] < 1


def test_attention_case_lists_the_history_for_both_candidates(small_study):
    prepared, results = small_study
    loaded, _ = load_records(results)
    item = next(i for i in loaded if i.record["pooler"] == "average")
    case = analysis.attention_case(item.path.parent, item.record, prepared)
    assert set(case["candidate"]) == {"clicked", "not clicked"}
    for _, g in case.groupby("candidate"):
        n = len(g)
        assert 8 <= n <= 20 and list(g["position"]) == list(range(n))
        np.testing.assert_allclose(g["weight"], 1.0 / n, rtol=1e-5)  # average: uniform over the history
        assert (g["same_category"] == (g["category"] == g["candidate_category"])).all()
    user = case["user"].iloc[0]
    beh = prepared.behaviours[prepared.behaviours["user"] == user]
    hist = case[case["candidate"] == "clicked"]["item"].to_numpy()
    assert np.array_equal(hist, beh["item"].to_numpy()[: len(hist)])  # test history = the user's first items


def _is_image(path: Path) -> bool:
    img = mpimg.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and float(img[..., :3].std()) > 0.01


def test_report_output_dir_has_tables_plots_and_a_report_that_embeds_them(small_study, cli, tiny_data_dir, tmp_path):
    invoke, _, _ = cli
    _, results = small_study
    out = tmp_path / "rep"
    r = invoke("report", "--output", str(out), "--paper", "--results-dir", str(results), "--data-dir",
               str(tiny_data_dir), dirs=False)
    assert r.exit_code == 0, r.output
    for name in ("report.md", "table.md", "table.csv", "table.tex", "table.json"):
        assert (out / name).stat().st_size > 0, name
    assert "\\toprule" in (out / "table.tex").read_text()
    assert len(json.loads((out / "table.json").read_text())) == 4
    kinds = {p.stem.split("_")[0] for p in (out / "plots").glob("*.png")}
    assert kinds == {"gauc-by-length", "learning-curves", "intensity", "attention-case", "relevant-attention"}
    for png in (out / "plots").glob("*.png"):
        assert _is_image(png), png
        assert png.with_suffix(".svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    text = (out / "report.md").read_text()
    embedded = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(embedded) == len(list((out / "plots").glob("*.png")))
    assert all((out / e).exists() for e in embedded)
    assert "no published DIN-paper numbers for 'synthetic'" in text


def test_plots_without_the_dataset_skip_the_attention_figures_with_a_note(small_study, cli, tmp_path):
    invoke, _, _ = cli
    _, results = small_study
    r = invoke("report", "--plots", str(tmp_path / "figs"), "--results-dir", str(results), "--data-dir",
               str(tmp_path / "nowhere"), dirs=False)
    assert r.exit_code == 0, r.output
    names = {p.stem.split("_")[0] for p in (tmp_path / "figs").glob("*.png")}
    assert names == {"gauc-by-length", "learning-curves", "intensity"}
    assert "attention case study left out" in r.stderr and "prepare it again" in r.stderr


def test_output_with_a_table_suffix_still_writes_one_table_file(small_study, cli, tmp_path):
    invoke, _, _ = cli
    _, results = small_study
    target = tmp_path / "t.csv"
    r = invoke("report", "--output", str(target), "--results-dir", str(results), dirs=False)
    assert r.exit_code == 0, r.output
    frame = pd.read_csv(target)
    assert set(frame["pooler"]) == {"average", "time-decay", "din:none", "din:softmax"}


def test_summary_of_the_small_study_ranks_every_pooler(small_study):
    _, results = small_study
    loaded, _ = load_records(results)
    table = summarize(runs_frame(loaded))
    assert sorted(table["rank"]) == [1, 2, 3, 4] and (table["seeds"] == 2).all()

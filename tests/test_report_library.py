"""The report's logic as a library, without the CLI (issue 12): the shared table helpers, run
selection, the prepared-dataset cache of the figures, the paper side by side for the console,
dataset statistics, and the figures as objects (FIGURES, Group, Section)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dinbench import figures, publish, report
from dinbench.errors import DinbenchError
from dinbench.figures.attention_case import case_poolers, lowest_seed
from dinbench.figures.base import Figure, Group, Section, slug
from dinbench.prepared import contract
from dinbench.prepared import stats
from dinbench.tables import md_table, pm


def _runs(rows) -> pd.DataFrame:
    base = dict(dataset="d", fingerprint="f" * 40, protocol="din", config="c", architecture="ranking", auc=0.7,
                gauc=0.7, logloss=0.5, best_epoch=1, rows_per_s=1.0, wall_seconds=1.0, predictions=None)
    return pd.DataFrame([{**base, "run_id": f"2024-r{i:02d}", **r} for i, r in enumerate(rows)])


# ----------------------------------------------------------------------------- tables


def test_pm_shows_the_mean_alone_for_one_seed_and_a_dash_for_no_mean():
    assert pm(0.123456, 0.01) == "0.1235 ± 0.0100"
    assert pm(0.123456, float("nan")) == "0.1235"
    assert pm(0.5, 0.0123, 3) == "0.500 ± 0.012"
    assert pm(float("nan"), float("nan")) == "—"
    assert pm(float("nan"), float("nan"), missing=None) == "nan"  # what the result tables have always shown


def test_md_table_is_a_header_a_rule_and_one_line_per_row():
    assert md_table(["a", "b"], [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"


def test_report_markdown_uses_the_shared_table_writer():
    table = report.summarize(_runs([dict(pooler="average", seed=0), dict(pooler="average", seed=1, gauc=0.72)]),
                             n_boot=10)
    header, rows, _ = report.display_rows(table)
    assert report.render(table, "markdown", "average").startswith(md_table(header, rows) + "\n\n")


# ----------------------------------------------------------------------------- selecting runs


def test_select_runs_filters_by_dataset_list_and_by_expanded_pooler_specs():
    runs = _runs([dict(dataset="a", pooler="average", seed=0), dict(dataset="b", pooler="din:none", seed=0),
                  dict(dataset="c", pooler="din:softmax", seed=0)])
    assert set(report.select_runs(runs, dataset="a, b")["dataset"]) == {"a", "b"}
    assert list(report.select_runs(runs, pooler="din")["pooler"]) == ["din:none"]  # din = its default variant
    assert list(report.select_runs(runs, dataset="b,c", pooler="din:softmax,average")["dataset"]) == ["c"]
    assert len(report.select_runs(runs)) == 3 and len(report.select_runs(runs, "", "")) == 3


def test_select_runs_refuses_no_records_and_filters_that_match_nothing():
    with pytest.raises(DinbenchError, match=r"no completed run records in /x/res/; make some with: dinbench run"):
        report.select_runs(pd.DataFrame(), results_dir=Path("/x/res"))
    runs = _runs([dict(pooler="average", seed=0)])
    with pytest.raises(DinbenchError, match="no run records match the --dataset/--pooler filters"):
        report.select_runs(runs, dataset="other")
    with pytest.raises(DinbenchError, match="no run records match"):
        report.select_runs(runs, pooler="din:none")


def test_build_keeps_the_latest_run_per_seed_and_says_so():
    runs = _runs([dict(pooler="average", seed=0, gauc=0.60), dict(pooler="average", seed=0, gauc=0.80),
                  dict(pooler="din:none", seed=0, dataset="other")])
    kept, table, notes = report.build(runs, "average", dataset="d", n_boot=10)
    assert list(kept["gauc"]) == [0.80] and table["gauc_mean"].tolist() == [0.80]
    assert len(notes) == 1 and "d average seed 0: 2 runs" in notes[0]


# ----------------------------------------------------------------------------- the prepared-dataset cache


class _Prepared:
    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint


def test_prepared_cache_loads_each_dataset_and_fingerprint_once():
    calls = []

    def load(root, name):
        calls.append((root, name))
        if name == "missing":
            raise DinbenchError("not prepared")
        return _Prepared("fp1")

    cache = publish.PreparedCache(Path("/data"), load=load)
    first = cache("d", "fp1")
    assert first is not None and first.fingerprint == "fp1"
    assert cache("d", "fp1") is first
    assert cache("d", "fp2") is None  # prepared again since the runs: other data
    assert cache("d", "fp2") is None and cache("missing", "fp1") is None and cache("missing", "fp1") is None
    assert calls == [(Path("/data"), "d"), (Path("/data"), "d"), (Path("/data"), "missing")]


def test_prepared_cache_on_a_real_data_folder(tiny_data_dir, tmp_path):
    fingerprint = contract.load(tiny_data_dir, "synthetic").fingerprint
    cache = publish.PreparedCache(tiny_data_dir)
    assert cache("synthetic", fingerprint).fingerprint == fingerprint
    assert cache("synthetic", "0" * 40) is None
    assert publish.PreparedCache(tmp_path / "empty")("synthetic", fingerprint) is None


# ----------------------------------------------------------------------------- the paper side by side


def test_paper_side_by_side_lists_the_published_numbers_per_dataset_and_a_note_elsewhere():
    table = pd.DataFrame({"dataset": ["synthetic", "amazon-electronics", "amazon-electronics"]})
    blocks = publish.paper_side_by_side(table)
    assert [rows is None for _, rows in blocks] == [False, True]  # sorted by dataset name
    title, rows = blocks[0]
    assert title == "published numbers for Amazon Electronics (GAUC = the paper's AUC)"
    assert ["DIN paper, Table 3", "DIN", "din:none", "0.8818", "—"] in rows
    assert ["BARS open benchmark (softmax attention)", "DIN", "din:softmax", "0.8835", "0.8860"] in rows
    assert all(len(r) == len(publish.PAPER_COLUMNS) for r in rows)
    assert blocks[1][0].startswith("no published DIN-paper numbers for 'synthetic'")


def test_table_text_adds_the_paper_where_the_format_can_hold_it():
    runs = _runs([dict(dataset="amazon-electronics", pooler=p, seed=0) for p in ("average", "din:none")])
    table = report.summarize(runs, n_boot=10)
    plain, note = publish.table_text(table, "markdown", "average", with_paper=False)
    assert plain == report.render(table, "markdown", "average") and note is None
    md, note = publish.table_text(table, "markdown", "average", with_paper=True)
    assert md == plain + "\n" + publish.paper_markdown(table) + "\n" and note is None
    csv, _ = publish.table_text(table, "csv", "average", with_paper=True)
    assert "DIN paper, Table 3: DIN" in csv and csv.splitlines()[0].endswith(",source")
    latex, note = publish.table_text(table, "latex", "average", with_paper=True)
    assert latex == report.render(table, "latex", "average") and "--paper adds nothing to LaTeX" in note


# ----------------------------------------------------------------------------- dataset statistics


def test_dataset_stats_counts_the_prepared_data_and_marks_the_papers_counts(tiny_data_dir, monkeypatch):
    manifest = contract.read_manifest(tiny_data_dir, "synthetic")
    c = manifest["counts"]
    monkeypatch.setitem(stats.PAPER_COUNTS, "synthetic", {"users": c["users"], "items": c["items"] + 1})
    result = stats.dataset_stats(tiny_data_dir, "synthetic")
    assert result.title == f"synthetic ({manifest['source']['kind']}; protocol {manifest['protocol']['name']})"
    rows = {label: (value, mark) for label, value, mark in result.rows}
    assert rows["behaviours"] == (f"{c['behaviours']:,}", "")
    assert rows["users"] == (f"{c['users']:,}", f"{c['users']:,} ✓")
    assert rows["items"] == (f"{c['items']:,}", f"{c['items'] + 1:,} ✗")
    assert rows["test samples"][0].startswith(f"{c['test_samples']:,}")
    beh = pd.read_parquet(contract.dataset_path(tiny_data_dir, "synthetic") / "behaviours.parquet")
    per_user = beh.groupby("user").size()
    assert rows["behaviours per user (min / median / max)"][0] == (
        f"{per_user.min():,} / {float(np.median(per_user)):,.0f} / {per_user.max():,}")


def test_dataset_stats_name_things_as_the_source_family_does():
    assert stats.NOUNS["movielens"][:2] == ("ratings", "movies")
    assert stats.PAPER_COUNTS["amazon-electronics"]["users"] == 192_403  # DIN paper, Table 2


def test_listing_shows_prepared_counts_and_embedded_datasets_not_yet_prepared(tiny_data_dir, tmp_path):
    names = stats.known(tiny_data_dir, {"synthetic": "embedded", "extra": "embedded"})
    assert list(names) == ["synthetic", "extra"]
    rows = stats.listing(tiny_data_dir, names)
    c = contract.read_manifest(tiny_data_dir, "synthetic")["counts"]
    assert rows[0][:3] == ["synthetic", "prepared", f"{c['users']:,}"] and rows[0][-1] == "embedded"
    assert rows[1] == ["extra", "not prepared", *[""] * 7, "embedded"]
    assert all(len(r) == len(stats.LISTING_COLUMNS) for r in rows)
    assert stats.known(tmp_path / "nowhere", {}) == {}


# ----------------------------------------------------------------------------- figures as objects


def test_every_figure_is_listed_once_with_its_own_file_name():
    names = [f.name for f in figures.FIGURES]
    assert names == ["gauc-by-length", "learning-curves", "intensity", "attention-case", "relevant-attention",
                     "tuning-trials"]
    assert all(isinstance(f, Figure) and f.step for f in figures.FIGURES)


def test_slug_and_group_file_names():
    assert slug("synthetic", "", "din:none", "a b/c") == "synthetic_din-none_a-b-c"
    group = _group(_runs([dict(pooler="average", seed=0)]), Path("/r/plots"), Path("/r"))
    assert group.stem("attention-case", "din:none") == Path("/r/plots/attention-case_t_din-none")
    group.add_figure([Path("/r/plots/x_t.png"), Path("/r/plots/x_t.svg")], "cap")
    assert group.section.figures == [("plots/x_t.png", "cap")]


def _group(runs, plot_dir, root, load_prepared=lambda *_: None) -> Group:
    return Group(dataset="d", label="d", tag="t", runs=runs, table=pd.DataFrame(), by_run={},
                 section=Section(title="d"), plot_dir=plot_dir, root=root, load_prepared=load_prepared)


def test_a_missing_prepared_dataset_is_asked_once_and_noted_once():
    asked = []
    group = _group(_runs([dict(pooler="din:none", seed=0)]), Path("/p"), Path("/"),
                   load_prepared=lambda name, fp: asked.append((name, fp)))
    for figure in figures.FIGURES[3:]:  # both attention figures need it
        figure.add_to(group)
    assert asked == [("d", "f" * 40)]
    assert len(group.section.notes) == 1 and "fingerprint ffffffffffff" in group.section.notes[0]
    assert group.section.figures == []


def test_no_attention_pooler_no_prepared_dataset_asked():
    group = _group(_runs([dict(pooler="average", seed=0)]), Path("/p"), Path("/"),
                   load_prepared=lambda *_: pytest.fail("asked for the prepared dataset"))
    for figure in figures.FIGURES[3:]:
        figure.add_to(group)
    assert group.section.notes == []


def test_case_study_shows_the_din_variants_and_the_best_other_attention_pooler():
    table = pd.DataFrame({"pooler": ["average", "dot:softmax", "din:softmax", "bilinear:none", "din:none"],
                          "gauc_mean": [0.9, 0.8, 0.7, 0.85, 0.6]})
    assert case_poolers(table) == ["din:none", "din:softmax", "bilinear:none"]
    runs = _runs([dict(pooler="din:none", seed=s) for s in (2, 0, 1)])
    assert lowest_seed(runs, "din:none")["seed"] == 0


def _example_figure():
    """The example of the figures package docstring, executed: it must stay a working figure."""
    doc = figures.__doc__
    code = doc[doc.index("``dinbench/figures/epochs.py``::") + len("``dinbench/figures/epochs.py``::"):
               doc.index("and ``Epochs()``")]
    namespace: dict = {}
    exec(re.sub(r"(?m)^    ", "", code), namespace)  # noqa: S102
    return namespace["Epochs"]()


def test_make_figures_draws_each_figure_per_group_with_caption_and_table(tmp_path):
    class Counted(Figure):
        name, step, caption = "counted", "counting", "Runs per group."

        def compute(self, group):
            return len(group.runs)

        def draw(self, n, stem, group):
            paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
            for p in paths:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(str(n))
            return paths

        def table(self, n):
            return "count", md_table(["runs"], [[str(n)]])

    runs = _runs([dict(pooler="average", seed=0, config="c1"), dict(pooler="average", seed=1, config="c1"),
                  dict(pooler="average", seed=0, config="c2")])
    table = report.summarize(runs, n_boot=10)
    steps = []
    sections = publish.make_figures([], runs, table, tmp_path / "plots", tmp_path, lambda *_: None, steps.append,
                                    figures=[Counted(), _example_figure()])
    assert [s.title for s in sections] == ["d, config c1", "d, config c2"]
    assert sections[0].figures == [("plots/counted_d_c1.png", "Runs per group."),
                                   ("plots/epochs_d_c1.png", "The epoch selected on valid, per run.")]
    assert sections[0].tables == [("count", "| runs |\n|---|\n| 2 |")]
    assert (tmp_path / "plots" / "counted_d_c2.svg").read_text() == "1"
    assert (tmp_path / "plots" / "epochs_d_c2.svg").stat().st_size > 1000
    assert steps[:2] == ["d, config c1: counting", "d, config c1: selected epochs"]

"""Bad input gets one clear line: option values out of range or unknown, and import files with
blank, duplicate or non-numeric rows (counted)."""

from __future__ import annotations

import pandas as pd
import pytest

from dinbench.prepared import contract
from helpers import assert_user_error
from test_import import amazon_layout


@pytest.mark.parametrize("option, value", [("--epochs", "-3"), ("--batch-size", "-1"), ("--max-len", "-5")])
def test_negative_numbers_refused_before_any_work(cli, option, value):
    invoke, data, results = cli
    assert_user_error(invoke("run", option, value), option, "at least 1", f"got {value}")
    assert not data.exists() and not results.exists()


@pytest.mark.parametrize("args, fragments", [
    (("--preset", "fast"), ("unknown --preset 'fast'", "default, paper")),
    (("--optimizer", "adagrad"), ("adagrad", "adam, lazy-adam, rowwise-adagrad, sgd")),
    (("--architecture", "tower"), ("tower", "ranking, two-tower")),
    (("--mlp-activation", "tanh"), ("tanh", "prelu")),
    (("--dataset", "nope"), ("dataset 'nope' is not prepared", "dinbench import FILE --name nope")),
])
def test_unknown_choices_list_the_valid_ones(cli, args, fragments):
    invoke, data, results = cli
    assert_user_error(invoke("run", "--epochs", "1", *args), *fragments)
    assert not results.exists()


def test_report_format_choices(cli):
    invoke, _, _ = cli
    assert_user_error(invoke("report", "--format", "xls"), "unknown format 'xls'", "table, markdown, csv")


def _write(tmp_path, frame: pd.DataFrame, text_after: str = "") -> str:
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    if text_after:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text_after)
    return str(path)


def test_import_counts_and_drops_empty_and_duplicate_rows(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout()
    doubled = pd.concat([frame, frame.head(3)], ignore_index=True)
    path = _write(tmp_path, doubled, ",,,\n,,,\n")
    r = invoke("import", path, "--name", "mine")
    assert r.exit_code == 0, r.output
    assert f"read {len(frame) + 5:,} rows" in r.stdout
    assert "dropped 2 empty row(s) and 3 exact duplicate row(s)" in r.stdout
    manifest = contract.read_manifest(data, "mine")
    assert manifest["source"]["read"] == {"rows": len(frame) + 5, "empty_rows": 2, "duplicate_rows": 3}
    assert manifest["counts"]["behaviours"] == len(frame)


def test_import_blank_times_refused_with_the_count_and_first_row(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout().astype({"timestamp": "float"})
    frame.loc[[4, 9], "timestamp"] = None
    assert_user_error(invoke("import", _write(tmp_path, frame), "--name", "mine"),
                      f"2 of {len(frame):,} rows have an empty time", "first: data row 5")
    assert not contract.is_prepared(data, "mine")


def test_import_non_numeric_times_refused_with_the_count(cli, tmp_path):
    invoke, _, _ = cli
    frame = amazon_layout().astype({"timestamp": "object"})
    frame.loc[[1, 2, 3], "timestamp"] = "yesterday"
    assert_user_error(invoke("import", _write(tmp_path, frame), "--name", "mine"),
                      f"3 of {len(frame)} values that are neither numbers nor dates", "'yesterday'")


def test_import_of_only_empty_rows(cli, tmp_path):
    invoke, _, _ = cli
    path = tmp_path / "in.csv"
    path.write_text("user_id,item_id,cate_id,timestamp\n,,,\n,,,\n", encoding="utf-8")
    assert_user_error(invoke("import", str(path), "--name", "mine"), "no rows with data (2 empty rows)")


def test_import_with_no_user_long_enough_names_the_counts(cli, tmp_path):
    invoke, _, _ = cli
    frame = amazon_layout(n_users=5)
    short = frame[frame.groupby("user_id").cumcount() < 2]
    assert_user_error(invoke("import", _write(tmp_path, short), "--name", "mine"),
                      "no user has at least 4 behaviours", "5 users")

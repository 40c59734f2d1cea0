"""The README's example table is what `dinbench report` prints over the records it came from
(tests/readme_records/); after a change to the table, or a new measurement, regenerate it with
``python benchmarks/readme_table.py --write`` (``--from results/`` to take new records)."""

from __future__ import annotations

import sys

from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import readme_table  # noqa: E402


def test_readme_table_is_what_report_prints_over_its_records():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_table.readme_block(readme) == readme_table.block(readme_table.render()), (
        "README.md's table is not what `dinbench report` prints: python benchmarks/readme_table.py --write")


def test_the_readme_records_are_the_default_run():
    from dinbench import poolers
    from dinbench.records import load_records

    loaded, warnings = load_records(readme_table.RECORDS)
    assert not warnings
    assert sorted(i.record["pooler"] for i in loaded) == sorted(poolers.DEFAULT_POOLERS)
    assert all(i.record["status"] == "completed" and (i.path.parent / "predictions_test.parquet").is_file()
               for i in loaded)

"""Keep the README's example table what `dinbench report` prints.

The README shows the table `dinbench run && dinbench report` ends with, between the markers
``<!-- readme-table:begin -->`` and ``<!-- readme-table:end -->``. The records it was made from are
kept in ``tests/readme_records/`` (each run's record.json and the columns of its test predictions
the report reads), and ``tests/test_readme.py`` fails when the README block is not what the report
code prints over them (at 100 columns, the width of a wide-ish terminal).

    python benchmarks/readme_table.py --check                       # README == the table? (exit 1 if not)
    python benchmarks/readme_table.py --write                       # rewrite the README block from tests/readme_records
    python benchmarks/readme_table.py --from results/ --write       # new measurement: copy those records, rewrite

``--from DIR`` replaces tests/readme_records/ with the completed records of DIR (a results folder
of `dinbench run`), so that the README, its records and the test move together.
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

README = REPO / "README.md"
RECORDS = REPO / "tests" / "readme_records"
BEGIN, END = "<!-- readme-table:begin -->", "<!-- readme-table:end -->"
WIDTH = 100


def render(records: Path = RECORDS, width: int = WIDTH) -> str:
    """What `dinbench report` prints (stdout) over ``records`` at ``width`` columns, the folder shown
    as results/."""
    from rich.console import Console

    from dinbench import poolers, report, ui
    from dinbench.records import load_records

    loaded, _ = load_records(records)
    runs, table, _ = report.build(report.runs_frame(loaded), poolers.BASELINE, results_dir="results")
    console = Console(width=width, file=io.StringIO(), force_terminal=False, color_system=None)
    ui.print_table(console, table, f"dinbench report ({len(runs)} runs in results/)", poolers.BASELINE)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()) + "\n"


def block(text: str) -> str:
    return f"{BEGIN}\n```text\n{text}```\n{END}"


def readme_block(readme: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < 0:
        sys.exit(f"{README} has no {BEGIN} ... {END} block")
    return readme[start:end + len(END)]


def save_records(source: Path, target: Path = RECORDS) -> int:
    """Copy the completed records of ``source`` (record.json, and the test predictions' user, label
    and score columns) into ``target``, replacing what was there. Returns how many."""
    import pandas as pd

    from dinbench.records import load_records

    loaded = [i for i in load_records(source)[0] if i.record.get("status") == "completed"]
    if not loaded:
        sys.exit(f"no completed records in {source}")
    shutil.rmtree(target, ignore_errors=True)
    for item in loaded:
        run_dir = target / item.path.parent.name
        run_dir.mkdir(parents=True)
        record = dict(item.record)
        test = (record.get("predictions") or {}).get("test")
        record["predictions"] = {"test": test} if test else {}
        (run_dir / "record.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if test:
            frame = pd.read_parquet(item.path.parent / test, columns=["user", "label", "score"])
            frame.to_parquet(run_dir / test, engine="pyarrow", index=False)
    return len(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", type=Path, help="copy this results folder's records first")
    parser.add_argument("--write", action="store_true", help="rewrite the README block")
    parser.add_argument("--check", action="store_true", help="exit 1 if the README block is not the table")
    args = parser.parse_args()
    if args.source is not None:
        print(f"copied {save_records(args.source)} records from {args.source} to {RECORDS}")
    text = README.read_text(encoding="utf-8")
    want, have = block(render()), readme_block(text)
    if args.write:
        README.write_text(text.replace(have, want), encoding="utf-8")
        print(f"wrote the table into {README}" if have != want else f"{README} was up to date")
    elif args.check:
        if have != want:
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), want.splitlines(True), "README.md",
                                                       "dinbench report"))
            sys.exit("the README table is not what `dinbench report` prints: python benchmarks/readme_table.py --write")
        print("the README table is what `dinbench report` prints")
    else:
        print(want)


if __name__ == "__main__":
    main()

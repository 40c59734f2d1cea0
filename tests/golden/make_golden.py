"""Regenerate the golden files of tests/test_golden.py. Run ONLY on the commit the goldens pin
(main at cbae55c, before the one-spine redesign of issue 12):

    python tests/golden/make_golden.py

It writes, under tests/golden/:
- metrics.json: test AUC / GAUC / logloss and best epoch of each case in CASES (CLI runs, 1 thread)
- records_cbae55c/: records, predictions, saved models and one interrupted run (with checkpoint)
  written by that commit, and the report it printed over them (report_cbae55c.md / .csv), so
  that newer code proves it still loads, reports and resumes them.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from typer.testing import CliRunner

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

# (label, extra CLI options); each runs on the tiny synthetic set with COMMON.
COMMON = ["--epochs", "2", "--threads", "1", "--seed", "0", "--batch-size", "128", "--embedding-dim", "8",
          "--mlp-hidden", "32,16", "--max-len", "20", "--lr", "0.02"]
DEFAULT_POOLERS = ["none", "average", "time-decay", "dot:softmax", "din:none", "din:softmax"]
CASES = [(p, ["--pooler", p]) for p in DEFAULT_POOLERS] + [
    ("time-decay learned", ["--pooler", "time-decay", "--half-life", "3", "--learn-decay"]),
    ("time-decay by time", ["--pooler", "time-decay", "--decay-age", "time", "--half-life", "200000"]),
    ("multihead 2 heads", ["--pooler", "multihead:softmax", "--heads", "2"]),
    ("din dice outer", ["--pooler", "din:none", "--attention-hidden", "16,8", "--attention-activation", "dice",
                        "--outer-product"]),
    ("din separate l2 dice-mlp", ["--pooler", "din:softmax", "--attention-groups", "separate",
                                  "--l2-minibatch", "0.01", "--mlp-activation", "dice", "--grad-clip", "5"]),
    ("average two-tower sgd", ["--pooler", "average", "--architecture", "two-tower", "--optimizer", "sgd",
                               "--lr", "0.5", "--lr-decay-steps", "10"]),
    ("max bucket paper-protocol", ["--pooler", "max", "--bucket", "--protocol", "paper"]),
]
SYNTHETIC = ["download", "synthetic", "--users", "150", "--mean-length", "8"]


def main() -> None:
    from dinbench.cli import app

    runner = CliRunner()
    work = HERE / "_work"
    shutil.rmtree(work, ignore_errors=True)
    data, results = work / "data", work / "results"

    def invoke(*argv):
        out = runner.invoke(app, list(argv), catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return out

    invoke(*SYNTHETIC, "--data-dir", str(data))
    metrics = []
    for label, extra in CASES:
        res = results / label.replace(" ", "_")
        invoke("run", *COMMON, *extra, "--data-dir", str(data), "--results-dir", str(res))
        (record_path,) = res.glob("*/record.json")
        record = json.loads(record_path.read_text())
        metrics.append({"label": label, "args": COMMON + extra, "test": record["test"],
                        "best_epoch": record["best_epoch"],
                        "valid": [e.get("valid") for e in record["epochs"]]})
    (HERE / "metrics.json").write_text(json.dumps({"commit": "cbae55c", "synthetic": SYNTHETIC[2:],
                                                    "cases": metrics}, indent=1) + "\n")

    # records written by this commit: two completed runs and one interrupted one
    old = HERE / "records_cbae55c"
    shutil.rmtree(old, ignore_errors=True)
    for label in ("average", "din:none", "time-decay learned"):
        for run_dir in (results / label.replace(" ", "_")).iterdir():
            shutil.copytree(run_dir, old / run_dir.name)
    from dinbench.prepared import contract
    from dinbench.train import RunConfig, train_run
    import torch
    torch.set_num_threads(1)
    prepared = contract.load(data, "synthetic")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 5  # after five batches of epoch 1

    cfg = RunConfig(dataset="synthetic", pooler="din:softmax", seed=7, epochs=2, batch_size=128, embedding_dim=8,
                    mlp_hidden=(32, 16), max_len=20, lr=0.02,
                    pooler_options=dict(half_life=5.0, age_unit="position", learn=False, heads=4, hidden=(80, 40),
                                        activation="sigmoid", outer=False))
    try:
        train_run(cfg, prepared, old, stop=stop)
    except Exception as exc:  # RunInterrupted
        print("interrupted as planned:", exc)
    # what an uninterrupted run of the same config gives: the resumed run must match it
    full_dir, full = train_run(cfg, prepared, work / "full")
    (HERE / "resume_expected.json").write_text(json.dumps({"test": full["test"], "best_epoch": full["best_epoch"]},
                                                          indent=1) + "\n")
    out = runner.invoke(app, ["report", "--results-dir", str(old), "--format", "markdown"], catch_exceptions=False)
    (HERE / "report_cbae55c.md").write_text(out.stdout)
    out = runner.invoke(app, ["report", "--results-dir", str(old), "--format", "csv"], catch_exceptions=False)
    (HERE / "report_cbae55c.csv").write_text(out.stdout)
    # the same over the default-option runs only (their rows must come back digit for digit)
    defaults = work / "defaults"
    for run_dir in old.iterdir():
        if "-average-" in run_dir.name or "-din-none-" in run_dir.name:
            shutil.copytree(run_dir, defaults / run_dir.name)
    out = runner.invoke(app, ["report", "--results-dir", str(defaults), "--format", "csv"], catch_exceptions=False)
    (HERE / "report_cbae55c_defaults.csv").write_text(out.stdout)
    shutil.rmtree(work)
    print(json.dumps(metrics, indent=1)[:2000])


if __name__ == "__main__":
    main()

"""Shared fixtures: tiny datasets in temporary folders, a CLI runner, single-threaded torch.

Everything a test writes goes under pytest's tmp_path; nothing touches ./datasets or ./results.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dinbench.prepared import contract
from dinbench.sources.synthetic import SyntheticConfig, generate, source_info

# The tiny synthetic dataset used throughout (same size as `download synthetic --users 150 --mean-length 8`).
TINY = SyntheticConfig(users=150, mean_length=8.0)


@pytest.fixture(autouse=True)
def _single_threaded_torch():
    """Tiny models run fastest on one thread, and a second thread fights any background load.
    Per test, because an in-process `dinbench run` sets its own (default) thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No test may read or write the default ./datasets, ./results or the user's env settings."""
    monkeypatch.delenv("DINBENCH_DATA_DIR", raising=False)
    monkeypatch.delenv("DINBENCH_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """A data folder holding the prepared tiny synthetic dataset (built once per session)."""
    root = tmp_path_factory.mktemp("data")
    behaviours, items = generate(TINY)
    contract.prepare(behaviours, "synthetic", root, source_info(TINY), item_attributes=items)
    return root


@pytest.fixture(scope="session")
def tiny(tiny_data_dir) -> contract.Prepared:
    """The tiny synthetic dataset, loaded (treat as read-only)."""
    return contract.load(tiny_data_dir, "synthetic")


@pytest.fixture
def cli(tmp_path):
    """Invoke the dinbench CLI in-process with tmp data/results folders; returns (invoke, data, results)."""
    from dinbench.cli import app

    runner = CliRunner()
    data, results = tmp_path / "datasets", tmp_path / "results"

    def invoke(*args: str, dirs: bool = True):
        argv = list(args)
        if dirs:
            command = argv[0]
            if command in ("download", "import", "datasets", "run"):
                argv += ["--data-dir", str(data)]
            if command in ("run", "report"):
                argv += ["--results-dir", str(results)]
        return runner.invoke(app, argv, catch_exceptions=True)

    return invoke, data, results

"""Where datasets and run records live.

Defaults are ``./datasets`` and ``./results`` relative to the working directory, overridable with
the ``DINBENCH_DATA_DIR`` / ``DINBENCH_RESULTS_DIR`` environment variables or the CLI's
``--data-dir`` / ``--results-dir`` options (the option wins over the variable).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DINBENCH_DATA_DIR"
RESULTS_ENV = "DINBENCH_RESULTS_DIR"


def data_dir(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get(DATA_ENV, "datasets"))


def results_dir(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get(RESULTS_ENV, "results"))

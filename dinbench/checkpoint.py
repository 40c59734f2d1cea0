"""Interrupting a run safely: a stop flag set by SIGINT/SIGTERM, and checkpoints that resume exactly.

The training loop never stops inside a batch. ``StopFlag`` turns Ctrl-C (SIGINT) and SIGTERM into
a flag that the loop reads at every batch boundary; when it is set, the loop saves a checkpoint of
everything the remaining batches depend on (model, optimizer, scheduler, the torch and numpy random
states, where in the epoch it stopped, the best state so far and the history) and raises
``RunInterrupted``. Resuming restores all of it, so the resumed run ends with exactly the numbers
an uninterrupted run with the same seed would have.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import torch

from dinbench.atomic import write_atomic
from dinbench.errors import DinbenchError

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1


class RunInterrupted(DinbenchError):
    """Training stopped on SIGINT/SIGTERM; a checkpoint was saved. The CLI exits with 130."""

    exit_code = 130


def resume_command(run_id: str, data_dir: Path | None = None, results_dir: Path | None = None) -> str:
    """The command that continues interrupted run ``run_id`` (with the folders, when not the defaults)."""
    command = f"dinbench run --resume {run_id}"
    if data_dir is not None:
        command += f" --data-dir {data_dir}"
    if results_dir is not None:
        command += f" --results-dir {results_dir}"
    return command


class StopFlag:
    """A flag raised by SIGINT or SIGTERM while the ``with`` block runs (handlers restored after).

    Outside the main thread signals cannot be caught, so the flag then only changes by ``set()``.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def set(self, signum: int = signal.SIGINT) -> None:
        self.signal = signum

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - the signal module's signature
        self.signal = signum

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "none"


def save(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically."""
    path = run_dir / CHECKPOINT
    write_atomic(path, lambda tmp: torch.save({"version": CHECKPOINT_VERSION, **state}, tmp))
    return path


def load(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of an interrupted run; DinbenchError if it is missing or unreadable."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise DinbenchError(f"{run_dir.name} has no checkpoint ({path} is missing); start the run again with dinbench run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle arbitrary objects
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
        raise DinbenchError(f"cannot read {path} ({exc.__class__.__name__}); start the run again with dinbench run") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise DinbenchError(f"{path} is not a dinbench checkpoint of version {CHECKPOINT_VERSION}; start the run again")
    return state


def remove(run_dir: Path) -> None:
    """Delete the checkpoint once the run has completed (its record holds the results)."""
    (run_dir / CHECKPOINT).unlink(missing_ok=True)

"""Run records: ``results/<run-id>/record.json``, one per trained model, written atomically.

A run directory is claimed with an exclusive ``mkdir``, so two runs never share one, even when
started at the same moment in different processes.

Every record names the machine (``host``) and process (``pid``) that wrote it. A run's record says
``running`` from its start until it completes, fails or is interrupted; a run killed outright
(SIGKILL, out of memory, a machine that died) stays ``running`` for ever. ``stale_runs`` finds
those: ``running`` records written on this machine by a process that no longer exists.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinbench import allocator
from dinbench.atomic import write_json_atomic

RECORD = "record.json"
SCHEMA = 1


def new_run_dir(results_dir: Path, dataset: str, pooler: str, seed: int) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = pooler.replace(":", "-")
    while True:
        path = results_dir / f"{stamp}-{dataset}-{safe}-s{seed}-{secrets.token_hex(3)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    path = run_dir / RECORD
    write_json_atomic(path, record)
    return path


def peak_mb(record: dict[str, Any]) -> float | None:
    """A run's peak memory in MB as shown (dinbench.memory wrote it): the device's on a GPU, else the
    host's resident set; None for records written before runs measured it."""
    peak = record.get("peak_memory") or {}
    value = peak.get("device_mb") if peak.get("device_mb") is not None else peak.get("host_mb")
    return None if value is None else float(value)


def package_versions() -> dict[str, str]:
    from importlib import metadata  # here: reading records (report) never needs it

    out = {"python": platform.python_version()}
    for pkg in ("dinbench", "torch", "numpy", "pandas", "pyarrow", "scikit-learn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_commit() -> str | None:
    """The commit of the dinbench source tree, with '+dirty' when it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# Read once, when the code is loaded: a record must name the commit of the code that trained it,
# even if the checkout moves on while a long run is going.
_GIT_COMMIT_AT_START = git_commit()


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        return None


def environment() -> dict[str, Any]:
    return {
        "versions": package_versions(),
        "git_commit": _GIT_COMMIT_AT_START,
        "platform": platform.platform(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cpu_count": os.cpu_count(),
        "torch_threads": _torch_threads(),
        "allocator": allocator.state(),  # whether freed memory was kept for the next step (dinbench.allocator)
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


@dataclass
class Loaded:
    path: Path
    record: dict[str, Any]


def load_records(results_dir: Path) -> tuple[list[Loaded], list[str]]:
    """Every readable record under ``results_dir``, and one warning per file that was skipped."""
    loaded: list[Loaded] = []
    warnings: list[str] = []
    if not results_dir.is_dir():
        return loaded, warnings
    for path in sorted(results_dir.glob(f"*/{RECORD}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            warnings.append(f"skipped {path}: not a readable record ({exc.__class__.__name__})")
            continue
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            warnings.append(f"skipped {path}: not a dinbench record of schema {SCHEMA}")
            continue
        loaded.append(Loaded(path, record))
    return loaded, warnings


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as existing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. a platform without signal 0: assume it runs
        return True
    return True


def stale_runs(loaded: list[Loaded], host: str | None = None) -> list[Loaded]:
    """The ``running`` records whose process is gone: written on ``host`` (default: this machine)
    by a pid that no longer exists. Records from another machine cannot be checked and are left
    out; so are records written before records named their process (no ``pid``)."""
    host = socket.gethostname() if host is None else host
    out = []
    for item in loaded:
        r = item.record
        pid = r.get("pid")
        if r.get("status") == "running" and r.get("host") == host and isinstance(pid, int) and not process_alive(pid):
            out.append(item)
    return out

"""The command line answers fast: importing it (and so every ``--help``) loads no heavy library.

Untimed: what makes ``--help`` slow is importing torch, pandas, matplotlib or scikit-learn, so the
tests check, in a fresh interpreter, that those stay out of ``sys.modules``. The time itself is
measured by benchmarks/startup.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pandas", "matplotlib", "sklearn", "scipy")
COMMANDS = ["download", "import", "datasets", "poolers", "run", "sweep", "report"]


def _loaded_after(code: str) -> list[str]:
    """The heavy libraries in sys.modules after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded_after("import dinbench.cli") == []


def test_every_help_renders_without_heavy_libraries():
    code = ("from typer.testing import CliRunner\nfrom dinbench.cli import app\n"
            f"for argv in [['--help'], ['--version']] + [[c, '--help'] for c in {COMMANDS!r}]:\n"
            "    out = CliRunner().invoke(app, argv)\n"
            "    assert out.exit_code == 0 and 'Usage' in out.output or argv == ['--version'], (argv, out.output)")
    assert _loaded_after(code) == []


def test_the_probe_sees_a_heavy_import():
    """The check above would notice: a module that does import torch shows up."""
    assert _loaded_after("import dinbench.poolers.base") == ["torch"]


def test_the_registry_builds_poolers_on_demand():
    """The poolers' declarations are torch-free, yet building one imports its class and works."""
    from dinbench import poolers

    assert _loaded_after("from dinbench import poolers, grid; grid.schema(); poolers.options('din')") == []
    for name, entry in poolers.REGISTRY.items():
        assert entry.cls.description == entry.info.description, name
        assert tuple(entry.cls.options) == entry.info.options, name
        assert entry.cls.uses_candidate == entry.info.uses_candidate, name
        assert entry.cls.uses_order == entry.info.uses_order, name
        assert entry.cls.cuda_graphs == entry.info.cuda_graphs, name
    assert isinstance(poolers.build("din", 8), poolers.Pooler)


@pytest.mark.parametrize("argv", [["--version"], ["--version", "run"]])
def test_version(cli, argv):
    invoke, _, _ = cli
    out = invoke(*argv, dirs=False)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert out.exit_code == 0, out.output
    assert out.output.strip() == f"dinbench {version}"

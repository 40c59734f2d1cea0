"""Every command's ``--help``, rendered as a user sees it (wide terminal): one default style, no
type on plain flags, usage in capitals, and no text eaten by rich markup."""

from __future__ import annotations

import re

import pytest
from rich.markup import escape
from typer.main import get_command
from typer.testing import CliRunner

from dinbench.cli import app

COMMANDS = ["download", "import", "datasets", "poolers", "run", "sweep", "report", "tune"]
WIDE = {"COLUMNS": "240", "TERM": "dumb"}


def _help(*argv: str) -> str:
    out = CliRunner().invoke(app, [*argv, "--help"], env=WIDE)
    assert out.exit_code == 0, out.output
    return out.output


def _rows(text: str) -> list[str]:
    """The rows of the help panels, borders stripped."""
    return [line.strip("│ ").rstrip("│").strip() for line in text.splitlines()]


def _flat(text: str) -> str:
    """The help text with panel borders and line wraps removed (a wrapped phrase reads whole)."""
    return " ".join(" ".join(r for r in _rows(text) if r).split())


@pytest.mark.parametrize("argv", [[]] + [[c] for c in COMMANDS])
def test_one_default_style_no_bool_and_no_braces(argv):
    text = _help(*argv)
    assert re.findall(r".default:", text) == ["[default:"] * text.count("default:"), text
    assert "<bool>" not in text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage


def test_flags_have_no_type_and_value_options_keep_theirs():
    rows = {r.split()[0]: r for r in _rows(_help("run")) if r.startswith("--")}
    assert rows["--help"].split()[1] == "Show", rows["--help"]
    assert rows["--print-config"].split()[1] == "Print"
    assert rows["--bucket"].split()[1:3] == ["--no-bucket", "Batch"]
    assert rows["--epochs"].split()[1] == "<int>"


def test_usage_names_the_arguments_in_capitals():
    assert re.search(r"Usage: .*download \[OPTIONS\] NAME\s*$", _help("download"), re.M)
    assert re.search(r"Usage: .*import \[OPTIONS\] FILE\s*$", _help("import"), re.M)
    assert re.search(r"Usage: .*\[OPTIONS\] COMMAND \[ARGS\]\.\.\.\s*$", _help(), re.M)


def test_defaults_read_as_typer_writes_them():
    run = _flat(_help("run"))
    assert "Maximum epochs (early stopping on valid GAUC). [default: 10]" in run
    assert "[default: no-bucket]" in run and "[default: 80,40]" in run  # a flag; a tuple
    assert "Datasets folder. [default: $DINBENCH_DATA_DIR, else ./datasets]" in run
    assert "[default: half the usable cores, 1 to 4]" in run
    assert "synthetic: number of users. [default: 2500]" in _flat(_help("download"))


def test_version_is_an_option_of_dinbench():
    assert "--version Print the version and exit." in _flat(_help())


def test_markup_eats_no_brackets():
    """What the help says in brackets (``dinbench[ray]``, ``[default: ...]``) reaches the screen."""
    assert "pip install 'dinbench[ray]'" in _flat(_help("sweep"))
    group = get_command(app)
    for name in COMMANDS:
        shown = _flat(_help(name))
        for param in group.commands[name].params:
            plain = (param.help or "").replace("\\[", "[")  # the declared text, markup escapes undone
            for bracketed in re.findall(r"\[[^\]]*\]", plain):
                assert " ".join(bracketed.split()) in shown, (name, param.name, bracketed)


def test_escape_is_what_rich_needs():
    """The premise of the test above: unescaped, rich markup would drop '[ray]'."""
    from rich.text import Text

    assert Text.from_markup("dinbench[ray]").plain == "dinbench"
    assert Text.from_markup(escape("dinbench[ray]")).plain == "dinbench[ray]"

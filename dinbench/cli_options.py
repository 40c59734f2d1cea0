"""The command line's experiment options, generated from their one declaration.

``experiment_options`` gives ``dinbench run`` and ``dinbench sweep`` every option of
``dinbench.grid.schema()`` (run options, grid options, each pooler's options) plus ``--config``
and ``--print-config``; the command receives the resolved ``grid.Experiment``. A new option or
pooler option therefore appears here, in ``--help``, in experiment files and in records without
an edit to the CLI.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, Optional

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from dinbench import experiment, grid, paths
from dinbench.errors import DinbenchError

# a command's path parameters and the option that names each in an error line
PATH_PARAMETERS = {"data_dir": paths.DATA_OPTION, "results_dir": paths.RESULTS_OPTION, "output": "--output",
                   "plots": "--plots", "from_path": "--from", "config": "--config", "file": "FILE"}


def one_line_errors(err: Console):
    """A decorator: DinbenchError becomes one line on ``err`` and exit status 2 (130 for an interrupted
    run or import). So does an OSError about a path that reaches it (a full disk, no permission, a file
    where a folder is needed): the line names the path and the option that chose it (paths.os_error_line)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except DinbenchError as exc:
                _error_line(err, str(exc))
                raise typer.Exit(getattr(exc, "exit_code", 2)) from None
            except OSError as exc:
                line = paths.os_error_line(exc, _path_options(kwargs))
                if line is None:
                    raise  # not about the user's files: a bug, keep its traceback
                _error_line(err, line)
                raise typer.Exit(2) from None

        return wrapper

    return decorate


def _error_line(err: Console, message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _path_options(kwargs: dict) -> dict[str, Path | None]:
    """option -> the path the command was given for it (the data and results folders' defaults included)."""
    found: dict[str, Path | None] = {}
    for key, option in PATH_PARAMETERS.items():
        if key in kwargs:
            value = kwargs[key]
            if key == "data_dir":
                value = paths.data_dir(value)
            elif key == "results_dir":
                value = paths.results_dir(value)
            found[option] = value
    return found
def default_note(value) -> str:
    """'[default: VALUE]' for a help text, as Typer writes the defaults it shows itself (escaped for rich
    markup): for options whose default is not their Python default (None = worked out at run time)."""
    return escape(f"[default: {value}]")


class Command(typer.core.TyperCommand):
    """A command whose ``--help`` shows a type only where an option takes a value (no ``<bool>`` on
    flags, ``--help`` included) and its usage as ``dinbench download [OPTIONS] NAME`` (not ``{name}``)."""

    def get_params(self, ctx):
        return _flags_untyped(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        return _usage(self, ctx)


class Group(typer.core.TyperGroup):
    """The command group, with the same help conventions as ``Command``."""

    def get_params(self, ctx):
        return _flags_untyped(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        return _usage(self, ctx)


def _flags_untyped(params: list) -> list:
    for p in params:
        if getattr(p, "is_flag", False) and p.metavar is None:
            p.metavar = ""  # what Typer's help shows in the type column of the option ('<bool>' otherwise)
    return params


def _usage(command, ctx) -> list[str]:
    """Click's usage pieces: [OPTIONS], then each argument as NAME, optional ones as [NAME]."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for p in command.get_params(ctx):
        if isinstance(p, typer.core.TyperArgument):
            name = (p.metavar or p.name or "").upper()
            name = name if p.required else f"[{name}]"
            pieces.append(name + ("..." if p.nargs != 1 else ""))
        else:
            pieces.extend(p.get_usage_pieces(ctx))
    if isinstance(command, typer.core.TyperGroup):
        pieces.append(command.subcommand_metavar)
    return pieces


def typer_parameter(opt, help_: str | None = None) -> inspect.Parameter:
    """A command-line option generated from its declaration (None = not given: file, preset or default).

    The declared help is plain text, so it is escaped for the rich markup of ``--help``."""
    help_ = f"{help_ or opt.help} {opt.describe_default()}" if opt.default is not None else (help_ or opt.help)
    help_ = escape(help_)
    if opt.kind is bool:
        return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[bool],
                                 default=typer.Option(None, f"{opt.flag}/--no-{opt.flag[2:]}", help=help_))
    kind = {int: int, float: float}.get(opt.kind, str)
    return inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                             default=typer.Option(None, opt.flag, help=help_))


def experiment_options(dataset_help: str, show: Callable[[str], None]):
    """Give a command every experiment option (generated from the schema) plus --config and
    --print-config in place of its ``exp`` parameter, which it receives as a resolved Experiment."""
    def decorate(fn):
        shared = [typer_parameter(o, dataset_help if k == "dataset" else None) for k, o in grid.schema().items()]
        shared += [
            inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
                None, "--config", help="An experiment file (TOML: option = value, lists for dataset, pooler and "
                "architecture); options given here win over it.")),
            inspect.Parameter("print_config", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
                False, "--print-config", help="Print the resolved experiment as TOML (usable with --config) and exit.")),
        ]
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        at = [p.name for p in own].index("exp")
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own[:at] + shared + own[at + 1:]]
        names = set(grid.schema())

        @functools.wraps(fn)
        def wrapper(**kwargs):
            explicit = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            path, print_only = kwargs.pop("config"), kwargs.pop("print_config")
            file = experiment.load(path) if path is not None else None
            exp = grid.resolve(explicit, file, str(path) if path is not None else None)
            if print_only:
                show(experiment.dump(exp, f"dinbench {fn.__name__}: resolved experiment"))
                return None
            return fn(exp=exp, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate

"""Where datasets and run records live, and the one place a path problem becomes one line.

Defaults are ``./datasets`` and ``./results`` relative to the working directory, overridable with
the ``DINBENCH_DATA_DIR`` / ``DINBENCH_RESULTS_DIR`` environment variables or the CLI's
``--data-dir`` / ``--results-dir`` options (the option wins over the variable).

``check_folder``, ``check_output_file`` and ``check_output_folder`` look at a folder or file the
user named before any work is done (a file where a folder is needed, a missing parent folder, no
permission to write) and raise ``DinbenchError`` naming the option, the path and what to do.
``os_error_line`` turns an ``OSError`` met later (full disk, permission denied, a file in the way)
into the same kind of line; the CLI applies it to any stray ``OSError`` about a path.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Mapping

from dinbench.errors import DinbenchError

DATA_ENV = "DINBENCH_DATA_DIR"
RESULTS_ENV = "DINBENCH_RESULTS_DIR"
DATA_OPTION = "--data-dir"
RESULTS_OPTION = "--results-dir"


def data_dir(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get(DATA_ENV, "datasets"))


def results_dir(override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get(RESULTS_ENV, "results"))


def data_folder(override: Path | None, write: bool) -> Path:
    """``data_dir(override)``, checked (``check_folder``) as the folder of ``--data-dir``."""
    return check_folder(data_dir(override), _label(DATA_OPTION, DATA_ENV, override), DATA_OPTION, write)


def results_folder(override: Path | None, write: bool) -> Path:
    """``results_dir(override)``, checked (``check_folder``) as the folder of ``--results-dir``."""
    return check_folder(results_dir(override), _label(RESULTS_OPTION, RESULTS_ENV, override), RESULTS_OPTION, write)


def _label(option: str, env: str, override: Path | None) -> str:
    """How the user chose the folder: ``--data-dir``, ``$DINBENCH_DATA_DIR`` or the default."""
    if override is not None:
        return option
    if os.environ.get(env):
        return f"${env}"
    return f"{option} (default)"


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (as anything: folder, file, link)."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def check_folder(path: Path, label: str, option: str, write: bool) -> Path:
    """Refuse ``path`` as a folder when it is a file, sits under a file, or (``write``) cannot be
    written; a missing folder is fine (it is made when needed). Returns ``path``."""
    path = Path(path)
    found = _existing_ancestor(path)
    if found == path and not path.is_dir():
        raise DinbenchError(f"{label} {path} is a file, not a folder; give a folder (a missing one is created) "
                            f"or move the file away")
    if found != path and not found.is_dir():
        raise DinbenchError(f"{label} {path}: {found} is a file, so no folder can be made there; "
                            f"choose another {option}")
    if write and not _writable(found):
        raise DinbenchError(f"{label} {path} is not writable ({found}: permission denied); make it writable "
                            f"for you or choose another {option}")
    return path


def check_output_file(path: Path, option: str) -> Path:
    """A file to write: its folder must exist and be writable, and the path must not be a folder."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise DinbenchError(f"{option} {path} is a folder; give a file name ending in {path.suffix or '.md'}, "
                            f"or a folder path without such a suffix")
    if not parent.is_dir():
        what = "is a file, not a folder" if os.path.lexists(parent) else "does not exist"
        raise DinbenchError(f"{option} {path}: the folder {parent} {what}; create it first or choose another {option}")
    if not _writable(parent):
        raise DinbenchError(f"{option} {path}: the folder {parent} is not writable (permission denied); "
                            f"choose another {option}")
    return path


def check_output_folder(path: Path, option: str) -> Path:
    """A folder to write into: it may be missing (it is made) but its parent must exist; it must not
    be a file, and it (or its parent, when missing) must be writable."""
    path = Path(path)
    if os.path.lexists(path):
        if not path.is_dir():
            raise DinbenchError(f"{option} {path} is a file, not a folder; choose another {option}")
        if not _writable(path):
            raise DinbenchError(f"{option} {path} is not writable (permission denied); choose another {option}")
        return path
    check_output_file(path, option)  # a missing folder: its parent must exist and be writable
    return path


# errno values that describe the user's files and disks, not a bug in dinbench
USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST,
               errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG}


def os_error_line(exc: OSError, options: Mapping[str, Path | None] = ()) -> str | None:
    """One line for ``exc`` (an OSError about a path): what went wrong, where, and what to do. The
    fix names the option of ``options`` (option -> folder or file) whose path holds the failing file.
    None when ``exc`` names no path or is not about the user's files (then it stays a bug)."""
    filename = getattr(exc, "filename", None)
    if filename is None or exc.errno not in USER_ERRNOS:
        return None
    path = Path(os.fsdecode(filename))
    option = _owner(path, options)
    other = f"choose another {option}" if option else "choose another path"
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        where = path.parent if path.parent != Path("") else Path(".")
        what = "is full" if code == errno.ENOSPC else "is over your disk quota"
        return f"the disk holding {where} {what} (writing {path.name}); free some space or {other} on a larger disk"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {path}; make it writable for you or {other}"
    if code == errno.EROFS:
        return f"{path} is on a read-only file system; {other}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _existing_ancestor(path)
        if os.path.lexists(blocker) and not blocker.is_dir():
            return f"{blocker} is a file where a folder is needed (for {path}); move the file away or {other}"
        return f"{path} already exists and is in the way; move it away or {other}"
    if code == errno.EISDIR:
        return f"{path} is a folder where a file is needed; {other}"
    if code == errno.ENOENT:
        return f"{path} does not exist; check the path or {other}"
    return f"{path}: {exc.strerror}; {other}"


def _owner(path: Path, options: Mapping[str, Path | None]) -> str | None:
    """The option whose path is ``path`` or holds it (the deepest match wins)."""
    best, depth = None, -1
    target = _absolute(path)
    for option, root in dict(options).items():
        if root is None:
            continue
        base = _absolute(Path(root))
        if (target == base or base in target.parents) and len(base.parts) > depth:
            best, depth = option, len(base.parts)
    return best


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def read_toml(path: Path, what: str, fix: str) -> dict:
    """The TOML file ``path`` (an experiment file, a tuning space, ...), or one DinbenchError line naming
    ``what`` it is and, where the file is missing or a folder, the ``fix``."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DinbenchError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise DinbenchError(f"{what} {path} is a directory; {fix}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DinbenchError(f"cannot read {what} {path} ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DinbenchError(f"{path} is not valid TOML ({exc})") from None

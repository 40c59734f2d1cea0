"""Safe reading of downloaded (untrusted) files: zip extraction and line-by-line gzip/text reading.

* ``safe_extract_zip`` checks *every* member before writing anything: absolute paths, ``..``
  components, drive letters, symlinks and names that resolve outside the target folder are refused,
  so a hostile archive cannot write outside it (the "zip slip"). Members are written to a temporary
  name and renamed, like every other output.
* ``numbered_lines`` streams a ``.gz`` (or plain) file line by line with 1-based line numbers and
  turns a truncated or corrupt gzip into one error that names the file and the line where it broke.
  Nothing is ever ``eval``-ed or unpickled; parsers of the lines use ``json`` or ``ast.literal_eval``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterator

from dinbench.atomic import write_atomic
from dinbench.errors import DinbenchError


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "climbs out with '..'"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    return None


def safe_extract_zip(archive: Path, dest: Path, members: list[str] | None = None) -> list[Path]:
    """Extract ``archive`` (all members, or only ``members``) under ``dest``; refuse unsafe archives.

    Returns the extracted file paths. Raises DinbenchError, before writing anything, if any member
    would land outside ``dest``.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DinbenchError(f"{archive} is not a readable zip ({exc}); delete it and download again (--force)") from None
    with zf:
        infos = zf.infolist()
        root = dest.resolve()
        for info in infos:
            reason = _unsafe_reason(info)
            target = (dest / info.filename).resolve()
            if reason is None and target != root and root not in target.parents:
                reason = "resolves outside the target folder"
            if reason:
                raise DinbenchError(
                    f"refusing to extract {archive.name}: member '{info.filename}' {reason}; "
                    "the archive is not the published one, delete it and download again"
                )
        wanted = None if members is None else set(members)
        out: list[Path] = []
        for info in infos:
            if info.is_dir() or (wanted is not None and info.filename not in wanted):
                continue
            target = dest / info.filename

            def _write(tmp: Path, info=info) -> None:
                with zf.open(info) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)

            try:
                write_atomic(target, _write)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise DinbenchError(f"{archive.name} is damaged at '{info.filename}' ({exc}); download it again (--force)") from None
            out.append(target)
    return out


def numbered_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped) from a plain or gzip file.

    A truncated or corrupt gzip raises DinbenchError naming the file and the line it broke on.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rt", encoding=encoding, newline="") as f:
            for number, line in enumerate(f, start=1):
                yield number, line.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DinbenchError(
            f"{path}: the gzip stream is truncated or corrupt at line {number + 1} ({exc}); "
            "the download was incomplete, fetch it again with --force"
        ) from None
    except UnicodeDecodeError as exc:
        raise DinbenchError(f"{path}: line {number + 1} is not valid {encoding} text ({exc.reason})") from None
    except OSError as exc:
        raise DinbenchError(f"cannot read {path} (line {number + 1}): {exc}") from None


class BadLines:
    """Collects malformed lines: raise on the first one, or (``skip=True``) count and keep examples."""

    def __init__(self, path: Path, skip: bool) -> None:
        self.path, self.skip, self.count, self.examples = Path(path), skip, 0, []

    def __call__(self, number: int, why: str) -> None:
        if not self.skip:
            raise DinbenchError(
                f"{self.path.name} line {number}: {why}; the file is damaged or not the published one "
                "(rerun with --skip-bad-lines to count and skip such lines)"
            )
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(f"line {number}: {why}")

    def report(self) -> dict:
        return {"file": self.path.name, "skipped_lines": self.count, "examples": self.examples}


def file_size(path: Path) -> int:
    return os.stat(path).st_size

"""The download engine: resumable, verified, atomic HTTP(S) downloads with a Rich progress bar.

Why not pooch (or requests)? pooch is the well-kept reference here and this engine copies its
good habits: download into a temporary file next to the target and rename only when complete
(a crash never leaves a file that looks finished), verify a known hash after the transfer and
delete a file that fails it, retry a failed transfer a few times with a growing wait, and let the
user point at another location. What pooch does not do is *resume*: after a failure it starts
the transfer over from byte 0 (it also needs requests and keeps its own cache folder and registry
format). Our largest files (Amazon Electronics reviews and meta, MovieLens-25M) are hundreds of
MB over links that drop, so resuming with an HTTP ``Range`` request matters more here than the
rest of pooch's features; with it the engine is ~150 lines of the standard library (urllib), and
the runtime dependencies stay torch, numpy, pandas, pyarrow, scikit-learn, typer and rich.

Behaviour, per file:

* The partial transfer lives in ``<target>.part``. A new attempt asks for ``Range: bytes=<have>-``;
  ``206 Partial Content`` appends, ``200 OK`` (a server without ranges) starts over, ``416`` means
  the part is already whole (or bigger than the file: start over).
* Transient failures (connection errors, timeouts, 5xx, 429, a body shorter than announced) are
  retried ``retries`` times with exponential backoff (``backoff * 2**k`` seconds), keeping what was
  received; 4xx answers go straight to the next mirror. After the last mirror, one error line.
* Before receiving, the free space of the target's disk is checked against the bytes still to come
  (plus a margin): refused with a clear message rather than failing half way.
* After the transfer the MD5 (the hash GroupLens publishes) is checked when known; a mismatch
  deletes the file and tries the next mirror.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from dinbench.errors import DinbenchError

CHUNK = 1 << 20
DISK_MARGIN = 64 << 20  # keep this much free beyond the file itself
USER_AGENT = "dinbench/0.1 (python-urllib)"


class _Transient(Exception):
    """A failure worth retrying on the same URL (progress so far is kept)."""


class _Permanent(Exception):
    """A failure of this URL that retrying will not fix (go to the next mirror)."""


@dataclass
class Downloaded:
    path: Path
    url: str
    bytes: int
    resumed_from: int  # bytes already on disk when the successful attempt started
    md5: str | None


def md5sum(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def parse_md5_file(text: str) -> str | None:
    """The hash in a published ``.md5`` file: ``MD5 (name) = hex`` (BSD) or ``hex  name`` (GNU)."""
    for token in text.replace("=", " ").split():
        token = token.strip().lower()
        if len(token) == 32 and all(c in "0123456789abcdef" for c in token):
            return token
    return None


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _check_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed + DISK_MARGIN > free:
        raise DinbenchError(
            f"not enough disk space in {folder}: {needed / 1e6:,.0f} MB still to download but only "
            f"{free / 1e6:,.0f} MB free; free some space or use --data-dir on a larger disk"
        )


def _transfer(url: str, part: Path, timeout: float, on_bytes: Callable[[int, int | None], None]) -> None:
    """One attempt: fetch ``url`` into ``part``, resuming from its current size."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = _content_range_total(exc.headers.get("Content-Range"))
            if total == have:
                on_bytes(have, have)
                return  # already complete
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 with {have} bytes on disk; starting over") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code}") from None
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
        # DNS failures, refused or dropped connections, timeouts: try again, then the next mirror
        raise _Transient(str(getattr(exc, "reason", exc))) from None
    with response:
        status = getattr(response, "status", 200)
        length = response.headers.get("Content-Length")
        if status == 206:
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:  # 200: the server sent the whole file (it ignored or did not get a Range)
            have, mode = 0, "wb"
            total = int(length) if length is not None else None
        remaining = (total - have) if total is not None else (int(length) if length else 0)
        _check_disk(part.parent, remaining)
        on_bytes(have, total)
        got = have
        try:
            with open(part, mode) as f:
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    on_bytes(got, total)
        except (socket.timeout, ConnectionError, http.client.HTTPException, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
                raise DinbenchError(f"the disk holding {part.parent} is full; free some space and rerun to resume") from None
            raise _Transient(f"connection lost after {got:,} bytes ({exc.__class__.__name__})") from None
        if total is not None and got < total:
            raise _Transient(f"connection closed after {got:,} of {total:,} bytes")


def _content_range_total(value: str | None) -> int | None:
    """``bytes 100-199/200`` or ``bytes */200`` -> 200."""
    if not value or "/" not in value:
        return None
    tail = value.rsplit("/", 1)[1].strip()
    return int(tail) if tail.isdigit() else None


def download(
    urls: list[str],
    target: Path,
    md5: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 60.0,
    console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Downloaded:
    """Download the first working URL of ``urls`` to ``target`` (see the module doc for the rules)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    failures: list[str] = []
    with _progress(console) as progress:
        task = progress.add_task(target.name, total=None)

        def on_bytes(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        for url in urls:
            for attempt in range(retries + 1):
                start = part.stat().st_size if part.exists() else 0
                try:
                    _transfer(url, part, timeout, on_bytes)
                except _Permanent as exc:
                    failures.append(f"{url}: {exc}")
                    part.unlink(missing_ok=True)  # another mirror's bytes must not be appended to these
                    break
                except _Transient as exc:
                    if attempt == retries:
                        failures.append(f"{url}: {exc} (after {retries + 1} attempts)")
                        part.unlink(missing_ok=True)
                        break
                    wait = backoff * 2**attempt
                    progress.console.print(f"{target.name}: {exc}; retrying in {wait:.0f}s (resuming from byte {part.stat().st_size if part.exists() else 0:,})")
                    sleep(wait)
                    continue
                digest = None
                if md5:
                    digest = md5sum(part)
                    if digest != md5.lower():
                        part.unlink(missing_ok=True)
                        failures.append(f"{url}: checksum mismatch (md5 {digest}, expected {md5.lower()}); file removed")
                        break
                size = part.stat().st_size
                os.replace(part, target)
                return Downloaded(target, url, size, start, digest)
    raise DinbenchError(
        f"could not download {target.name}: " + "; ".join(failures)
        + ". Check the connection, give another location with --url, or fetch the file yourself and use --from PATH"
    )

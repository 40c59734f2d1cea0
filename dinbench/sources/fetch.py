"""``dinbench download <real dataset>``: locate or download the raw files, verify them, prepare them.

Raw files go to ``<data dir>/_downloads/<name>/`` (kept, so ``--force`` re-prepares without
downloading again unless they fail their check); the prepared dataset to ``<data dir>/<name>/``.
``--from PATH`` uses the user's own copy and never touches the network.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from dinbench.atomic import write_atomic
from dinbench.errors import DinbenchError, Interrupted
from dinbench.prepared import contract
from dinbench.sources import amazon, movielens, taobao
from dinbench.sources.archive import safe_extract_zip
from dinbench.sources.download import USER_AGENT, download, md5sum, parse_md5_file
from dinbench.sources.registry import DatasetSpec, RemoteFile

DOWNLOADS = "_downloads"
LICENCE_MARK = ".licence-shown"


@dataclass
class Options:
    from_path: Path | None = None
    urls: list[str] = field(default_factory=list)
    force: bool = False
    skip_bad_lines: bool = False
    seed: int = 1234
    valid_fraction: float = 0.1
    positive: str = "pv"
    retries: int = 3
    backoff: float = 1.0
    timeout: float = 60.0


def raw_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / DOWNLOADS / name


def _show_licence(spec: DatasetSpec, folder: Path, console: Console) -> None:
    """Print the licence, unless a completed download of this dataset already showed it."""
    if not (folder / LICENCE_MARK).exists():
        console.print(f"[bold]licence[/] ({spec.name}): {spec.licence}", soft_wrap=True)


def _mark_licence(spec: DatasetSpec, folder: Path) -> None:
    """Remember, once the dataset is prepared, that its licence was shown."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / LICENCE_MARK, lambda tmp: tmp.write_text(spec.licence + "\n", encoding="utf-8"))


def _tidy(made: list[Path], raw: Path, keep_files: bool) -> None:
    """After a failed download: remove the folders this attempt made (deepest first). ``keep_files``:
    the raw folder stays when it holds something (a partial download to resume); otherwise it goes
    with its files (e.g. members extracted from a --from zip). The others go only when empty."""
    for folder in made:
        if not folder.is_dir():
            continue
        if not keep_files and folder == raw:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def _file_urls(spec: DatasetSpec, file: RemoteFile, overrides: list[str]) -> list[str]:
    """``--url``: a full URL of a file (matched by its last path segment) or a folder URL ending in '/'."""
    if not overrides:
        return list(file.urls)
    chosen = []
    for url in overrides:
        if url.endswith("/"):
            chosen.append(url + file.name)
        elif url.rsplit("/", 1)[-1] == file.name or len(spec.files) == 1:
            chosen.append(url)
    if not chosen:
        raise DinbenchError(
            f"no --url names {file.name}; give its full URL, or a folder URL ending in '/' that holds "
            + " and ".join(f.name for f in spec.files)
        )
    return chosen


def _published_md5(file: RemoteFile, urls: list[str], timeout: float, console: Console) -> str | None:
    if file.md5:
        return file.md5
    candidates = [u + ".md5" for u in urls] if urls != list(file.urls) else list(file.md5_urls)
    for url in candidates:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                found = parse_md5_file(response.read(4096).decode("ascii", "replace"))
            if found:
                return found
        except (urllib.error.URLError, OSError, ValueError):
            continue
    if file.md5_urls:
        console.print(f"[yellow]warning:[/] could not fetch the published checksum of {file.name}; it is checked by parsing only")
    return None


def _fetch_files(spec: DatasetSpec, folder: Path, opts: Options, console: Console) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for file in spec.files:
        target = folder / file.name
        urls = _file_urls(spec, file, opts.urls)
        if target.is_file() and not opts.force:
            console.print(f"{file.name}: already downloaded in {folder} (--force downloads again)")
            info[file.name] = {"path": str(target), "bytes": target.stat().st_size, "reused": True}
            continue
        if opts.force:
            target.unlink(missing_ok=True)
        md5 = _published_md5(file, urls, opts.timeout, console)
        got = download(urls, target, md5=md5, retries=opts.retries, backoff=opts.backoff, timeout=opts.timeout, console=console)
        console.print(f"{file.name}: {got.bytes:,} bytes from {got.url}" + (f", md5 {got.md5} verified" if got.md5 else ""))
        info[file.name] = {"path": str(target), "bytes": got.bytes, "url": got.url, "md5": got.md5}
    return info


def _line_progress(console: Console):
    progress = Progress(SpinnerColumn(), TextColumn("reading {task.description}: {task.completed:,} lines"),
                        TimeElapsedColumn(), console=console, transient=True)
    tasks: dict[str, int] = {}

    def update(stage: str, lines: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=None)
        progress.update(tasks[stage], completed=lines)

    return progress, update


def _movielens_folder(spec: DatasetSpec, folder: Path, opts: Options, console: Console) -> tuple[Path, dict[str, Any]]:
    layout, top = spec.options["layout"], spec.options["folder"]
    zip_name = spec.files[0].name
    files: dict[str, Any] = {}
    archive: Path | None = None
    if opts.from_path is not None:
        src = Path(opts.from_path).expanduser()
        if src.is_file() and src.name.endswith(".zip"):
            archive = src
        elif src.is_dir():
            found = movielens.find_folder(src, layout)
            if found is not None:
                return found, {"from": str(found.resolve())}
            if (src / zip_name).is_file():
                archive = src / zip_name
        if archive is None:
            raise DinbenchError(
                f"--from {src}: expected {zip_name}, or a folder holding {' and '.join(movielens.FILES[layout])} "
                f"(directly or in {top}/)"
            )
        md5_file = archive.with_name(archive.name + ".md5")
        if md5_file.is_file():
            want = parse_md5_file(md5_file.read_text(encoding="ascii", errors="replace"))
            got = md5sum(archive)
            if want and got != want:
                raise DinbenchError(f"{archive} fails its checksum (md5 {got}, {md5_file.name} says {want}); get a fresh copy")
            files[zip_name] = {"from": str(archive.resolve()), "md5": got, "verified": bool(want)}
        else:
            files[zip_name] = {"from": str(archive.resolve()), "verified": False}
            console.print(f"no {md5_file.name} beside {archive.name}: its checksum is not verified (its contents are parsed strictly)")
    else:
        files = _fetch_files(spec, folder, opts, console)
        archive = folder / zip_name
    members = [f"{top}/{f}" for f in movielens.FILES[layout]]
    extracted = safe_extract_zip(archive, folder, members)
    if len(extracted) != len(members):
        raise DinbenchError(f"{archive.name} lacks {', '.join(members)}: not the GroupLens {top} archive")
    return folder / top, {"files": files}


def _amazon_files(spec: DatasetSpec, folder: Path, opts: Options, console: Console) -> tuple[tuple[Path, Path], dict[str, Any]]:
    cat = spec.options["category"]
    names = (amazon.reviews_name(cat), amazon.meta_name(cat))
    if opts.from_path is not None:
        src = Path(opts.from_path).expanduser()
        base = src if src.is_dir() else src.parent
        paths = tuple(base / n for n in names)
        if src.is_file() and src.name not in names:
            raise DinbenchError(f"--from {src}: expected {names[0]} or {names[1]} (or the folder holding them)")
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise DinbenchError(f"--from {src}: {', '.join(missing)} not found in {base}; both {names[0]} and {names[1]} are needed")
        return paths, {"from": str(base.resolve())}
    files = _fetch_files(spec, folder, opts, console)
    return tuple(folder / n for n in names), {"files": files}


def _taobao_file(src: Path | None) -> Path:
    if src is None:
        raise DinbenchError(
            "taobao cannot be downloaded automatically (its publisher requires a login): get UserBehavior.csv "
            "from https://tianchi.aliyun.com/dataset/649, then run: dinbench download taobao --from PATH"
        )
    src = Path(src).expanduser()
    if src.is_dir():
        for name in ("UserBehavior.csv", "UserBehavior.csv.gz"):
            if (src / name).is_file():
                return src / name
        raise DinbenchError(f"--from {src}: no UserBehavior.csv in that folder")
    if not src.is_file():
        raise DinbenchError(f"--from {src}: no such file or folder")
    return src


def obtain(spec: DatasetSpec, data_dir: Path, opts: Options, console: Console) -> dict[str, Any] | None:
    """Get and prepare ``spec``; returns the manifest, or None when it was already prepared."""
    data_dir = Path(data_dir)
    if contract.is_prepared(data_dir, spec.name) and not opts.force:
        console.print(f"{spec.name} is already prepared in {contract.dataset_path(data_dir, spec.name)} (use --force to redo)")
        return None
    if opts.from_path is not None and not Path(opts.from_path).expanduser().exists():
        raise DinbenchError(f"--from {opts.from_path}: no such file or folder")
    if opts.from_path is not None and opts.urls:
        raise DinbenchError("--from and --url exclude each other: --from uses local files and no network")
    # taobao: fails with the how-to before anything is written
    path = _taobao_file(opts.from_path) if spec.local_only else None
    folder = raw_dir(data_dir, spec.name)
    made = [p for p in (folder, folder.parent, data_dir) if not os.path.lexists(p)]  # deepest first
    before = contract.manifest_stamp(data_dir, spec.name)
    _show_licence(spec, folder, console)
    try:
        manifest = _prepare(spec, data_dir, folder, opts, console, path)
    except BaseException as exc:
        # a wrong --from, a failed download, an interrupt: leave no new folder behind, except one
        # holding a partial download (resumed next time)
        _tidy(made, folder, keep_files=opts.from_path is None)
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(_interrupted_line(spec, data_dir, folder, opts, before)) from None
        raise
    _mark_licence(spec, folder)
    return manifest


def _interrupted_line(spec: DatasetSpec, data_dir: Path, folder: Path, opts: Options, before) -> str:
    """What a Ctrl-C during `download` kept: datasets are renamed into place only when whole."""
    where = contract.dataset_path(data_dir, spec.name)
    now = contract.manifest_stamp(data_dir, spec.name)
    if now is not None and now != before:
        return f"download of {spec.name} interrupted after the dataset was written, complete, to {where}; it is ready to use"
    kept = f"the existing dataset in {where} is unchanged" if now is not None else f"no dataset '{spec.name}' was made"
    files = opts.from_path is None and folder.is_dir() and any(p.name != LICENCE_MARK for p in folder.iterdir())
    downloads = f"; the files downloaded so far stay in {folder} and are resumed" if files else ""
    return f"download of {spec.name} interrupted: {kept}{downloads}; run the same command again to continue"


def _prepare(spec: DatasetSpec, data_dir: Path, folder: Path, opts: Options, console: Console,
             path: Path | None) -> dict[str, Any]:
    """The family's preparation of ``spec`` from ``opts.from_path`` or downloads into ``folder``."""
    source: dict[str, Any] = {"kind": spec.family, "dataset": spec.name, "rebuild": f"dinbench download {spec.name} --force"}
    progress, update = _line_progress(console)
    if spec.family == "movielens":
        where, got = _movielens_folder(spec, folder, opts, console)
        with console.status(f"preparing {spec.name} (MovieLens protocol: rating labels, user split)"):
            return movielens.prepare(where, spec.options["layout"], spec.name, data_dir, {**source, **got},
                                     seed=opts.seed, valid_fraction=opts.valid_fraction)
    if spec.family == "amazon":
        paths, got = _amazon_files(spec, folder, opts, console)
        with progress:
            manifest = amazon.prepare(paths, spec.name, data_dir, {**source, **got}, seed=opts.seed,
                                      skip_bad_lines=opts.skip_bad_lines, progress=update)
        for bad in manifest["source"]["read"]["bad_lines"]:
            console.print(f"[yellow]skipped {bad['skipped_lines']:,} malformed line(s) of {bad['file']}[/] "
                          f"(first: {'; '.join(bad['examples'][:2])})", soft_wrap=True)
        return manifest
    if spec.family == "taobao":
        with progress:
            return taobao.prepare(path, spec.name, data_dir, {**source, "from": str(path.resolve())},
                                  positive=opts.positive, seed=opts.seed, progress=lambda n: update("UserBehavior", n))
    raise DinbenchError(f"no preparation for the {spec.family} family")  # pragma: no cover

"""Issue #14, first contact: every bad path or input a new user met is one line naming the path or
option and what to do (exit 2, no traceback; 130 for Ctrl-C), and nothing half-written is left."""

from __future__ import annotations

import errno
import gzip
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from dinbench import paths
from dinbench.prepared import contract
from helpers import assert_user_error
from test_import import amazon_layout

RUN = ("run", "--pooler", "average", "--epochs", "1", "--embedding-dim", "8", "--batch-size", "128")


def _csv(tmp_path: Path, name: str = "in.csv") -> Path:
    path = tmp_path / name
    amazon_layout().to_csv(path, index=False)
    return path


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "plain-file"
    path.write_text("not a folder\n", encoding="utf-8")
    return path


def _left_in(folder: Path) -> list[str]:
    """Everything under ``folder`` (hidden temporary folders and files included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _fingerprint(data: Path, name: str) -> str:
    return contract.read_manifest(data, name)["fingerprint"]


@pytest.fixture
def no_write_access(monkeypatch):
    """``deny(path)``: the OS reports ``path`` as not writable (as for a non-root user without the
    permission; the tests run as root here, where every folder is writable)."""
    real = os.access

    def deny(path: Path) -> None:
        denied = os.path.abspath(path)
        def access(p, mode, **kw):
            return not (mode & os.W_OK and os.path.abspath(p) == denied) and real(p, mode, **kw)

        monkeypatch.setattr(paths.os, "access", access)

    return deny


# --- folders: a file where a folder is needed ---------------------------------------------------

def test_import_data_dir_that_is_a_file(cli, tmp_path):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine", "--data-dir", str(blocker), dirs=False)
    assert_user_error(r, "--data-dir", str(blocker), "is a file, not a folder")
    assert blocker.read_text() == "not a folder\n"


def test_run_data_dir_that_is_a_file(cli, tmp_path):
    invoke, _, results = cli
    blocker = _a_file(tmp_path)
    r = invoke(*RUN, "--dataset", "synthetic", "--data-dir", str(blocker), "--results-dir", str(results), dirs=False)
    assert_user_error(r, "--data-dir", str(blocker), "is a file, not a folder")
    assert not results.exists()


def test_data_dir_under_a_file(cli, tmp_path):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    r = invoke("download", "synthetic", "--users", "150", "--data-dir", str(blocker / "datasets"), dirs=False)
    assert_user_error(r, "--data-dir", f"{blocker} is a file", "choose another --data-dir")


def test_datasets_data_dir_that_is_a_file(cli, tmp_path):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    assert_user_error(invoke("datasets", "--data-dir", str(blocker), dirs=False), "--data-dir", str(blocker), "is a file")


def test_data_dir_from_the_environment_is_named_as_such(cli, tmp_path, monkeypatch):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    monkeypatch.setenv(paths.DATA_ENV, str(blocker))
    assert_user_error(invoke("datasets", dirs=False), f"${paths.DATA_ENV} {blocker} is a file")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_results_dir_that_is_a_file(cli, tiny_data_dir, tmp_path, command):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    r = invoke(command, *RUN[1:], "--dataset", "synthetic", "--data-dir", str(tiny_data_dir),
               "--results-dir", str(blocker), dirs=False)
    assert_user_error(r, "--results-dir", str(blocker), "is a file, not a folder")


def test_report_results_dir_that_is_a_file(cli, tmp_path):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    assert_user_error(invoke("report", "--results-dir", str(blocker), dirs=False), "--results-dir", str(blocker), "is a file")


# --- folders: not writable ----------------------------------------------------------------------

def test_results_dir_not_writable(cli, tiny_data_dir, tmp_path, no_write_access):
    invoke, _, _ = cli
    results = tmp_path / "locked"
    results.mkdir()
    no_write_access(results)
    r = invoke(*RUN, "--dataset", "synthetic", "--data-dir", str(tiny_data_dir), "--results-dir", str(results), dirs=False)
    assert_user_error(r, "--results-dir", str(results), "not writable", "choose another --results-dir")
    assert _left_in(results) == []


def test_data_dir_not_writable(cli, tmp_path, no_write_access):
    invoke, _, _ = cli
    data = tmp_path / "locked"
    data.mkdir()
    no_write_access(data)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine", "--data-dir", str(data), dirs=False)
    assert_user_error(r, "--data-dir", str(data), "not writable", "choose another --data-dir")
    assert _left_in(data) == []


def test_missing_data_dir_whose_parent_is_not_writable(cli, tmp_path, no_write_access):
    invoke, _, _ = cli
    parent = tmp_path / "locked"
    parent.mkdir()
    no_write_access(parent)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine", "--data-dir", str(parent / "datasets"), dirs=False)
    assert_user_error(r, "--data-dir", f"({parent}: permission denied)")
    assert _left_in(parent) == []


def test_really_read_only_results_dir(cli, tiny_data_dir, tmp_path):
    """The same without simulation, where the tests do not run as root."""
    if os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder; test_results_dir_not_writable simulates it")
    invoke, _, _ = cli
    results = tmp_path / "locked"
    results.mkdir()
    results.chmod(0o500)
    try:
        r = invoke(*RUN, "--dataset", "synthetic", "--data-dir", str(tiny_data_dir), "--results-dir", str(results), dirs=False)
    finally:
        results.chmod(0o700)
    assert_user_error(r, "--results-dir", str(results), "not writable")


def test_permission_denied_while_writing_a_dataset_leaves_nothing(cli, tmp_path, monkeypatch):
    """A PermissionError met while writing (not caught by the check up front: e.g. an ACL, a folder
    whose permissions change) is one line naming the path and --data-dir; nothing is left."""
    invoke, data, _ = cli

    def refuse(self, path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", refuse)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine")
    assert_user_error(r, "permission denied", str(data), "--data-dir", "nothing was written", "no dataset 'mine' was made")
    assert _left_in(data) == []


# --- full disk -------------------------------------------------------------------------------------

def _disk_full_on(monkeypatch, table: str):
    real = pd.DataFrame.to_parquet

    def write(self, path, *a, **k):
        if f".tmp-{table}.parquet" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", write)


def test_full_disk_during_import_leaves_nothing(cli, tmp_path, monkeypatch):
    invoke, data, _ = cli
    _disk_full_on(monkeypatch, "train")
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine")
    assert_user_error(r, "is full", str(data), "--data-dir", "nothing was written", "no dataset 'mine' was made")
    assert _left_in(data) == []


def test_full_disk_during_a_forced_reimport_keeps_the_old_dataset(cli, tmp_path, monkeypatch):
    invoke, data, _ = cli
    assert invoke("import", str(_csv(tmp_path)), "--name", "mine").exit_code == 0
    before, files = _fingerprint(data, "mine"), _left_in(data)
    _disk_full_on(monkeypatch, "test")
    other = tmp_path / "other.csv"
    amazon_layout(seed=5).to_csv(other, index=False)
    r = invoke("import", str(other), "--name", "mine", "--force")
    assert_user_error(r, "is full", "nothing was written", "the existing dataset 'mine' is unchanged")
    assert _left_in(data) == files and _fingerprint(data, "mine") == before
    contract.load(data, "mine")  # still whole


def test_full_disk_while_writing_a_run_record_names_the_results_dir(cli, tiny_data_dir, tmp_path, monkeypatch):
    """Any OSError about a path that reaches the CLI is one line naming the option that chose it."""
    from dinbench import train

    invoke, _, results = cli

    def full(run_dir, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "record.json"))

    monkeypatch.setattr(train, "write_record", full)
    r = invoke(*RUN, "--dataset", "synthetic", "--data-dir", str(tiny_data_dir), "--results-dir", str(results), dirs=False)
    assert_user_error(r, f"the disk holding {results}/", "is full", "choose another --results-dir")


# --- report --output -------------------------------------------------------------------------------

def test_report_output_in_a_missing_folder_is_refused_not_created(cli, tmp_path):
    invoke, _, _ = cli
    target = tmp_path / "nonexistent" / "dir" / "x.md"
    r = invoke("report", "--output", str(target))
    assert_user_error(r, "--output", f"the folder {target.parent} does not exist", "create it first")
    assert not (tmp_path / "nonexistent").exists()


def test_report_output_directory_under_a_missing_folder_is_refused(cli, tmp_path):
    invoke, _, _ = cli
    r = invoke("report", "--output", str(tmp_path / "nonexistent" / "report"))
    assert_user_error(r, "--output", "does not exist")
    assert not (tmp_path / "nonexistent").exists()


def test_report_output_under_a_file(cli, tmp_path):
    invoke, _, _ = cli
    blocker = _a_file(tmp_path)
    assert_user_error(invoke("report", "--output", str(blocker / "x.md")), "--output", f"{blocker} is a file, not a folder")


def test_report_output_folder_not_writable(cli, tmp_path, no_write_access):
    invoke, _, _ = cli
    folder = tmp_path / "locked"
    folder.mkdir()
    no_write_access(folder)
    assert_user_error(invoke("report", "--output", str(folder / "x.md")), "--output", "not writable")


def test_report_plots_in_a_missing_folder(cli, tmp_path):
    invoke, _, _ = cli
    assert_user_error(invoke("report", "--plots", str(tmp_path / "nope" / "plots")), "--plots", "does not exist")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, tiny_data_dir):
    """One finished run of `average` on the tiny dataset (a results folder for report)."""
    from typer.testing import CliRunner

    from dinbench.cli import app

    results = tmp_path_factory.mktemp("first-contact") / "results"
    r = CliRunner().invoke(app, [*RUN, "--dataset", "synthetic", "--data-dir", str(tiny_data_dir),
                                 "--results-dir", str(results)])
    assert r.exit_code == 0, r.output
    return results


def test_full_disk_while_writing_a_report_directory_removes_it(cli, one_run, tmp_path, monkeypatch):
    from dinbench import publish

    invoke, _, _ = cli
    out = tmp_path / "report"

    def full(loaded, runs, table, plot_dir, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(plot_dir) / "gauc.png"))

    monkeypatch.setattr(publish, "make_figures", full)
    r = invoke("report", "--results-dir", str(one_run), "--output", str(out), dirs=False)
    assert_user_error(r, "is full", "choose another --output")
    assert not out.exists()


# --- import: bad files and separators --------------------------------------------------------------

def test_truncated_gzip_import(cli, tmp_path):
    invoke, data, _ = cli
    whole = gzip.compress(_csv(tmp_path).read_bytes())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    r = invoke("import", str(cut), "--name", "mine")
    assert_user_error(r, str(cut), "truncated or corrupt", "complete copy")
    assert "Aborted" not in r.output
    assert not contract.is_prepared(data, "mine")


def test_import_of_a_folder_says_it_is_a_folder(cli, tmp_path):
    invoke, _, _ = cli
    folder = tmp_path / "exports"
    folder.mkdir()
    _csv(folder, "interactions.csv")
    r = invoke("import", str(folder), "--name", "mine")
    err = assert_user_error(r, f"{folder} is a folder, not a file", "interactions.csv")
    assert "no such file" not in err


def test_multi_character_separator_is_taken_literally_without_pandas_warning(cli, tmp_path):
    invoke, data, _ = cli
    frame = amazon_layout()
    path = tmp_path / "in.txt"
    path.write_text(frame.to_csv(index=False).replace(",", ";;"), encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = invoke("import", str(path), "--name", "mine", "--sep", ";;")
    assert r.exit_code == 0, r.output
    assert not [w for w in caught if "engine" in str(w.message)], [str(w.message) for w in caught]
    assert "Falling back" not in r.output
    assert contract.load(data, "mine").manifest["counts"]["behaviours"] == len(frame)


def test_separator_regex_characters_are_literal(cli, tmp_path):
    """'||' as a regular expression would split between every character; it is taken literally."""
    invoke, data, _ = cli
    frame = amazon_layout()
    path = tmp_path / "in.txt"
    path.write_text(frame.to_csv(index=False).replace(",", "||"), encoding="utf-8")
    r = invoke("import", str(path), "--name", "mine", "--sep", "||")
    assert r.exit_code == 0, r.output
    assert contract.load(data, "mine").manifest["counts"]["behaviours"] == len(frame)


def test_wrong_separator_hints_at_sep(cli, tmp_path):
    invoke, _, _ = cli
    assert_user_error(invoke("import", str(_csv(tmp_path)), "--name", "mine", "--sep", ";"),
                      "has no column(s)", "--sep", "one column")


# --- import: Ctrl-C --------------------------------------------------------------------------------

def _assert_interrupted(result, *fragments):
    assert result.exit_code == 130, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in result.output, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_ctrl_c_while_writing_an_import_leaves_no_folder(cli, tmp_path, monkeypatch):
    invoke, data, _ = cli
    real = pd.DataFrame.to_parquet
    written = []

    def write(self, path, *a, **k):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(path)
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", write)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine")
    _assert_interrupted(r, "import interrupted", "nothing was written", "no dataset 'mine' was made")
    assert len(written) == 3
    assert _left_in(data) == []


def test_ctrl_c_while_reading_keeps_an_existing_dataset(cli, tmp_path, monkeypatch):
    from dinbench.sources import interactions

    invoke, data, _ = cli
    assert invoke("import", str(_csv(tmp_path)), "--name", "mine").exit_code == 0
    before, files = _fingerprint(data, "mine"), _left_in(data)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(interactions, "read_interactions", interrupted)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine", "--force")
    _assert_interrupted(r, "nothing was written", "the existing dataset 'mine'", "is unchanged")
    assert _left_in(data) == files and _fingerprint(data, "mine") == before


def test_ctrl_c_after_the_dataset_was_written_says_it_is_complete(cli, tmp_path, monkeypatch):
    from dinbench.sources import local

    invoke, data, _ = cli

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "prepared_lines", interrupted)
    r = invoke("import", str(_csv(tmp_path)), "--name", "mine")
    _assert_interrupted(r, "after dataset 'mine' was written, complete", "ready to use")
    contract.load(data, "mine")
    # the re-run now tells the user what the message said
    assert_user_error(invoke("import", str(_csv(tmp_path)), "--name", "mine"), "already exists")


def test_an_interrupted_swap_puts_the_old_dataset_back(tmp_path, monkeypatch):
    from helpers import random_raw

    contract.prepare(random_raw(seed=1), "d", tmp_path, {"kind": "test"})
    before = _fingerprint(tmp_path, "d")
    real, calls = os.rename, []

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder into place: interrupted
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(contract.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        contract.prepare(random_raw(seed=2), "d", tmp_path, {"kind": "test"})
    monkeypatch.undo()
    assert _fingerprint(tmp_path, "d") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_dataset_renamed_into_place_gets_a_normal_folder_mode(cli, tmp_path):
    """The hidden temporary folder is made 0700 (mkdtemp); the dataset must not stay private."""
    invoke, data, _ = cli
    assert invoke("import", str(_csv(tmp_path)), "--name", "mine").exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (data / "mine").stat().st_mode & 0o777 == 0o777 & ~mask


def test_datasets_ignores_hidden_temporary_folders(cli, tmp_path):
    invoke, data, _ = cli
    assert invoke("import", str(_csv(tmp_path)), "--name", "mine").exit_code == 0
    leftover = data / ".tmp-other.abc123"
    leftover.mkdir()
    (leftover / contract.MANIFEST).write_text((data / "mine" / contract.MANIFEST).read_text())
    r = invoke("datasets")
    assert r.exit_code == 0, r.output
    assert "mine" in r.stdout and ".tmp-other" not in r.stdout


# --- names -----------------------------------------------------------------------------------------

def test_run_refuses_a_dataset_name_import_would_refuse(cli):
    invoke, _, results = cli
    err = assert_user_error(invoke(*RUN, "--dataset", "../../etc"), "invalid dataset name '../../etc'", contract.NAME_RULE)
    assert "dinbench import" not in err  # no suggestion that import would refuse
    assert not results.exists()


@pytest.mark.parametrize("name", ["../../etc", ".hidden", "a b", "-x", "a:b"])
def test_run_and_import_apply_the_same_name_rule(cli, tmp_path, name):
    invoke, data, _ = cli
    assert_user_error(invoke("import", str(_csv(tmp_path)), "--name", name), f"invalid dataset name '{name}'",
                      contract.NAME_RULE, "--name")
    assert_user_error(invoke(*RUN, "--dataset", name), f"invalid dataset name '{name}'", contract.NAME_RULE)
    assert _left_in(data) == []


def test_a_name_the_rule_accepts_is_suggested_and_imports(cli, tmp_path):
    invoke, data, _ = cli
    assert_user_error(invoke(*RUN, "--dataset", "my.data_v2"), "dinbench import FILE --name my.data_v2")
    assert invoke("import", str(_csv(tmp_path)), "--name", "my.data_v2").exit_code == 0
    assert contract.is_prepared(data, "my.data_v2")


# --- pooler options, download ----------------------------------------------------------------------

def test_multihead_heads_that_do_not_divide_say_which_do(cli):
    invoke, data, _ = cli
    r = invoke(*RUN[:-4], "--pooler", "multihead", "--heads", "5", "--dataset", "synthetic")
    assert_user_error(r, "--heads 5 does not divide the key width 64", "use --heads 1, 2, 4, 8, 16, 32 or 64",
                      "--embedding-dim that is a multiple of 5")
    assert not data.exists()


def test_multihead_message_for_an_even_head_count_gives_both_groupings():
    from dinbench.poolers.multihead import heads_mismatch

    assert "a multiple of 3 with --attention-groups joint, of 6 with separate" in heads_mismatch(6, 16)


def test_wrong_download_from_leaves_nothing_behind(cli, tmp_path):
    invoke, data, _ = cli
    r = invoke("download", "movielens-1m", "--from", str(_a_file(tmp_path)))
    assert_user_error(r, "--from", "ml-1m.zip")
    assert not data.exists()


def test_wrong_download_from_into_an_existing_data_dir_leaves_it_as_it_was(cli, tmp_path):
    invoke, data, _ = cli
    assert invoke("import", str(_csv(tmp_path)), "--name", "mine").exit_code == 0
    files = _left_in(data)
    wrong = tmp_path / "folder"
    wrong.mkdir()
    assert_user_error(invoke("download", "movielens-100k", "--from", str(wrong)), "--from", "ml-100k.zip")
    assert _left_in(data) == files


def test_ctrl_c_while_preparing_a_download_from_local_files_leaves_nothing(cli, tmp_path, monkeypatch):
    from real_fixtures import write_mlcsv, zip_folder

    from dinbench.sources import movielens

    invoke, data, _ = cli
    archive = zip_folder(write_mlcsv(tmp_path / "src"), tmp_path / "ml-latest-small.zip")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(movielens, "prepare", interrupted)
    r = invoke("download", "movielens-latest-small", "--from", str(archive))
    _assert_interrupted(r, "download of movielens-latest-small interrupted", "no dataset 'movielens-latest-small' was made")
    assert not data.exists()


def test_ctrl_c_during_a_download_keeps_the_partial_file_and_says_so(cli, monkeypatch):
    from dinbench.sources import fetch

    invoke, data, _ = cli

    def cut(urls, target, **kw):  # what download() leaves when Ctrl-C stops a transfer half way
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(str(target) + ".part").write_bytes(b"half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "download", cut)
    monkeypatch.setattr(fetch, "_published_md5", lambda *a, **k: None)
    r = invoke("download", "movielens-latest-small", "--url", "http://127.0.0.1:9/ml-latest-small.zip")
    folder = data / "_downloads" / "movielens-latest-small"
    _assert_interrupted(r, "no dataset 'movielens-latest-small' was made", f"stay in {folder} and are resumed")
    assert _left_in(folder) == ["ml-latest-small.zip.part"]  # no licence mark: the licence shows again next time


# --- the one place that words OSErrors -------------------------------------------------------------

def test_os_error_line_names_the_deepest_option_holding_the_path(tmp_path):
    options = {"--data-dir": tmp_path, "--output": tmp_path / "out"}
    line = paths.os_error_line(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out" / "x.md")), options)
    assert line.startswith("permission denied:") and "choose another --output" in line


def test_os_errors_that_are_not_about_the_users_files_stay_bugs():
    assert paths.os_error_line(OSError(errno.EBADF, "Bad file descriptor", "x")) is None
    assert paths.os_error_line(OSError(errno.ENOSPC, "No space left on device")) is None  # no path to name

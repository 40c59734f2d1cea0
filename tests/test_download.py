"""The download engine against a local HTTP server on 127.0.0.1 (no network): resume, mirrors,
checksums, disk space, and ``dinbench download`` end to end with ``--url``."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from dinbench.errors import DinbenchError
from dinbench.prepared import contract
from dinbench.sources import download as dl
from helpers import assert_user_error
from real_fixtures import write_mlcsv, zip_folder

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client dropping a cut transfer is expected
        pass


class Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support; ``cut[path] = n`` makes the next
    full answer announce the whole length but close after n bytes (an interrupted transfer)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.status: dict[str, int] = {}  # path -> HTTP error status to answer with
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if self.path in server.status:
                    self.send_error(server.status[self.path])
                    return
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                cut = server.cut.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[start:start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(timeout=5)


def fetch(urls, target, **kw):
    return dl.download(urls, target, retries=kw.pop("retries", 2), backoff=0, timeout=5, sleep=lambda s: None, **kw)


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut["/data.bin"] = 300_000
    got = fetch([server.url("/data.bin")], tmp_path / "data.bin", md5=hashlib.md5(PAYLOAD).hexdigest())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert server.requests == [("/data.bin", None), ("/data.bin", "bytes=300000-")]  # resumed, not restarted
    assert got.resumed_from == 300_000 and got.md5 == hashlib.md5(PAYLOAD).hexdigest()


def test_a_part_file_left_by_an_earlier_run_is_resumed(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:123_456])
    fetch([server.url("/data.bin")], tmp_path / "data.bin")
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", "bytes=123456-")]


def test_complete_part_file_answered_416_is_kept(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    fetch([server.url("/data.bin")], tmp_path / "data.bin", md5=hashlib.md5(PAYLOAD).hexdigest())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_server_without_range_support_starts_over(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.ignore_range = True
    (tmp_path / "data.bin.part").write_bytes(b"junk" * 1000)
    fetch([server.url("/data.bin")], tmp_path / "data.bin")
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_removes_the_file(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    with pytest.raises(DinbenchError, match="checksum mismatch") as err:
        fetch([server.url("/data.bin")], tmp_path / "data.bin", md5="0" * 32)
    assert "--from PATH" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_missing_file_goes_to_the_next_mirror(server, tmp_path):
    server.files["/mirror/data.bin"] = PAYLOAD
    got = fetch([server.url("/gone/data.bin"), server.url("/mirror/data.bin")], tmp_path / "data.bin")
    assert got.url.endswith("/mirror/data.bin")
    assert [p for p, _ in server.requests] == ["/gone/data.bin", "/mirror/data.bin"]  # 404 is not retried


def test_server_errors_move_to_the_next_mirror_and_the_error_names_every_url(server, tmp_path):
    server.status["/broken/data.bin"] = 500
    server.files["/mirror/data.bin"] = PAYLOAD
    got = fetch([server.url("/broken/data.bin"), server.url("/mirror/data.bin")], tmp_path / "data.bin")
    assert got.url.endswith("/mirror/data.bin") and (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests].count("/broken/data.bin") == 3  # a 500 is retried, then given up

    urls = [server.url("/broken/data.bin"), server.url("/gone/data.bin")]
    with pytest.raises(DinbenchError) as err:
        fetch(urls, tmp_path / "other.bin")
    message = str(err.value)
    assert "\n" not in message and all(u in message for u in urls), message
    assert "500" in message and "404" in message


def test_retries_then_gives_up_with_one_line(server, tmp_path):
    port = server.httpd.server_address[1]
    server.httpd.shutdown()
    server.httpd.server_close()
    waits = []
    with pytest.raises(DinbenchError, match="could not download data.bin") as err:
        dl.download([f"http://127.0.0.1:{port}/data.bin"], tmp_path / "data.bin", retries=2, backoff=0.5,
                    timeout=2, sleep=waits.append)
    assert waits == [0.5, 1.0]  # exponential backoff between the 3 attempts
    assert "\n" not in str(err.value)
    server.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # for teardown
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()


def test_refuses_when_the_disk_lacks_room(server, tmp_path, monkeypatch):
    server.files["/data.bin"] = PAYLOAD
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DinbenchError, match="not enough disk space"):
        fetch([server.url("/data.bin")], tmp_path / "data.bin", retries=0)
    assert not (tmp_path / "data.bin").exists()


def test_parse_md5_file_both_styles():
    h = "cd245b17a1ae2cc31bb14903e1204af3"
    assert dl.parse_md5_file(f"MD5 (ml-20m.zip) = {h}\n") == h
    assert dl.parse_md5_file(f"{h}  ml-20m.zip\n") == h
    assert dl.parse_md5_file("nothing here") is None


@pytest.fixture
def ml_zip(tmp_path) -> Path:
    folder = write_mlcsv(tmp_path / "src")
    return zip_folder(folder, tmp_path / "ml-latest-small.zip")


def test_cli_download_with_url_verifies_the_published_md5(cli, server, ml_zip):
    invoke, data, _ = cli
    body = ml_zip.read_bytes()
    server.files["/ml/ml-latest-small.zip"] = body
    server.files["/ml/ml-latest-small.zip.md5"] = f"MD5 (ml-latest-small.zip) = {hashlib.md5(body).hexdigest()}\n".encode()
    server.cut["/ml/ml-latest-small.zip"] = len(body) // 2
    r = invoke("download", "movielens-latest-small", "--url", server.url("/ml/ml-latest-small.zip"), "--valid-fraction", "0.5")
    assert r.exit_code == 0, r.output
    assert "licence" in r.stdout and "verified" in r.stdout
    m = contract.read_manifest(data, "movielens-latest-small")
    assert m["source"]["files"]["ml-latest-small.zip"]["md5"] == hashlib.md5(body).hexdigest()
    assert (data / "_downloads" / "movielens-latest-small" / "ml-latest-small.zip").is_file()
    assert any(rng for p, rng in server.requests if p.endswith(".zip"))  # the cut transfer was resumed
    # a second call finds it prepared; --force re-prepares (and downloads again)
    assert "already prepared" in invoke("download", "movielens-latest-small").stdout
    # a corrupted mirror: the published md5 no longer matches -> one error line, nothing kept
    server.files["/ml/ml-latest-small.zip"] = body[:-10] + b"x" * 10
    r = invoke("download", "movielens-latest-small", "--force", "--url", server.url("/ml/ml-latest-small.zip"))
    assert_user_error(r, "checksum mismatch", "removed")
    assert not (data / "_downloads" / "movielens-latest-small" / "ml-latest-small.zip").exists()


def test_cli_download_needs_a_url_naming_each_amazon_file(cli, server):
    invoke, data, _ = cli
    assert_user_error(invoke("download", "amazon-electronics", "--url", server.url("/x/other.gz")),
                      "reviews_Electronics_5.json.gz", "folder URL")


def test_unknown_and_local_only_datasets(cli, tmp_path):
    invoke, data, _ = cli
    assert_user_error(invoke("download", "electronics"), "amazon-electronics", "dinbench import FILE --name NAME")
    assert_user_error(invoke("download", "taobao"), "tianchi", "--from PATH")
    assert_user_error(invoke("download", "movielens-1m", "--from", str(tmp_path / "nope")), "no such file")
    assert not data.exists()

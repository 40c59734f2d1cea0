"""A connection that drops twice mid-file: the third attempt completes from where the second stopped
(local HTTP server on 127.0.0.1, no network; the server approach of tests/test_download.py)."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from dinbench.sources import download as dl

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client dropping a cut transfer is expected
        pass


class DroppingServer:
    """Serves one file with Range support; the n-th request is cut after ``cuts[n]`` bytes (the
    answer announces the full length, then the connection closes), later requests are whole."""

    def __init__(self, body: bytes, cuts: list[int]) -> None:
        self.body, self.cuts = body, list(cuts)
        self.requests: list[str | None] = []  # the Range header of each request
        self.sent: list[int] = []  # body bytes actually written per request
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append(rng)
                body, start = server.body, 0
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.cuts:
                    cut = server.cuts.pop(0)
                    self.wfile.write(body[start:start + cut])
                    self.wfile.flush()
                    server.sent.append(cut)
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])
                server.sent.append(len(body) - start)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/data.bin"


@pytest.fixture
def dropping():
    servers = []

    def make(cuts):
        s = DroppingServer(PAYLOAD, cuts)
        s.thread.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(timeout=5)


def test_connection_drops_twice_and_the_third_try_completes_from_where_it_stopped(dropping, tmp_path):
    server = dropping([300_000, 200_000])
    waits = []
    got = dl.download([server.url()], tmp_path / "data.bin", md5=hashlib.md5(PAYLOAD).hexdigest(),
                      retries=2, backoff=0.5, timeout=5, sleep=waits.append)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD  # byte-identical
    assert not (tmp_path / "data.bin.part").exists()
    # the 2nd request starts where the 1st stopped, the 3rd where the 2nd stopped
    assert server.requests == [None, "bytes=300000-", "bytes=500000-"]
    assert server.sent == [300_000, 200_000, len(PAYLOAD) - 500_000]
    assert waits == [0.5, 1.0]  # two retries, exponential backoff
    assert got.resumed_from == 500_000 and got.md5 == hashlib.md5(PAYLOAD).hexdigest()

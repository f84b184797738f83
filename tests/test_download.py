"""`pydarknet download` against a local HTTP server: resume after a cut, Range ignored, checks, errors."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pydarknet.cli.main import main

DATA = bytes(range(256)) * 1200  # 307200 bytes, every offset distinguishable mod 256
SHA = hashlib.sha256(DATA).hexdigest()


class FileServer:
    """Serves DATA at /file on 127.0.0.1. `ranges`: honour `Range: bytes=N-` (206), else always 200.
    `cut_after`: on the first request, send that many body bytes and close the socket. `status`: answer
    every request with this error instead. `ranges_seen` records each request's Range header."""

    def __init__(self, data: bytes = DATA, ranges: bool = True, cut_after: int | None = None,
                 status: int | None = None) -> None:
        self.data, self.ranges, self.cut_after, self.status = data, ranges, cut_after, status
        self.ranges_seen: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.ranges_seen.append(self.headers.get("Range"))
                if server.status:
                    self.send_error(server.status)
                    return
                data, start = server.data, 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.ranges:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None and len(server.ranges_seen) == 1:
                    body = body[:server.cut_after]
                    self.close_connection = True  # the server closes the socket after these bytes
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file"

    def __enter__(self) -> FileServer:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["download", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_download_verifies_and_renames(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FileServer() as server:
        code, out, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path / "w"),
                             "--sha256", SHA.upper())
    assert (code, err) == (0, "")
    assert (tmp_path / "w" / "my.weights").read_bytes() == DATA
    assert not (tmp_path / "w" / "my.weights.part").exists()
    assert "saved" in out and "verified" in out and str(len(DATA)) in out
    assert server.ranges_seen == [None]


def test_cut_connection_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target, part = tmp_path / "my.weights", tmp_path / "my.weights.part"
    with FileServer(cut_after=100_000) as server:
        code, out, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA)
        assert code == 2
        assert err.count("\n") == 1 and err.startswith(f"pydarknet: {server.url}: ") and "resume" in err
        assert not target.exists()
        assert part.read_bytes() == DATA[:100_000]

        code, out, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA)
    assert (code, err) == (0, "")
    assert server.ranges_seen == [None, "bytes=100000-"]
    assert target.read_bytes() == DATA and not part.exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    part = tmp_path / "my.weights.part"
    part.write_bytes(b"\xff" * 5000)  # would corrupt the file if appended to
    with FileServer(ranges=False) as server:
        code, _, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA)
    assert (code, err) == (0, "")
    assert server.ranges_seen == ["bytes=5000-"]
    assert (tmp_path / "my.weights").read_bytes() == DATA


def test_complete_part_is_finished_without_a_body(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "my.weights.part").write_bytes(DATA)  # killed between the last byte and the rename
    with FileServer() as server:
        code, _, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA)
    assert (code, err) == (0, "")
    assert server.ranges_seen == [f"bytes={len(DATA)}-"]
    assert (tmp_path / "my.weights").read_bytes() == DATA


def test_sha256_mismatch_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with FileServer() as server:
        code, _, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", "0" * 64)
    assert code == 2
    assert err.count("\n") == 1 and f"sha256 {SHA}, expected {'0' * 64}" in err
    assert list(tmp_path.iterdir()) == []


def test_official_size_mismatch_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An official name keeps its known size when --url points elsewhere: a wrong file is refused."""
    with FileServer() as server:
        code, _, err = run(capsys, "yolov2-tiny", "--url", server.url, "-o", str(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and f"{len(DATA)} bytes, expected 44948600" in err
    assert list(tmp_path.iterdir()) == []


def test_existing_verified_target_is_not_fetched_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "my.weights").write_bytes(DATA)
    with FileServer() as server:
        code, out, _ = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA)
        assert code == 0 and "already present" in out and server.ranges_seen == []
        code, out, _ = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path), "--sha256", SHA,
                           "--force")
    assert code == 0 and "saved" in out and server.ranges_seen == [None]


@pytest.mark.parametrize("status", [404, 500])
def test_http_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, status: int) -> None:
    with FileServer(status=status) as server:
        code, _, err = run(capsys, "my.weights", "--url", server.url, "-o", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and f"HTTP {status}" in err
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.weights"
    code, _, err = run(capsys, "x.weights", "--url", url, "-o", str(tmp_path))
    assert code == 2
    assert err == f"pydarknet: {url}: download failed: Connection refused\n"


def test_bad_names_and_hashes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "yolov5", "-o", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "yolov2-tiny-voc" in err and "--url" in err
    code, _, err = run(capsys, "yolov2", "--sha256", "abc", "-o", str(tmp_path))
    assert code == 2 and "64 hexadecimal digits" in err
    code, _, err = run(capsys, "../evil", "--url", "http://127.0.0.1:9/", "-o", str(tmp_path))
    assert code == 2 and "not a file name" in err

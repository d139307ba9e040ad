"""labelbench.data.download.fetch against a local http.server (no internet needed)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from labelbench.data.download import DownloadError, fetch, verify

BODY = b"cifar bytes " * 5000
SHA256 = hashlib.sha256(BODY).hexdigest()
MD5 = hashlib.md5(BODY).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "file.bin").write_bytes(BODY)
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_verifies_and_places_file(server, tmp_path):
    dest = tmp_path / "dl" / "file.bin"
    assert fetch(f"{server}/file.bin", dest, sha256=SHA256, md5=MD5, size=len(BODY), timeout=5) == dest
    assert dest.read_bytes() == BODY
    assert names(dest.parent) == ["file.bin"]  # no temporary file left
    assert verify(dest, sha256=SHA256, md5=MD5.upper(), size=len(BODY)) is None


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(BODY)
    fetch(f"{server}/file.bin", dest, md5=MD5, timeout=5)
    assert _Handler.requests == []
    dest.write_bytes(b"stale")  # fails the check: fetched again and replaced
    fetch(f"{server}/file.bin", dest, md5=MD5, timeout=5)
    assert dest.read_bytes() == BODY and _Handler.requests == ["/file.bin"]


@pytest.mark.parametrize("check", [{"sha256": "0" * 64}, {"md5": "0" * 32}, {"size": len(BODY) - 1}])
def test_wrong_hash_or_size_leaves_nothing(server, tmp_path, check):
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError) as err:
        fetch(f"{server}/file.bin", dest, timeout=5, **check)
    message = str(err.value)
    assert f"{server}/file.bin" in message and str(dest) in message and "by hand" in message
    assert names(tmp_path) == ["www"]


def test_http_error_and_unreachable_port_name_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(f"{server}/missing.bin", tmp_path / "m.bin", timeout=5)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    with pytest.raises(DownloadError) as err:
        fetch(url, tmp_path / "u.bin", md5=MD5, timeout=5)
    assert url in str(err.value) and str(tmp_path / "u.bin") in str(err.value)
    assert err.value.url == url and err.value.dest == str(tmp_path / "u.bin")
    assert isinstance(err.value, RuntimeError)
    assert names(tmp_path) == ["www"]


def test_only_http_urls(tmp_path):
    (tmp_path / "src").write_bytes(BODY)
    with pytest.raises(DownloadError, match="only http"):
        fetch((tmp_path / "src").as_uri(), tmp_path / "dest")
    assert not (tmp_path / "dest").exists()

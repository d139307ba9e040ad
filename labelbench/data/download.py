"""Fetching source files safely: stream to a temporary file beside the destination, check
size and hash, then rename into place. A failed or unverifiable download leaves nothing
behind; every failure is one :class:`DownloadError` naming the URL and the path where the
file can be placed by hand instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0


class DownloadError(RuntimeError):
    """A file could not be downloaded or did not verify."""

    def __init__(self, url: str, dest: os.PathLike | str, problem: str):
        self.url = url
        self.dest = str(dest)
        self.problem = problem
        super().__init__(
            f"could not fetch {url}: {problem}. Download it by hand and place it at {dest} "
            "(it is checked against the expected size/hash when those are known)."
        )


def _hashers(sha256: str | None, md5: str | None) -> dict[str, "hashlib._Hash"]:
    out = {}
    if sha256:
        out["sha256"] = hashlib.sha256()
    if md5:
        out["md5"] = hashlib.md5(usedforsecurity=False)
    return out


def _mismatch(size_seen: int, digests: dict[str, str], *, sha256, md5, size) -> str | None:
    if size is not None and size_seen != size:
        return f"size {size_seen} bytes, expected {size}"
    for name, want in (("sha256", sha256), ("md5", md5)):
        if want and digests[name] != want.lower():
            return f"{name} {digests[name]}, expected {want.lower()}"
    return None


def verify(path: os.PathLike | str, *, sha256: str | None = None, md5: str | None = None,
           size: int | None = None) -> str | None:
    """None when ``path`` is a file matching every given check, else the problem in words."""
    path = Path(path)
    if not path.is_file():
        return "file not found"
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, expected {size}"
    hashers = _hashers(sha256, md5)
    if hashers:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                for h in hashers.values():
                    h.update(chunk)
    digests = {k: h.hexdigest() for k, h in hashers.items()}
    return _mismatch(path.stat().st_size, digests, sha256=sha256, md5=md5, size=size)


def fetch(url: str, dest: os.PathLike | str, *, sha256: str | None = None, md5: str | None = None,
          size: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Download ``url`` to ``dest`` (http/https only) and return ``dest``.

    If ``dest`` exists and passes the known checks (all of ``sha256``, ``md5``, ``size`` that
    are given; with none given, existing is enough) nothing is downloaded. Otherwise the body
    is streamed into a temporary file in dest's folder, checked, and renamed onto ``dest``.
    ``timeout`` (seconds) bounds connecting and each read. Raises :class:`DownloadError`.
    """
    dest = Path(dest)
    if dest.is_file() and verify(dest, sha256=sha256, md5=md5, size=size) is None:
        return dest
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(url, dest, f"only http(s) URLs are fetched, not {scheme or 'no scheme'!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        hashers = _hashers(sha256, md5)
        seen = 0
        try:
            with os.fdopen(fd, "wb") as out:
                request = urllib.request.Request(url, headers={"User-Agent": "labelbench-download"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    while chunk := response.read(CHUNK):
                        seen += len(chunk)
                        if size is not None and seen > size:
                            raise DownloadError(url, dest, f"more than the expected {size} bytes")
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
        except urllib.error.HTTPError as exc:
            raise DownloadError(url, dest, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DownloadError(url, dest, f"network error ({exc.reason})") from None
        except (socket.timeout, TimeoutError) as exc:
            raise DownloadError(url, dest, f"timed out after {timeout} s ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:  # reset, short read, bad status line
            raise DownloadError(url, dest, f"transfer failed ({type(exc).__name__}: {exc})") from None
        problem = _mismatch(seen, {k: h.hexdigest() for k, h in hashers.items()}, sha256=sha256, md5=md5, size=size)
        if problem:
            raise DownloadError(url, dest, f"downloaded file does not verify: {problem}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = ["DownloadError", "fetch", "verify"]

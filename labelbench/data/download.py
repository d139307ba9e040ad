"""Fetching source files safely: download into a temporary file beside the destination, check
size and hash, then rename into place (:func:`labelbench.data.files.atomic_path`). A failed or
unverifiable download leaves nothing behind; every failure is one :class:`DownloadError`
naming the URL and the path where the file can be placed by hand instead.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from labelbench.data.files import StageError, atomic_path, file_hash


class DownloadError(StageError):
    """A file could not be downloaded or did not verify."""

    def __init__(self, url: str, dest: os.PathLike | str, problem: str):
        self.url = url
        self.dest = str(dest)
        super().__init__(f"could not fetch {url}: {problem}. Download it by hand and place it at {dest} "
                         "(it is checked against the expected size/hash when those are known).")


def verify(path: os.PathLike | str, *, sha256: str | None = None, md5: str | None = None,
           size: int | None = None) -> str | None:
    """None when ``path`` is a file matching every given check, else the problem in words."""
    path = Path(path)
    if not path.is_file():
        return "file not found"
    if size is not None and path.stat().st_size != size:
        return f"size {path.stat().st_size} bytes, expected {size}"
    for name, want in (("sha256", sha256), ("md5", md5)):
        if want and (got := file_hash(path, name)) != want.lower():
            return f"{name} {got}, expected {want.lower()}"
    return None


def fetch(url: str, dest: os.PathLike | str, *, sha256: str | None = None, md5: str | None = None,
          size: int | None = None, timeout: float = 60.0) -> Path:
    """Download ``url`` (http/https only) to ``dest`` unless ``dest`` already passes the given checks
    (with none given, existing is enough); ``timeout`` (seconds) bounds connecting and each read.
    Returns ``dest``; raises :class:`DownloadError`."""
    dest = Path(dest)
    if verify(dest, sha256=sha256, md5=md5, size=size) is None:
        return dest
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(url, dest, f"only http(s) URLs are fetched, not {scheme or 'no scheme'!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "labelbench-download"})
    with atomic_path(dest) as tmp:
        try:
            with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
        except urllib.error.HTTPError as exc:
            raise DownloadError(url, dest, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise DownloadError(url, dest, f"network error ({exc.reason})") from None
        except TimeoutError as exc:  # socket.timeout is TimeoutError
            raise DownloadError(url, dest, f"timed out after {timeout} s ({exc})") from None
        except (OSError, http.client.HTTPException) as exc:  # reset, short read, bad status line
            raise DownloadError(url, dest, f"transfer failed ({type(exc).__name__}: {exc})") from None
        problem = verify(tmp, sha256=sha256, md5=md5, size=size)
        if problem:
            raise DownloadError(url, dest, f"downloaded file does not verify: {problem}")
    return dest

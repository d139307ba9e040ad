"""Check that the read-only `published` DVC remote is reachable before `dvc pull`.

The committed url is the relative path ``../../shared/dvc-remote`` (relative to ``.dvc/``), i.e.
``../shared/dvc-remote`` beside the clone. A missing copy gets one clear message saying how to
point the remote elsewhere, instead of DVC's per-file "missing cache" list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from labelbench.ops.dvc_cli import config

REMOTE = "published"
PUBLISHED_DIR_MD5 = "d415820314fa1007e4144762b9b1995f"


def remote_problem(repo_root: str | Path = ".") -> str | None:
    """None when the remote holds the published tree, else a message for the user."""
    repo_root = Path(repo_root).resolve()
    url = config(repo_root).get(f"remote.{REMOTE}.url")
    if url is None:
        return f"no DVC remote named {REMOTE!r} in .dvc/config"
    if "://" in url and not url.startswith("file://"):
        return None  # a real remote (s3, ssh, ...): let dvc pull speak for itself
    path = Path(url.removeprefix("file://"))
    if not path.is_absolute():
        path = (repo_root / ".dvc" / path).resolve()
    index = path / "files" / "md5" / PUBLISHED_DIR_MD5[:2] / f"{PUBLISHED_DIR_MD5[2:]}.dir"
    if index.is_file():
        return None
    where = "does not exist" if not path.exists() else f"does not hold the published tree ({index.name} missing)"
    return (
        f"the read-only DVC remote {REMOTE!r} points at {path}, which {where}.\n"
        f"  It is expected at ../shared/dvc-remote beside this clone. If your copy lives elsewhere, run:\n"
        f"    dvc remote modify --local {REMOTE} url /absolute/path/to/dvc-remote\n"
        f"  (stored in .dvc/config.local, not committed), then rerun the command."
    )


def main() -> int:
    problem = remote_problem(os.getcwd())
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

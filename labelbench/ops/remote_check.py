"""Check a DVC remote before a command that needs it, so a problem is one clear error instead of DVC's.

    python -m labelbench.ops.remote_check              (make pull: the read-only `published` remote)
    python -m labelbench.ops.remote_check storage      (make push, make pull-storage, distribute: the team's S3)

`published`: the committed url is the relative path ``../../shared/dvc-remote`` (relative to ``.dvc/``), i.e.
``../shared/dvc-remote`` beside the clone. A missing copy gets one message saying how to point the remote
elsewhere, instead of DVC's per-file "missing cache" list. Any other remote: :func:`check_remote` (reachable, keys
accepted, bucket present).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from labelbench.ops.dvc_cli import config, dvc

REMOTE = "published"
PUBLISHED_DIR_MD5 = "d415820314fa1007e4144762b9b1995f"


class RemoteError(RuntimeError):
    """A remote that cannot be used: one message naming it, its URL and the fix."""


def remote_problem(repo_root: str | Path = ".") -> str | None:
    """None when the remote holds the published tree, else a message for the user."""
    repo_root = Path(repo_root).resolve()
    if (url := config(repo_root).get(f"remote.{REMOTE}.url")) is None:
        return f"no DVC remote named {REMOTE!r} in .dvc/config"
    if "://" in url and not url.startswith("file://"):
        return None  # a real remote (s3, ssh, ...): let dvc pull speak for itself
    path = Path(url.removeprefix("file://"))
    path = path if path.is_absolute() else (repo_root / ".dvc" / path).resolve()
    if (index := path / "files" / "md5" / PUBLISHED_DIR_MD5[:2] / f"{PUBLISHED_DIR_MD5[2:]}.dir").is_file():
        return None
    where = "does not exist" if not path.exists() else f"does not hold the published tree ({index.name} missing)"
    return (
        f"the read-only DVC remote {REMOTE!r} points at {path}, which {where}.\n"
        f"  It is expected at ../shared/dvc-remote beside this clone. If your copy lives elsewhere, run:\n"
        f"    dvc remote modify --local {REMOTE} url /absolute/path/to/dvc-remote\n"
        f"  (stored in .dvc/config.local, not committed), then rerun the command."
    )


def remote_options(root: Path, remote: str) -> dict[str, str]:
    """The options of ``remote`` as ``dvc config --list`` prints them (every level merged, the later one winning);
    RemoteError when there is no such remote."""
    prefix = f"remote.{remote}."
    options = {name.removeprefix(prefix): value for name, value in config(root).items() if name.startswith(prefix)}
    if "url" not in options:
        raise RemoteError(f"no remote '{remote}' in .dvc/config; see docs/storage.md")
    return options


def describe(remote: str, options: dict[str, str]) -> str:
    where = options.get("url", "?") + (f" at {options['endpointurl']}" if options.get("endpointurl") else "")
    return f"remote '{remote}' ({where})"


def check_remote(root: Path, remote: str, options: dict[str, str]) -> None:
    """``dvc fetch -r <remote> --run-cache --max-size 1``: lists the remote's run-cache (and fetches its entries,
    a few hundred bytes each, and no data: nothing is smaller than one byte), so an unreachable server, refused keys
    or a missing bucket give one RemoteError naming the remote, its URL and the fix. The fix is chosen from the
    S3 client's error text (HTTP status, error code); an unknown one still gives the error, with a generic fix."""
    result = dvc(root, "fetch", "-r", remote, "--run-cache", "--max-size", "1", check=False)
    if result.returncode == 0:
        return
    text = " ".join(line.strip() for line in (result.stderr + result.stdout).splitlines()
                    if line.strip() and "dvc.org/support" not in line)
    if re.search(r"connect|Connection|timed? ?out|Name or service", text):
        fix = ("cannot be reached: start the server (`make storage` for the local one) or correct "
               f"`dvc remote modify --local {remote} endpointurl`")
    elif re.search(r"403|Forbidden|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|PermissionError|signature"
                   r"|credentials", text):
        fix = (f"refused the credentials: set them with `dvc remote modify --local {remote} access_key_id/"
               "secret_access_key` (the local server: `make storage`) or the AWS variables")
    elif re.search(r"NoSuchBucket|bucket", text, re.I):
        fix = "has no such bucket: create it or correct the url"
    else:
        fix = "cannot be read"
    raise RemoteError(f"{describe(remote, options)} {fix} ({text[:300]})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.remote_check", description=__doc__.split("\n")[0])
    parser.add_argument("remote", nargs="?", default=REMOTE, help=f"DVC remote to check (default: {REMOTE})")
    args = parser.parse_args(argv)
    try:
        if args.remote != REMOTE:
            check_remote(Path.cwd(), args.remote, remote_options(Path.cwd(), args.remote))
        elif problem := remote_problem(Path.cwd()):
            raise RemoteError(problem)
    except RemoteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

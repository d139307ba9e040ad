"""Test helpers for the `storage` S3 remote: an in-process moto S3 server on 127.0.0.1, clones of this
checkout whose pipeline is replaced by two tiny stages of their own (so that the tests do not depend on
the project's stages or params), and git clones that share the first clone's remote settings."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from conftest import clone_repo, run

BUCKET = "labelbench"
KEY, SECRET = "testing", "testing"  # moto accepts any key pair

TINY_PIPELINE = {
    "dvc.yaml": """\
stages:
  gen:
    cmd: python tiny/gen.py
    deps: [tiny/gen.py, tiny/seed.txt]
    outs: [tiny/gen]
  total:
    cmd: python tiny/total.py
    deps: [tiny/total.py, tiny/gen]
    outs: [tiny/total.txt]
""",
    # Random bytes: a stage that runs again gives other bytes than the run it was restored from.
    "tiny/gen.py": """\
import os, pathlib
out = pathlib.Path("tiny/gen")
out.mkdir(exist_ok=True)
for i in range(3):
    (out / f"{i}.bin").write_bytes(os.urandom(40_000))
""",
    "tiny/total.py": """\
import hashlib, os, pathlib
files = sorted(pathlib.Path("tiny/gen").iterdir())
pathlib.Path("tiny/total.txt").write_text(hashlib.md5(b"".join(f.read_bytes() for f in files)).hexdigest()
                                          + " " + os.urandom(8).hex() + "\\n")
""",
}
TINY_OUTS = ["tiny/gen/0.bin", "tiny/gen/1.bin", "tiny/gen/2.bin", "tiny/total.txt"]


def tiny_clone(dest: Path) -> Path:
    """:func:`conftest.clone_repo` (this checkout's .dvc/config, Makefile), with the project's stages replaced by two
    tiny ones but for `published` (the authors' data, from the public remote: its dvc.lock entry is kept),
    committed. tiny/seed.txt is random, so that no two clones share run-cache entries."""
    root = clone_repo(dest)
    published = {name: yaml.safe_load((root / name).read_text())["stages"]["published"]
                 for name in ("dvc.yaml", "dvc.lock")}
    for rel, text in {**TINY_PIPELINE, "tiny/seed.txt": secrets.token_hex(8) + "\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    pipeline["stages"] = {"published": published["dvc.yaml"], **pipeline["stages"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"published": published["dvc.lock"]}},
                                                  sort_keys=False))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny pipeline"], root)
    return root


def git_clone(source: Path, dest: Path) -> Path:
    """A git clone of ``source``'s committed state (no workspace data, no DVC cache) with a copy of its
    .dvc/config.local: the same `published` and `storage` settings."""
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    shutil.copy2(source / ".dvc" / "config.local", dest / ".dvc" / "config.local")
    return dest


def connect(repo: Path, endpoint: str, key: str = KEY, secret: str = SECRET) -> None:
    """Point ``repo``'s `storage` remote at an S3-compatible server, as docs/storage.md says."""
    for option, value in (("endpointurl", endpoint), ("access_key_id", key), ("secret_access_key", secret)):
        run(["dvc", "remote", "modify", "--local", "storage", option, value], repo)


def make(target: str, repo: Path, check: bool = True, skip: tuple[str, ...] = ("setup",)):
    """``make <target>`` with this checkout's venv (BIN) and the prerequisites in ``skip`` not remade."""
    args = [f"-o{name}" for name in skip]
    return run(["make", "--no-print-directory", *args, f"BIN={Path(sys.executable).parent}", target], repo, check=check)


def errors(result) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]


def stages_restored(output: str) -> list[str]:
    return re.findall(r"Stage '([^']+)' is cached - skipping run", output)


def object_key(data: bytes) -> str:
    digest = hashlib.md5(data).hexdigest()
    return f"dvc/files/md5/{digest[:2]}/{digest[2:]}"


def in_cache(repo: Path, data: bytes) -> bool:
    digest = hashlib.md5(data).hexdigest()
    return (repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).is_file()


def outputs(repo: Path) -> dict[str, bytes | None]:
    return {rel: (repo / rel).read_bytes() if (repo / rel).is_file() else None for rel in TINY_OUTS}


@pytest.fixture(scope="module")
def moto_s3():
    """An in-process moto S3 server on 127.0.0.1 with the bucket `labelbench`: (endpoint, boto3 client).
    Objects are content-addressed and every tiny_clone has its own seed, so tests can share it."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()

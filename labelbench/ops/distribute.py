"""The crossval matrix on a Ray cluster: one Ray task per `crossval@…` stage whose outputs `storage` lacks.

    python -m labelbench.ops.distribute [--address HOST:PORT] [--remote storage] [--jobs N]   (or: make distribute)

docs/cluster.md describes the design step by step (the "steps" cited below): checks, upstream stages reproduced
here, which folds are done, one task per other fold in a temp clone with two DVC caches, the driver's dvc.lock,
leases, assembly. DVC is used through its public interfaces only: ``dvc`` commands (``python -m dvc`` on the driver;
in a task, the ``dvc`` console script's entry point called in-process, one start-up for its several commands), their
``--json`` and ``--dot`` output, and dvc.lock (a documented format). This code imports no ``dvc.*`` module (the task's
entry-point call loads DVC's CLI into its process, as the console script does), and parses no log line of DVC.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from pydantic import create_model

from labelbench.ops.dvc_cli import dvc, environment
from labelbench.ops.remote_check import RemoteError, check_remote, describe, remote_options
from labelbench.config import Distribute, ParamsError, load_params, read_yaml
from labelbench.data.files import DataError, parse_yaml, read_text, write_text
from labelbench.data.verify import read_lock

LEASES, NAMESPACE, TTL = "labelbench-distribute-leases", "labelbench", 60.0
#: AWS variables of the driver handed to the tasks (credentials from the environment rather than config.local).
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
AWS_KEYS = AWS_ENV[:3]
TASK_DIR_PREFIX = "labelbench-distribute-"
GRACE = 30.0  # seconds an interrupted driver gives its cancelled tasks to clean up before it kills their workers
DistributeParams = create_model("DistributeParams", distribute=Distribute)  # the driver's schema of params.yaml


class DistributeError(RuntimeError):
    """Something to fix before (or instead of) training: one message naming what and how."""


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def check_workspace(root: Path) -> str:
    """HEAD's commit, after checking that the tracked files are HEAD's (the tasks check out HEAD). dvc.lock may
    differ (`dvc repro` writes it), and params.yaml in its `distribute` block only (no stage reads it)."""
    commit = _git(root, "rev-parse", "HEAD").strip()
    changed = [line[3:] for line in _git(root, "status", "--porcelain", "--untracked-files=no").splitlines()
               if line[3:] != "dvc.lock"]
    if "params.yaml" in changed:
        theirs = parse_yaml(_git(root, "show", "HEAD:params.yaml"), "HEAD:params.yaml") or {}
        if read_yaml(root / "params.yaml") | {"distribute": None} == theirs | {"distribute": None}:
            changed.remove("params.yaml")
    if changed:
        raise DistributeError(f"uncommitted changes to {', '.join(changed)}: every task checks out HEAD ({commit[:8]}) "
                              "and would train something else than this workspace; commit or stash them first")
    return commit


def pipeline(root: Path) -> tuple[list[str], dict[str, set[str]]]:
    """The stages of ``dvc dag --dot`` in its order (dvc.yaml's) and each one's direct upstream stages."""
    text = dvc(root, "dag", "--dot").stdout
    nodes = re.findall(r'^\s*"([^"]+)";?\s*$', text, re.M)
    edges = re.findall(r'^\s*"([^"]+)"\s*->\s*"([^"]+)";?\s*$', text, re.M)
    return nodes, {node: {parent for parent, child in edges if child == node} for node in nodes}


def ancestors(parents: dict[str, set[str]], stages: list[str]) -> list[str]:
    """The stages the given ones depend on, directly or not (raw, dedupe, noise, folds), in pipeline order."""
    found, todo = set(), [parent for stage in stages for parent in parents[stage]]
    while todo:
        if (stage := todo.pop()) not in found:
            found.add(stage)
            todo.extend(parents[stage])
    return [stage for stage in parents if stage in found and stage not in stages]


def _edited_lock(root: Path, edit, default: dict) -> str:
    """``root``'s dvc.lock (DVC's documented format; ``default`` when it is absent or empty) read round-trip by
    ruamel.yaml, its ``stages`` mapping replaced by ``edit(stages)``, as text."""
    from ruamel.yaml import YAML

    ruamel, path, stream = YAML(), root / "dvc.lock", io.StringIO()
    ruamel.default_flow_style = False
    data = (ruamel.load(read_text(path)) if path.is_file() else None) or default
    data["stages"] = edit(data.get("stages") or {})
    ruamel.dump(data, stream)
    return stream.getvalue()


def merge_lock(root: Path, entries: dict[str, dict], order: list[str]) -> None:
    """Writes the tasks' dvc.lock entries into ``root``'s dvc.lock (atomically), replacing those of the same stages,
    stages in pipeline order (so two drivers that merged the same entries write the same file)."""
    rank = {name: index for index, name in enumerate(order)}
    write_text(root / "dvc.lock", _edited_lock(root, lambda stages: dict(sorted(
        {**stages, **entries}.items(), key=lambda item: rank.get(item[0], len(rank)))), {"schema": "2.0"}))


def lock_without(root: Path, stages: list[str]) -> str | None:
    """The text of ``root``'s dvc.lock without the entries of ``stages`` (a task's `dvc repro --pull` then restores
    its fold from the run-cache when `storage` has an entry, instead of trying outputs that an entry of the same
    inputs names and retraining when they are not in the remote)."""
    if not (root / "dvc.lock").is_file():
        return None
    return _edited_lock(root, lambda entries: {name: e for name, e in entries.items() if name not in stages}, {})


def done_folds(root: Path, folds: list[str], remote: str) -> set[str]:
    """The folds that need no task: their dvc.lock entry is current (``dvc status --json`` reports nothing but
    their outputs absent from the workspace) and ``dvc status --cloud -r <remote> --json`` finds every output of
    the entry in the remote."""
    local = json.loads(dvc(root, "status", "--json", *folds).stdout or "{}")
    lock = read_lock(root)
    current = [fold for fold in folds if fold in lock and all(
        isinstance(change, dict) and set(change) <= {"changed outs"} for change in local.get(fold, []))]
    if not current:
        return set()
    cloud = json.loads(dvc(root, "status", "--cloud", "-r", remote, "--json", *current).stdout or "{}")
    absent = [path for path, state in cloud.items() if state in ("new", "missing")]
    return {fold for fold in current if not any(path == out["path"] or path.startswith(f"{out['path']}/")
                                                for path in absent for out in lock[fold].get("outs", []))}


def _child(args: list[str], cwd: Path, env: dict) -> str:
    """``python <args>`` in ``cwd``, in a process group of its own (it, DVC's stage commands): killed, group and all,
    when Ray cancels the task (KeyboardInterrupt here). When the Ray worker dies instead, the child dies with it
    (SIGKILL: prctl PR_SET_PDEATHSIG, Linux) and its own child cleans up (:func:`_clean_up_after_the_task_process`)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=(lambda: ctypes.CDLL(None).prctl(1, signal.SIGKILL)) if sys.platform == "linux"
                            else None)
    try:
        while True:
            with contextlib.suppress(subprocess.TimeoutExpired):  # not one blocking read: Ray's cancel lands between
                out, _ = proc.communicate(timeout=1)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.returncode:
        raise RuntimeError(f"the task's dvc process failed ({proc.returncode}):\n{out[-4000:]}")
    return out


def task_environment(repo: Path, driver: dict[str, str], options: dict[str, str]) -> dict[str, str]:
    """A task's environment: the node's, its own AWS settings included (a role, IRSA, a profile, a CA bundle:
    docs/cluster.md), with the driver's AWS variables over it. When the driver hands keys (variables or the remote's
    options) the node's keys go: mixed with them, a node's AWS_SESSION_TOKEN would be sent with the driver's pair."""
    keyed = any(name in driver for name in AWS_KEYS) or "access_key_id" in options
    return {k: v for k, v in environment(repo).items() if not (keyed and k in AWS_KEYS)} | driver


def _clean_up_after_the_task_process(work: Path) -> None:
    """Continues in a child of the task process, which only waits for it: a dying or force-cancelled Ray worker
    SIGKILLs its children (the task process), leaving them no clean-up. The child gets SIGTERM when the task process
    dies (PR_SET_PDEATHSIG), and then kills what DVC started (the stage's training), removes the task's folder (its
    .dvc/config.local holds the remote's keys) and exits. Linux only."""
    if sys.platform != "linux":
        return
    parent = os.getpid()
    if child := os.fork():
        code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        os._exit(code if code >= 0 else 128 - code)

    def handler(signum, frame):
        doomed = psutil.Process().children(recursive=True)
        for proc in doomed:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(doomed, timeout=10)
        shutil.rmtree(work, ignore_errors=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl
        handler(signal.SIGTERM, None)


def remove_stale_task_folders(node: str) -> list[Path]:
    """Removes this node's task folders whose Ray worker is gone (its pid is in the name): a worker killed before its
    task process set up :func:`_clean_up_after_the_task_process` leaves its folder, the remote's keys in it. Returns
    what it removed."""
    stale = [path for path in Path(tempfile.gettempdir()).glob(f"{TASK_DIR_PREFIX}{node[:8]}-*-*")
             if (pid := path.name.split("-")[3]).isdigit() and not psutil.pid_exists(int(pid))]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def train_fold(*, stage: str, key: str, setup: dict, table) -> dict:
    """One fold in a temp clone of the driver's commit (docs/cluster.md, step 4), its phases reported to the lease
    ``table``. Returns where it ran, whether it trained, its timings and the stage's dvc.lock entry.

    ``setup``: bundle (bytes of a git bundle), commit, dvc_lock (text, without the entries of the folds), remote
    (name), remote_options (its options as ``dvc config --list`` gives them), aws_config (text of its configpath file
    or None), env (AWS variables), jobs (DVC's transfer jobs or None), inputs (stage -> the stages whose outputs it
    reads)."""
    import ray

    context = ray.get_runtime_context()
    node = context.get_node_id()
    # the node's shared cache of the fold's inputs: in Ray's temp dir, under the session name (lives with the cluster)
    node_cache = Path(context.get_temp_dir()) / context.get_session_name() / "labelbench-dvc-cache"
    remove_stale_task_folders(node)
    work = Path(tempfile.mkdtemp(prefix=f"{TASK_DIR_PREFIX}{node[:8]}-{os.getpid()}-"))
    repo, timings = work / "repo", {}

    def report(phase: str) -> None:
        table.report.remote(key, phase=phase, node=node, dir=str(repo))

    try:
        start = time.perf_counter()
        report("checkout")
        (work / "head.bundle").write_bytes(setup["bundle"])
        _git(work, "clone", "-q", "--no-checkout", str(work / "head.bundle"), str(repo))
        _git(repo, "-c", "advice.detachedHead=false", "checkout", "-q", setup["commit"])
        if setup["dvc_lock"] is not None:
            (repo / "dvc.lock").write_text(setup["dvc_lock"])
        options = dict(setup["remote_options"])
        if setup["aws_config"] is not None:
            (work / "aws-config").write_text(setup["aws_config"])
            options["configpath"] = str(work / "aws-config")
        task = {"stage": stage, "remote": setup["remote"], "options": options, "node_cache": str(node_cache),
                "inputs": sorted(setup["inputs"][stage]), "jobs": setup.get("jobs")}
        spec = work / "task.json"  # the remote's keys: in a file of mode 600, never on a command line
        spec.touch(mode=0o600)
        spec.write_text(json.dumps(task))
        env = task_environment(repo, setup["env"], options)
        timings["checkout"] = round(time.perf_counter() - start, 3)
        report("training")
        out = _child(["-m", "labelbench.ops.distribute", "--task", str(spec)], repo, env)
        timings.update(json.loads(re.findall(r"^TASK-TIMINGS (.*)$", out, re.M)[-1]))
        timings["total"] = round(time.perf_counter() - start, 3)
        # the training loop's own line (stages/crossval.py prints it): present when the fold was trained, absent
        # when `dvc repro` restored it from the run-cache
        fit = re.search(r"epochs in ([\d.]+) s", out)
        timings["training_loop"] = float(fit.group(1)) if fit else 0.0
        return {"node": node, "trained": bool(fit), "lock": read_lock(repo)[stage], "timings": timings}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def dvc_main(*args: str) -> None:
    """``dvc <args>`` in this process, through the ``dvc`` console script's entry point (DVC's CLI: one start-up for
    a task's several commands); RuntimeError when it fails."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="dvc")
    shown = [arg if index < 5 or args[:2] != ("remote", "modify") else "***" for index, arg in enumerate(args)]
    if script.load()(list(args)):
        raise RuntimeError(f"dvc {' '.join(shown)} failed")


def run_task(spec: Path) -> dict[str, float]:
    """The DVC part of a task, in its clone (the working directory), in this one process (docs/cluster.md, step 4:
    remote set-up, inputs pulled through the node's shared cache, then with the clone's own cache repro, push, push
    --run-cache). Returns the seconds each phase took (after DVC's import)."""
    _clean_up_after_the_task_process(spec.resolve().parent)
    task = json.loads(spec.read_text())
    spec.unlink()
    stage, remote, jobs = task["stage"], task["remote"], (["--jobs", str(task["jobs"])] if task["jobs"] else [])
    timings, start = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 3)

    for option, value in task["options"].items():
        dvc_main("remote", "modify", "--local", remote, option, value)
    dvc_main("remote", "default", "--local", remote)
    os.chmod(".dvc/config.local", 0o600)
    lap("config")
    # hardlinks: checking 1,797 digits images out as copies took 3 s of system time per task here; the inputs are
    # only read, and DVC keeps its cache files read-only (copy where the clone is on another filesystem)
    dvc_main("cache", "dir", "--local", task["node_cache"])
    dvc_main("config", "--local", "cache.type", "hardlink,copy")
    if task["inputs"]:
        dvc_main("pull", "-q", "-r", remote, *jobs, *task["inputs"])
    dvc_main("config", "--local", "--unset", "cache.dir")
    dvc_main("config", "--local", "--unset", "cache.type")
    lap("pull_deps")
    dvc_main("repro", "--pull", "--single-item", stage)
    lap("repro")
    dvc_main("push", "-q", "-r", remote, *jobs, stage)
    lap("push")
    dvc_main("push", "-q", "-r", remote, "--run-cache", *jobs, stage)
    lap("push_run_cache")
    return timings


class Leases:
    """Lease table of the folds being trained on this cluster: key -> owner, stage, expiry and the task's phase."""

    def __init__(self):
        self.leases: dict[str, dict] = {}
        self.granted = 0

    def acquire(self, owner: str, key: str, stage: str, ttl: float) -> str | None:
        """Take the lease of ``key`` for ``owner``: None, or the other driver holding it."""
        held, now = self.leases.get(key), time.time()
        if held and held["owner"] != owner and held["expires"] > now:
            return held["owner"]
        self.leases[key] = {"owner": owner, "stage": stage, "expires": now + ttl, "phase": "queued"}
        self.granted += 1
        return None

    def renew(self, owner: str, ttl: float) -> None:
        for lease in self.leases.values():
            if lease["owner"] == owner:
                lease["expires"] = time.time() + ttl

    def release(self, owner: str, keys: list[str] | None = None) -> None:
        self.leases = {key: lease for key, lease in self.leases.items()
                       if lease["owner"] != owner or keys is not None and key not in keys}

    def report(self, key: str, **info) -> None:
        if key in self.leases:
            self.leases[key].update(info)

    def snapshot(self) -> dict:
        return {"granted": self.granted, "leases": {k: dict(v) for k, v in self.leases.items()}}


def distribute(root: Path, *, address: str | None, remote: str, jobs: int | None = None, console) -> int:
    from labelbench.evaluation.params import check_params  # the driver's only: its tasks need none of it

    check_params(root / "params.yaml")  # every block: the stages that read them run on the tasks or at the end
    settings = load_params(DistributeParams, root / "params.yaml").distribute
    commit = check_workspace(root)
    options = remote_options(root, remote)
    check_remote(root, remote, options)  # reachable, keys accepted: before anything else
    order, parents = pipeline(root)
    folds = [stage for stage in order if stage.startswith("crossval@")]
    if not folds:
        console.print("no crossval@ stages in dvc.yaml: nothing to distribute")
        return 0
    upstream = ancestors(parents, folds)
    import ray

    try:  # before anything is reproduced or pushed
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", namespace=NAMESPACE,
                 logging_level="WARNING", log_to_driver=False)
    except ConnectionError as exc:
        raise DistributeError(f"no Ray cluster: {exc}") from None
    try:
        console.print(f"[bold]{len(folds)} crossval stages[/]; upstream {', '.join(upstream)}: reproducing here "
                      f"and pushing to '{remote}'")
        dvc(root, "repro", "--pull", *upstream)
        try:
            dvc(root, "push", "-r", remote, *upstream)
            dvc(root, "push", "-r", remote, "--run-cache", *upstream)
        except RuntimeError as exc:
            raise DistributeError(f"dvc push -r {remote} of {', '.join(upstream)} failed (write access to "
                                  f"{describe(remote, options)}?): {str(exc)[-1000:]}") from None
        done = done_folds(root, folds, remote)
        todo = [fold for fold in folds if fold not in done]
        console.print(f"{len(done)} of {len(folds)} folds already in '{remote}'; {len(todo)} to train on the cluster")
        if todo:
            if status := _run_tasks(root, todo, parents, order, settings, commit, remote, options, jobs, console):
                return status
            if missing := sorted(set(folds) - done_folds(root, folds, remote)):
                raise DistributeError(f"not in '{remote}' after the tasks: {', '.join(missing)}")
        console.print(f"dvc pull -r {remote} of the folds, then dvc repro --pull: assembling, evaluating")
        dvc(root, "pull", "-q", "-r", remote, *folds)
        stale = sorted(json.loads(dvc(root, "status", "--json", *folds).stdout or "{}"))
        if stale:  # dvc repro would train these here
            raise DistributeError(f"not up to date after dvc pull -r {remote}: {', '.join(stale)}; run again")
        before = {fold: entry for fold, entry in read_lock(root).items() if fold in folds}
        dvc(root, "repro", "--pull")
        retrained = sorted(fold for fold, entry in read_lock(root).items() if fold in before and entry != before[fold])
        console.print("final repro: ran `dvc repro --pull` with every fold up to date"
                      + (f"; [red]retrained {retrained}[/]" if retrained else "; no fold retrained"))
        return 1 if retrained else 0
    finally:
        ray.shutdown()


def _run_tasks(root, todo, parents, order, settings, commit, remote, options, jobs, console) -> int:
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tree = _git(root, "rev-parse", "HEAD^{tree}").strip()  # a fold's lease key: its name and HEAD's tree (step 6)
    keys = {fold: hashlib.sha256(f"{tree}:{fold}".encode()).hexdigest()[:32] for fold in todo}
    bundle = subprocess.run(["git", "bundle", "create", "-q", "-", "HEAD"], cwd=root, check=True,
                            capture_output=True).stdout
    # DVC reads a relative configpath from the config's folder (an absolute one: root / ".dvc" / it is itself)
    configpath = options.get("configpath") and root / ".dvc" / options["configpath"]
    setup = {"bundle": bundle, "commit": commit, "remote": remote, "remote_options": options,
             "dvc_lock": lock_without(root, todo), "inputs": {fold: parents[fold] for fold in todo},
             "aws_config": configpath.read_text() if configpath and configpath.is_file() else None,
             "env": {name: os.environ[name] for name in AWS_ENV if name in os.environ}, "jobs": jobs}
    owner = f"driver-{uuid.uuid4().hex[:8]}"
    table = ray.remote(num_cpus=0)(Leases).options(  # one detached actor on the head node (step 6)
        name=LEASES, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
        resources={"node:__internal_head__": 0.001}).remote()
    task = ray.remote(train_fold).options(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                                         max_retries=settings.max_retries, retry_exceptions=False)
    setup_ref = ray.put(setup)
    console.print(f"Ray cluster: {len(ray.nodes())} node(s), {ray.cluster_resources().get('CPU', 0):g} CPU, "
                  f"{ray.cluster_resources().get('GPU', 0):g} GPU; each fold {settings.num_cpus:g} CPU, "
                  f"{settings.num_gpus:g} GPU, up to {settings.max_retries} retries; driver {owner}")
    pending, running, failures, results = list(todo), {}, {}, []
    renewed = started = time.monotonic()
    # Ctrl-C / SIGTERM set a flag that the loop checks every second (ray.wait's timeout), rather than raising
    # wherever the signal lands, Ray's client calls included: a CI run once saw a SIGINT there have no effect.
    interrupted = []
    previous = {sig: signal.signal(sig, lambda signum, frame: interrupted.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            overall = progress.add_task("folds", total=len(todo))
            rows = {name: progress.add_task(f"  {name}: waiting", total=1) for name in todo}
            while (pending or running) and not interrupted:
                for name in list(pending):
                    holder = ray.get(table.acquire.remote(owner, keys[name], name, TTL))
                    if holder is None:
                        pending.remove(name)
                        running[task.remote(stage=name, key=keys[name], setup=setup_ref, table=table)] = name
                    else:
                        progress.update(rows[name], description=f"  {name}: leased by {holder}, waiting")
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in ready:
                    name = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        failures[name] = str(exc).strip().splitlines()[-1][:500] if str(exc).strip() else repr(exc)
                        progress.update(rows[name], description=f"  {name}: [red]failed[/]")
                        console.print(f"failed {name}: {failures[name]}")
                    else:
                        merge_lock(root, {name: result["lock"]}, order)
                        results.append(result)
                        how = "trained" if result["trained"] else "restored"
                        progress.update(rows[name], completed=1,
                                        description=f"  {name}: {how} on {result['node'][:8]}")
                        t = result["timings"]
                        console.print(f"done {name}: {how} on node {result['node'][:8]} in {t['total']:.1f} s "
                                      f"(clone {t['checkout']:.1f} s, remote set-up {t['config']:.1f} s, inputs "
                                      f"{t['pull_deps']:.1f} s, dvc repro {t['repro']:.1f} s with training loop "
                                      f"{t['training_loop']:.1f} s, push {t['push'] + t['push_run_cache']:.1f} s)")
                    ray.get(table.release.remote(owner, [keys[name]]))
                    progress.advance(overall)
                if time.monotonic() - renewed > TTL / 4:
                    table.renew.remote(owner, TTL)
                    renewed = time.monotonic()
                leases = ray.get(table.snapshot.remote())["leases"]
                for ref, name in running.items():
                    lease = leases.get(keys[name], {})
                    node = f" on {lease['node'][:8]}" if lease.get("node") else ""
                    progress.update(rows[name], description=f"  {name}: {lease.get('phase', 'queued')}{node}")
        if interrupted:
            # without force first: the task kills its process group and removes its folder (_child, train_fold);
            # force (the worker killed; then _clean_up_after_the_task_process does both) after GRACE
            for ref in running:
                ray.cancel(ref)
            for ref in ray.wait(list(running), num_returns=len(running), timeout=GRACE)[1] if running else []:
                ray.cancel(ref, force=True)
            console.print(f"interrupted: {len(results)} of {len(todo)} fold(s) finished and are in '{remote}'; "
                          "run again to train only the rest")
            return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ray.get(table.release.remote(owner), timeout=10)
    trained = sum(result["trained"] for result in results)
    console.print(f"cluster: {trained} fold(s) trained, {len(results) - trained} restored, {len(failures)} failed "
                  f"in {time.monotonic() - started:.1f} s")
    for name, message in failures.items():
        console.print(f"[red]error[/]: {name}: {message}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.distribute", description=__doc__.split("\n")[0])
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else the running cluster)")
    parser.add_argument("--remote", default="storage", help="DVC remote the tasks meet in (default: storage)")
    parser.add_argument("--jobs", type=int, help="DVC's transfer jobs in each task's pull and pushes "
                        "(default: DVC's, 4 per core)")
    parser.add_argument("--task", type=Path, help=argparse.SUPPRESS)  # a task's DVC process (run_task): its spec
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be >= 1")
    if args.task:
        print(f"TASK-TIMINGS {json.dumps(run_task(args.task))}", flush=True)
        return 0
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip()
                or ".")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return distribute(root, address=args.address, remote=args.remote, jobs=args.jobs, console=console)
    except (DistributeError, RemoteError, ParamsError, DataError) as exc:  # DataError: an unreadable dvc.lock
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a dvc command failed (dvc_cli.dvc): the command and the end of its output
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run again to go on (only what is missing is submitted)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

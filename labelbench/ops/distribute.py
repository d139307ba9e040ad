"""The crossval matrix on a Ray cluster: one Ray task per `crossval@…` stage not yet in `storage`.

    python -m labelbench.ops.distribute [--address HOST:PORT] [--remote storage] [--jobs N]   (or: make distribute)

1. Checks before any task: the workspace is HEAD (tracked files; dvc.lock and the `distribute` params block may
   differ), the `distribute` params block, and the remote `storage`: its run-cache folder is listed with DVC's own
   S3 client (``Repo.cloud.get_remote_odb``), so an unreachable server, wrong keys or a missing bucket give one error
   naming the remote, its URL and the fix.
2. The stages upstream of the matrix (raw, dedupe, noise, folds) are reproduced here (``dvc repro --pull``, cheap)
   and pushed to `storage` with the run-cache, so that every task can restore them.
3. A fold is done when `storage` holds a run-cache entry for its current deps/params/cmd (the key DVC files it
   under, ``runs/<key[:2]>/<key>/``): one listing of the remote's ``runs/``, nothing downloaded. DVC has no public
   call for that key; ``dvc.stage.cache._get_stage_hash`` (DVC 3.67.1, pinned) computes it. Were it ever wrong, a
   done fold would only be submitted again and its task would restore it from the run-cache (step 4), not retrain.
4. One Ray task per missing fold (resources and retries from the `distribute` params block), each in a temp clone
   of the driver's exact commit (a git bundle in the object store) with the driver's dvc.lock and `storage` settings
   (credentials included, never printed). Its DVC work runs in one process (``run_task``, DVC's Python API: one
   start-up instead of three ``dvc`` commands): ``dvc pull`` of the stage's DVC-tracked deps only (not the whole
   upstream: e.g. not data/deduped), in one batched call, into a DVC cache that the tasks of a node share (in Ray's
   temp dir, under the cluster's session name), so that a node restores a dataset from `storage` once, not once per
   task, and checked out as hardlinks to that cache; then, with the clone's own cache, ``dvc repro --pull
   --single-item <stage>`` (the fold trained, or restored if some earlier attempt pushed it), ``dvc push -r storage
   <stage>`` and only then ``dvc push -r storage --run-cache``, so a run-cache entry in `storage` always has its
   outputs there. The shared cache receives pulled
   inputs only, never a run-cache entry: ``dvc push --run-cache`` sends every entry of the cache it is given, so
   with one cache for a node's repro and pushes, one task could upload another's fresh entry before that task has
   pushed its outputs. A task whose node or worker dies is rerun by Ray (``max_retries``); a failing training is
   not retried.
5. Leases: a named detached actor on the head node (``labelbench-distribute-leases``) holds one lease per run-cache
   key, renewed by its driver every ``TTL / 4`` and dropped when the task ends, the driver is interrupted, or after
   ``TTL`` without renewal (a dead driver's tasks die with it). A second driver on the same Ray cluster waits for a
   leased fold instead of training it too. Drivers on different clusters sharing one bucket are not coordinated.
6. When every fold is in `storage`: ``dvc repro --pull`` with `storage` as the remote (``Repo(remote=...)``, the
   clone's config untouched) restores every fold from the run-cache, assembles and evaluates.
"""

from __future__ import annotations

import argparse
import ctypes
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
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from labelbench.config import Distribute, ParamsError, load_params, read_yaml

LEASES, NAMESPACE, TTL = "labelbench-distribute-leases", "labelbench", 60.0
#: AWS variables of the driver handed to the tasks (credentials from the environment rather than config.local).
AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION")
TASK_DIR_PREFIX = "labelbench-distribute-"
RAN, RESTORED = re.compile(r"Running stage '([^']+)'"), re.compile(r"Stage '([^']+)' is cached - skipping run")


class DistributeError(RuntimeError):
    """Something to fix before (or instead of) training: one message naming what and how."""


class DistributeParams(BaseModel):
    distribute: Distribute


# --- checks on the driver ------------------------------------------------------------------------------------


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def check_workspace(root: Path) -> str:
    """HEAD's commit, after checking that the tracked files are HEAD's (the tasks check out HEAD). dvc.lock may
    differ (`dvc repro` writes it), and params.yaml in its `distribute` block only (no stage reads it)."""
    commit = _git(root, "rev-parse", "HEAD").strip()
    changed = [line[3:] for line in _git(root, "status", "--porcelain", "--untracked-files=no").splitlines()]
    if "params.yaml" in changed:
        head = _git(root, "show", "HEAD:params.yaml")
        import yaml

        ours = read_yaml(root / "params.yaml")
        theirs = yaml.safe_load(head) or {}
        if {k: v for k, v in ours.items() if k != "distribute"} == {k: v for k, v in theirs.items() if k != "distribute"}:
            changed.remove("params.yaml")
    changed = [path for path in changed if path != "dvc.lock"]
    if changed:
        raise DistributeError(f"uncommitted changes to {', '.join(changed)}: every task checks out HEAD ({commit[:8]}) "
                              "and would train something else than this workspace; commit or stash them first")
    return commit


def _describe(repo, remote: str) -> str:
    conf = repo.config["remote"][remote]
    where = conf.get("url", "?") + (f" at {conf['endpointurl']}" if conf.get("endpointurl") else "")
    return f"remote '{remote}' ({where})"


def remote_runs(repo, remote: str) -> set[str]:
    """Run-cache keys held by ``remote`` (one listing of its ``runs/``); DistributeError when the remote cannot be
    read, naming it, its URL and the fix."""
    if remote not in repo.config["remote"]:
        raise DistributeError(f"no remote '{remote}' in .dvc/config; see docs/storage.md")
    what = _describe(repo, remote)
    try:
        odb = repo.cloud.get_remote_odb(remote, "distribute", hash_name="md5-dos2unix")
        found = list(odb.fs.find(odb.fs.join(odb.path, "runs")))
    except Exception as exc:  # noqa: BLE001 - every failure of the listing is reported as one message
        text = f"{type(exc).__name__}: {exc}"
        if re.search(r"connect|Connection|timed? ?out|Name or service", text):
            fix = ("cannot be reached: start the server (`make storage` for the local one) or correct "
                   f"`dvc remote modify --local {remote} endpointurl`")
        elif re.search(r"403|Forbidden|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|PermissionError|signature|credentials", text):
            fix = (f"refused the credentials: set them with `dvc remote modify --local {remote} access_key_id/"
                   "secret_access_key` (the local server: `make storage`) or the AWS variables")
        elif re.search(r"NoSuchBucket|bucket", text, re.I):
            fix = "has no such bucket: create it or correct the url"
        else:
            fix = "cannot be listed"
        raise DistributeError(f"{what} {fix} ({text.splitlines()[0][:300]})") from None
    return {PurePosixPath(path).parent.name for path in found}


def crossval_stages(repo) -> list:
    return sorted((stage for stage in repo.index.stages if getattr(stage, "name", "").startswith("crossval@")),
                  key=lambda stage: stage.name)


def upstream_of(repo, stages) -> list[str]:
    """Names of the pipeline stages the given stages depend on, directly or not (raw, dedupe, noise, folds)."""
    import networkx as nx

    graph = repo.index.graph
    found = set().union(*(nx.descendants(graph, stage) for stage in stages)) - set(stages)
    return sorted(stage.addressing for stage in found if stage.cmd)


def run_cache_key(stage) -> str:
    """The key under which DVC files the stage's run in the run-cache (deps, params, cmd; module doc, step 3)."""
    from dvc.stage.cache import _get_stage_hash

    stage.save_deps()  # hashes the deps in the workspace, as `dvc repro` does before it looks the stage up
    return _get_stage_hash(stage)


# --- the task (on a worker node) -----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the Ray worker that started it dies (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def _child(args: list[str], cwd: Path, env: dict) -> str:
    """``python <args>`` in ``cwd``, killed with the Ray worker that started it (and its process group)."""
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode:
        raise RuntimeError(f"the task's dvc process failed ({proc.returncode}):\n{out[-4000:]}")
    return out


def node_cache_dir() -> Path:
    """The DVC cache that the tasks of this node share for the fold's inputs: in Ray's temp dir of this node, under
    the cluster's session name, so it lives as long as the cluster (module doc, step 4)."""
    import ray

    context = ray.get_runtime_context()
    return Path(context.get_temp_dir()) / context.get_session_name() / "labelbench-dvc-cache"


def train_fold(*, stage: str, key: str, setup: dict, table=None) -> dict:
    """One fold in a temp clone of the driver's commit (module doc, step 4). Returns what ran and where.

    ``setup``: bundle (bytes of a git bundle), commit, dvc_lock (text), remote (name), remote_config (DVC's
    options of the remote), aws_config (text of its configpath file or None), env (AWS variables), jobs (DVC's
    transfer jobs or None)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    work = Path(tempfile.mkdtemp(prefix=f"{TASK_DIR_PREFIX}{node[:8]}-"))
    timings: dict[str, float] = {}
    report = (lambda phase: table.report.remote(key, phase=phase, node=node, dir=str(work / "repo"))) if table \
        else (lambda phase: None)
    try:
        start = time.perf_counter()
        report("checkout")
        (work / "head.bundle").write_bytes(setup["bundle"])
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(work / "head.bundle"), str(work / "repo")],
                       check=True, capture_output=True)
        repo = work / "repo"
        subprocess.run(["git", "-c", "advice.detachedHead=false", "checkout", "-q", setup["commit"]], cwd=repo,
                       check=True, capture_output=True)
        if setup["dvc_lock"] is not None:
            (repo / "dvc.lock").write_text(setup["dvc_lock"])
        remote = dict(setup["remote_config"])
        if setup["aws_config"] is not None:
            (work / "aws-config").write_text(setup["aws_config"])
            remote["configpath"] = str(work / "aws-config")
        from dvc.config import Config

        with Config(dvc_dir=str(repo / ".dvc"), validate=False).edit("local") as conf:
            conf.setdefault("core", {})["remote"] = setup["remote"]
            conf.setdefault("remote", {})[setup["remote"]] = remote
        os.chmod(repo / ".dvc" / "config.local", 0o600)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **setup["env"],
               "PYTHONPATH": str(repo)}  # the stages import this commit's labelbench
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        timings["checkout"] = round(time.perf_counter() - start, 3)
        report("training")
        args = ["-m", "labelbench.ops.distribute", "--task", stage, "--remote", setup["remote"],
                "--node-cache", str(node_cache_dir())] + (["--jobs", str(setup["jobs"])] if setup.get("jobs") else [])
        out = _child(args, repo, env)
        timings.update(json.loads(re.findall(r"^TASK-TIMINGS (.*)$", out, re.M)[-1]))
        ran, restored = RAN.findall(out), RESTORED.findall(out)
        if set(ran) - {stage}:
            raise RuntimeError(f"{stage}: other stages {sorted(set(ran) - {stage})} ran in the task:\n" + out[-4000:])
        timings["total"] = round(time.perf_counter() - start, 3)
        fit = re.search(r"epochs in ([\d.]+) s", out)  # the training loop's own time, as stages/crossval.py prints it
        timings["training_loop"] = float(fit.group(1)) if fit else 0.0
        return {"stage": stage, "key": key, "node": node, "trained": stage in ran, "restored": stage in restored,
                "timings": timings}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_task(*, stage: str, remote: str, node_cache: Path, jobs: int | None) -> dict[str, float]:
    """The DVC part of a task, in its clone (the working directory), in this one process (module doc, step 4):
    the stage's DVC-tracked deps pulled from ``remote`` into ``node_cache`` and checked out; then, with the clone's
    own cache, ``dvc repro --pull --single-item <stage>`` and ``dvc push`` of its outputs, then of the run-cache.
    Returns the seconds each phase took (after DVC's import)."""
    from dvc.exceptions import OutputNotFoundError
    from dvc.logger import setup
    from dvc.repo import Repo

    setup()
    timings, start = {}, time.perf_counter()

    def lap(name: str) -> None:
        timings[name] = round(time.perf_counter() - start - sum(timings.values()), 3)

    # hardlinks: checking 1,797 digits images out as copies took 3 s of system time per task here; the inputs are
    # only read, and DVC keeps its cache files read-only (copy where the clone is on another filesystem)
    with Repo(".", config={"cache": {"dir": str(node_cache), "type": "hardlink,copy"}}) as repo:
        (target,) = repo.stage.collect(stage)
        deps = []
        for dep in target.deps:
            try:
                repo.find_outs_by_path(dep.fs_path, strict=False)
            except OutputNotFoundError:
                continue  # tracked by git
            deps.append(dep.def_path)
        repo.pull(targets=deps, remote=remote, jobs=jobs)
    lap("pull_deps")
    with Repo(".") as repo:
        repo.reproduce(stage, single_item=True, pull=True)
        lap("repro")
        repo.push(targets=[stage], remote=remote, jobs=jobs)
        lap("push")
        repo.push(targets=[stage], remote=remote, run_cache=True, jobs=jobs)
        lap("push_run_cache")
    return timings


# --- leases (a named detached actor on the head node) ----------------------------------------------------------


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
        for key in list(self.leases):
            if self.leases[key]["owner"] == owner and (keys is None or key in keys):
                del self.leases[key]

    def report(self, key: str, **info) -> None:
        if key in self.leases:
            self.leases[key].update(info)

    def snapshot(self) -> dict:
        return {"granted": self.granted, "leases": {k: dict(v) for k, v in self.leases.items()}}


def lease_table():
    import ray

    actor = ray.remote(num_cpus=0)(Leases)
    return actor.options(name=LEASES, namespace=NAMESPACE, lifetime="detached", get_if_exists=True,
                         resources={"node:__internal_head__": 0.001}).remote()


# --- the driver ----------------------------------------------------------------------------------------------


def _final_repro(root: Path, remote: str) -> tuple[list[str], list[str]]:
    """``dvc repro --pull`` with ``remote`` as the default remote of this call only; (stages run, restored)."""
    import logging

    from dvc.logger import setup
    from dvc.repo import Repo

    setup()
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    keep = Keep(logging.INFO)
    logging.getLogger("dvc").addHandler(keep)
    try:
        with Repo(str(root), remote=remote) as repo:
            repo.reproduce(pull=True)
    finally:
        logging.getLogger("dvc").removeHandler(keep)
    text = "\n".join(lines)
    return RAN.findall(text), RESTORED.findall(text)


def distribute(root: Path, *, address: str | None, remote: str, jobs: int | None = None, console) -> int:
    from dvc.repo import Repo

    settings = load_params(DistributeParams, root / "params.yaml").distribute
    commit = check_workspace(root)
    with Repo(str(root)) as repo:
        remote_runs(repo, remote)  # reachable, keys accepted: before anything else
        stages = crossval_stages(repo)
        upstream = upstream_of(repo, stages)
    if not stages:
        console.print("no crossval@ stages in dvc.yaml: nothing to distribute")
        return 0
    console.print(f"[bold]{len(stages)} crossval stages[/]; upstream {', '.join(upstream)}: reproducing here "
                  f"and pushing to '{remote}'")
    with Repo(str(root)) as repo:
        repo.reproduce(targets=upstream, pull=True)
    with Repo(str(root)) as repo:
        try:
            repo.push(targets=upstream, remote=remote)
            repo.push(targets=upstream, remote=remote, run_cache=True)
        except Exception as exc:  # noqa: BLE001
            raise DistributeError(f"dvc push -r {remote} of {', '.join(upstream)} failed (write access to "
                                  f"{_describe(repo, remote)}?): {exc}") from None
    with Repo(str(root)) as repo:
        present = remote_runs(repo, remote)
        keys = {stage.addressing: run_cache_key(stage) for stage in crossval_stages(repo)}
        remote_config = dict(repo.config["remote"][remote])
    todo = [name for name, key in keys.items() if key not in present]
    console.print(f"{len(keys) - len(todo)} of {len(keys)} folds already in '{remote}'; "
                  f"{len(todo)} to train on the cluster")
    if todo:
        status = _run_tasks(root, todo, keys, settings, commit, remote, remote_config, address, jobs, console)
        if status:
            return status
    with Repo(str(root)) as repo:
        missing = sorted(name for name, key in keys.items() if key not in remote_runs(repo, remote))
    if missing:
        raise DistributeError(f"not in '{remote}' after the tasks: {', '.join(missing)}")
    console.print(f"dvc repro --pull (remote '{remote}'): restoring the folds, assembling, evaluating")
    ran, restored = _final_repro(root, remote)
    retrained = [name for name in ran if name.startswith("crossval@")]
    console.print(f"final repro: ran {len(ran)} stage(s), restored {len(restored)} from the run-cache"
                  + (f"; [red]retrained {retrained}[/]" if retrained else "; no fold retrained"))
    return 1 if retrained else 0


def _run_tasks(root, todo, keys, settings, commit, remote, remote_config, address, jobs, console) -> int:
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bundle = Path(tempfile.mkdtemp(prefix=TASK_DIR_PREFIX)) / "head.bundle"
    subprocess.run(["git", "bundle", "create", "-q", str(bundle), "HEAD"], cwd=root, check=True, capture_output=True)
    configpath = remote_config.get("configpath")
    setup = {"bundle": bundle.read_bytes(), "commit": commit, "remote": remote, "remote_config": remote_config,
             "dvc_lock": (root / "dvc.lock").read_text() if (root / "dvc.lock").is_file() else None,
             "aws_config": Path(configpath).read_text() if configpath and Path(configpath).is_file() else None,
             "env": {name: os.environ[name] for name in AWS_ENV if name in os.environ}, "jobs": jobs}
    shutil.rmtree(bundle.parent)
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", namespace=NAMESPACE,
             logging_level="WARNING", log_to_driver=False)
    owner, table = f"driver-{uuid.uuid4().hex[:8]}", lease_table()
    task = ray.remote(train_fold).options(num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                                         max_retries=settings.max_retries, retry_exceptions=False)
    setup_ref = ray.put(setup)
    console.print(f"Ray cluster: {len(ray.nodes())} node(s), {ray.cluster_resources().get('CPU', 0):g} CPU, "
                  f"{ray.cluster_resources().get('GPU', 0):g} GPU; each fold {settings.num_cpus:g} CPU, "
                  f"{settings.num_gpus:g} GPU, up to {settings.max_retries} retries; driver {owner}")
    pending, running, failures, results = list(todo), {}, {}, []
    renewed = started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            overall = progress.add_task("folds", total=len(todo))
            rows = {name: progress.add_task(f"  {name}: waiting", total=1) for name in todo}
            while pending or running:
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
                        results.append(result)
                        how = "trained" if result["trained"] else "restored"
                        progress.update(rows[name], completed=1,
                                        description=f"  {name}: {how} on {result['node'][:8]}")
                        t = result["timings"]
                        console.print(f"done {name}: {how} on node {result['node'][:8]} in {t['total']:.1f} s "
                                      f"(clone {t['checkout']:.1f} s, inputs {t['pull_deps']:.1f} s, dvc repro "
                                      f"{t['repro']:.1f} s with training loop {t['training_loop']:.1f} s, push "
                                      f"{t['push'] + t['push_run_cache']:.1f} s)")
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
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        done = len(results)
        console.print(f"interrupted: {done} of {len(todo)} fold(s) finished and are in '{remote}'; "
                      "run again to train only the rest")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            ray.get(table.release.remote(owner), timeout=10)
        finally:
            ray.shutdown()
    trained = sum(result["trained"] for result in results)
    console.print(f"cluster: {trained} fold(s) trained, {len(results) - trained} restored, {len(failures)} failed "
                  f"in {time.monotonic() - started:.1f} s")
    if failures:
        for name, message in failures.items():
            console.print(f"[red]error[/]: {name}: {message}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.distribute", description=__doc__.split("\n")[0])
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else the running cluster)")
    parser.add_argument("--remote", default="storage", help="DVC remote the tasks meet in (default: storage)")
    parser.add_argument("--jobs", type=int, help="DVC's transfer jobs in each task's pull and pushes "
                        "(default: DVC's, 4 per core)")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # a task's DVC process (run_task), in its clone
    parser.add_argument("--node-cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: must be >= 1")
    if args.task:
        timings = run_task(stage=args.task, remote=args.remote, node_cache=args.node_cache, jobs=args.jobs)
        print(f"TASK-TIMINGS {json.dumps(timings)}", flush=True)
        return 0
    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True).stdout.strip()
                or ".")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return distribute(root, address=args.address, remote=args.remote, jobs=args.jobs, console=console)
    except (DistributeError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run again to go on (only what is missing is submitted)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Score-method sweep as DVC experiments: queue every valid ``score`` x ``adjust_pred_probs``
variant, run the queue with a few workers, wait, and compare the headline metrics.

    python -m labelbench.ops.sweep [--jobs 2] [--methods self_confidence,entropy] [--dry-run]

Steps (all real ``dvc`` commands, in the repository given by ``--repo``, default ``.``):

1. refuse if the experiment queue already holds queued or running tasks (they would be run by
   our workers and mixed into the wait);
2. ``dvc exp remove`` the experiments of the current baseline that carry this sweep's names
   (``sweep-<method>[-adjusted]``): a rerun **replaces** the previous sweep of the same commit,
   so names stay readable and the table shows one row per variant; experiments of other commits
   are left alone;
3. ``dvc exp run --queue -S score=<m> -S adjust_pred_probs=<b> --name <name> evaluate`` for each
   variant (only the ``evaluate`` stages and what they need: the sweep varies nothing else, and a
   stale training stage is never retrained once per experiment; ``--all-stages`` drops the target);
4. ``dvc queue start -j <jobs>``, then poll the queue (the data of ``dvc queue status``) until
   this sweep's tasks are done (``--timeout``); failed tasks are reported with
   ``dvc queue logs <task>``; workers that vanish while tasks of ours are still queued are
   started again;
5. wait until the workers of this repository have exited: they stop by themselves ~10-20 s after
   the queue empties (stragglers are terminated after ``--grace`` s). No ``dvc queue stop``: its
   shutdown broadcast outlives dead workers and kills the next sweep's workers after one task.
   On a timeout or Ctrl-C this sweep's queued tasks are removed and its running ones killed;
6. ``dvc exp show --json``, rendered as a rich table sorted by mean ensemble AUROC (one row per
   experiment; score, adjust_pred_probs, AUROC / AUPRC per dataset) and written as markdown to
   ``reports/sweep.md`` (atomically).

Exit status: 0 when every experiment succeeded, 1 otherwise (the table of the successful ones is
still printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from labelbench.data.io import write_text
from labelbench.evaluation.scores import ALL_VARIANTS, resolve_method

DEFAULT_PREFIX = "sweep"
DEFAULT_TARGETS = ("evaluate",)
HEADLINE = ("auroc", "auprc")
DONE_STATES = {"Success", "Failed"}
QUEUE_PROCESS_MARKERS = ("queue start", "queue-worker", "exec-run")
HAVE_PROC = Path("/proc/self/cwd").exists()  # Linux: worker processes can be found and waited for


class SweepError(RuntimeError):
    """The sweep could not run or finish; the message says why."""


@dataclass(frozen=True)
class Variant:
    method: str
    adjust_pred_probs: bool

    def name(self, prefix: str = DEFAULT_PREFIX) -> str:
        """Readable experiment name, a valid git ref component.

        >>> Variant("normalized_margin", True).name()
        'sweep-normalized-margin-adjusted'
        >>> Variant("entropy", False).name("s2")
        's2-entropy'
        """
        name = f"{prefix}-{self.method.replace('_', '-')}"
        return f"{name}-adjusted" if self.adjust_pred_probs else name

    def overrides(self) -> list[str]:
        return [f"score={self.method}", f"adjust_pred_probs={str(self.adjust_pred_probs).lower()}"]


def grid(methods: Iterable[str] | None = None) -> list[Variant]:
    """Every valid variant (``labelbench.evaluation.scores.ALL_VARIANTS``), optionally only some methods.

    >>> [v.name() for v in grid(["margin", "entropy"])]
    ['sweep-normalized-margin', 'sweep-normalized-margin-adjusted', 'sweep-entropy']
    >>> len(grid())
    7
    """
    wanted = None if methods is None else {resolve_method(m) for m in methods}
    return [Variant(m, a) for m, a in ALL_VARIANTS if wanted is None or m in wanted]


def check_prefix(prefix: str) -> str:
    """Names become git refs: keep the prefix to letters, digits, '.', '_' and '-'."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", prefix) or ".." in prefix or prefix.endswith("."):
        raise SweepError(f"invalid experiment name prefix {prefix!r}: use letters, digits, '.', '_', '-'")
    return prefix


# --- dvc commands ---------------------------------------------------------------------------


def dvc_env() -> dict:
    """This interpreter's bin first on PATH: `dvc queue start` spawns workers as plain `dvc`."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def dvc_executable() -> str:
    candidate = Path(sys.executable).parent / "dvc"
    return str(candidate) if candidate.is_file() else "dvc"


def queue_command(variant: Variant, name: str, targets: Sequence[str]) -> list[str]:
    cmd = ["dvc", "exp", "run", "--queue"]
    for override in variant.overrides():
        cmd += ["-S", override]
    return cmd + ["--name", name, *targets]


class Dvc:
    """Runs ``dvc`` in one repository; ``echo`` prints each command first."""

    def __init__(self, repo: Path, *, echo: bool = True):
        self.repo = Path(repo)
        self.echo = echo
        self.exe = dvc_executable()
        self.env = dvc_env()

    def __call__(self, args: Sequence[str], *, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
        if self.echo and not quiet:
            print("$ dvc " + " ".join(args), flush=True)
        # Output through files, not pipes: `dvc queue start` leaves daemonized workers holding
        # its stdout/stderr, and reading a pipe to EOF would wait for them to exit.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            code = subprocess.run([self.exe, *args], cwd=self.repo, env=self.env, stdout=out,
                                  stderr=err, stdin=subprocess.DEVNULL).returncode
            out.seek(0), err.seek(0)
            result = subprocess.CompletedProcess(args, code, out.read(), err.read())
        if check and result.returncode != 0:
            raise SweepError(
                f"`dvc {' '.join(args)}` failed ({result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()}"
            )
        return result


# --- queue status ---------------------------------------------------------------------------


def queue_tasks(repo: Path) -> dict[str, tuple[str, str]]:
    """{task rev: (name, status)} of the repository's experiment queue, status one of Queued,
    Running, Success, Failed.

    The same data ``dvc queue status`` prints, read through DVC's API: the command also pings
    every worker node the queue ever had, and with no worker alive those ping messages pile up
    in ``.dvc/tmp/exps/celery/broker`` (and each call waits 1 s for replies)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        return {t["rev"]: (t.get("name") or "", t["status"])
                for t in dvc_repo.experiments.celery_queue.status()}


def queue_processes(repo: Path) -> list[tuple[int, str]]:
    """(pid, command line) of the dvc queue processes working in ``repo`` (Linux /proc): the
    `dvc queue start` wrappers, `dvc exp queue-worker`s and `dvc exp exec-run`s."""
    root = Path(repo).resolve()
    found = []
    proc = Path("/proc")
    if not HAVE_PROC:
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if "dvc" not in cmdline or not any(m in cmdline for m in QUEUE_PROCESS_MARKERS):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == root or root in cwd.parents:
            found.append((int(entry.name), cmdline))
    return sorted(found)


def wait_for_workers_to_exit(repo: Path, *, grace: float) -> None:
    """Queue workers exit by themselves ~10-20 s after the queue empties; wait for that, then
    terminate (and kill) whatever dvc queue process of this repository is left.

    Deliberately no ``dvc queue stop``: it broadcasts a shutdown that stays in the broker for
    every worker node not alive to read it, and the next ``dvc queue start`` of the repository
    then gets workers that quit after their first experiment (the rest stay queued forever)."""
    if not HAVE_PROC:  # cannot see the workers: give them the time they take to quit on their own
        time.sleep(min(grace, 25))
        return
    started = time.monotonic()
    deadline = started + grace
    while queue_processes(repo) and time.monotonic() < deadline:
        time.sleep(0.5)
    if not queue_processes(repo):
        print(f"  [{time.strftime('%H:%M:%S')}] queue workers exited after {time.monotonic() - started:.0f} s",
              flush=True)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = queue_processes(repo)
        if not left:
            return
        for pid, cmdline in left:
            print(f"warning: dvc queue process {pid} still running {grace:.0f} s after the sweep "
                  f"({cmdline}); sending {signal.Signals(sig).name}", file=sys.stderr)
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(3)
    if queue_processes(repo):
        raise SweepError(f"dvc queue processes still running: {queue_processes(repo)}")


# --- the sweep ------------------------------------------------------------------------------


def baseline_experiments(dvc: Dvc) -> set[str]:
    """Names of the experiments of the current baseline commit (HEAD)."""
    out = dvc(["exp", "list", "--name-only"], quiet=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def queue_all(dvc: Dvc, variants: Sequence[Variant], names: Sequence[str],
              targets: Sequence[str]) -> dict[str, str]:
    """Queue each variant; returns {task rev: name} of the new tasks."""
    before = queue_tasks(dvc.repo)
    busy = {t: v for t, v in before.items() if v[1] not in DONE_STATES}
    if busy:
        listing = ", ".join(f"{name or rev[:7]} ({state})" for rev, (name, state) in busy.items())
        raise SweepError(
            f"the experiment queue is not empty: {listing}. Wait for it, or clear it with "
            "`dvc queue remove --queued` / `dvc queue kill <task>`, then rerun the sweep."
        )
    existing = sorted(baseline_experiments(dvc) & set(names))
    if existing:
        dvc(["exp", "remove", *existing])
    queued = []
    try:
        for variant, name in zip(variants, names):
            dvc(queue_command(variant, name, targets)[1:])
            queued.append(name)
    except BaseException:
        if queued:  # leave no half sweep in the queue
            dvc(["queue", "remove", *queued], check=False)
        raise
    after = queue_tasks(dvc.repo)
    ours = {t: v[0] for t, v in after.items() if t not in before and v[0] in names}
    if sorted(ours.values()) != sorted(names):
        raise SweepError(f"queued {sorted(names)} but the queue shows {sorted(ours.values())}")
    return ours


def wait(dvc: Dvc, tasks: dict[str, str], *, jobs: int, timeout: float, poll: float,
         restarts: int = 3, orphan_polls: int = 3) -> dict[str, str]:
    """Poll the queue until every task is Success or Failed -> {name: status}.

    Workers found gone while tasks of ours are still queued (e.g. a stale ``dvc queue stop``
    in the broker shut them down) are started again, at most ``restarts`` times."""
    deadline = time.monotonic() + timeout
    last, idle = None, 0
    while True:
        status = queue_tasks(dvc.repo)
        states = {name: status.get(task, (name, "Unknown"))[1] for task, name in tasks.items()}
        summary = ", ".join(f"{sum(s == n for s in states.values())} {n.lower()}"
                            for n in ("Queued", "Running", "Success", "Failed", "Unknown")
                            if n in states.values())
        if summary != last:
            print(f"  [{time.strftime('%H:%M:%S')}] {summary}", flush=True)
            last = summary
        if all(s in DONE_STATES for s in states.values()):
            return states
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sweep did not finish within {timeout:.0f} s: {states}")
        idle = 0 if not HAVE_PROC or queue_processes(dvc.repo) else idle + 1
        if idle >= orphan_polls:  # no worker alive, yet tasks of ours are not done
            stuck = sorted(n for n, s in states.items() if s not in DONE_STATES)
            if "Queued" not in states.values() or restarts <= 0:
                raise SweepError(f"no dvc queue worker is alive but {', '.join(stuck)} did not finish "
                                 f"({states}); see `dvc queue status` / `dvc queue logs <name>`")
            print(f"  workers gone with {', '.join(stuck)} unfinished: starting them again", flush=True)
            dvc(["queue", "start", "-j", str(jobs)])
            restarts, idle = restarts - 1, 0
        time.sleep(poll)


def abort(dvc: Dvc, tasks: dict[str, str]) -> None:
    """Kill this sweep's running tasks and drop its queued ones."""
    status = queue_tasks(dvc.repo)
    running = [t for t in tasks if status.get(t, ("", ""))[1] == "Running"]
    queued = [t for t in tasks if status.get(t, ("", ""))[1] == "Queued"]
    if queued:
        dvc(["queue", "remove", *queued], check=False)
    if running:
        dvc(["queue", "kill", *running], check=False)


# --- the table ------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    score: str
    adjust_pred_probs: bool
    metrics: dict[str, dict[str, float]]  # dataset -> {auroc, auprc, ...}

    @property
    def mean_auroc(self) -> float:
        values = [m["auroc"] for m in self.metrics.values()]
        return sum(values) / len(values) if values else float("nan")


def rows_from_show(show: list, names: Iterable[str]) -> list[Row]:
    """`dvc exp show --json` -> one Row per experiment of ``names`` that has metrics, sorted by
    mean headline AUROC (best first). Datasets are the ``metrics/<dataset>.json`` files that hold
    a top-level ``auroc``, in the order of the experiment's ``datasets`` param."""
    wanted = set(names)
    rows = []
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                if rev.get("name") not in wanted or not rev.get("data"):
                    continue
                data = rev["data"]
                params = data["params"]["params.yaml"]["data"]
                metrics = {}
                order = {f"metrics/{d}.json": i for i, d in enumerate(params.get("datasets") or {})}
                entries = sorted(data.get("metrics", {}).items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
                for path, entry in entries:
                    values = (entry or {}).get("data") or {}
                    match = re.fullmatch(r"metrics/(.+)\.json", path)
                    if match and "auroc" in values:
                        metrics[match[1]] = {k: values[k] for k in HEADLINE if k in values}
                rows.append(Row(rev["name"], params["score"], bool(params.get("adjust_pred_probs", False)), metrics))
    return sorted(rows, key=lambda r: (-r.mean_auroc, r.name))


def datasets_of(rows: Sequence[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for dataset in row.metrics:
            seen.setdefault(dataset)
    return list(seen)


def _cells(row: Row, datasets: Sequence[str]) -> list[str]:
    cells = [row.name, row.score, str(row.adjust_pred_probs).lower()]
    for dataset in datasets:
        m = row.metrics.get(dataset, {})
        cells += [f"{m[k]:.4f}" if k in m else "-" for k in HEADLINE]
    return cells + [f"{row.mean_auroc:.4f}"]


def rich_table(rows: Sequence[Row], *, title: str):
    """One row per experiment; per dataset one "AUROC / AUPRC" column (keeps four datasets within
    ~150 characters); the best AUROC of each dataset in bold."""
    from rich.table import Table

    datasets = datasets_of(rows)
    best = {d: max((r.metrics[d]["auroc"] for r in rows if d in r.metrics), default=None) for d in datasets}
    table = Table(title=title, title_justify="left")
    for column in ("experiment", "score", "adjust"):
        table.add_column(column, no_wrap=True)
    for dataset in datasets:
        table.add_column(f"{dataset}\nAUROC / AUPRC", justify="right", no_wrap=True)
    table.add_column("mean\nAUROC", justify="right", no_wrap=True)
    for row in rows:
        cells = [row.name, row.score, str(row.adjust_pred_probs).lower()]
        for dataset in datasets:
            m = row.metrics.get(dataset, {})
            auroc = f"{m['auroc']:.4f}" if "auroc" in m else "-"
            if "auroc" in m and m["auroc"] == best[dataset]:
                auroc = f"[bold]{auroc}[/bold]"
            cells.append(f"{auroc} / {m['auprc']:.4f}" if "auprc" in m else auroc)
        table.add_row(*cells, f"{row.mean_auroc:.4f}")
    return table


def markdown_table(rows: Sequence[Row], *, title: str) -> str:
    datasets = datasets_of(rows)
    header = ["experiment", "score", "adjust_pred_probs"]
    header += [f"{d} {k.upper()}" for d in datasets for k in HEADLINE] + ["mean AUROC"]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":--"] * 3 + ["--:"] * (len(header) - 3)) + "|"]
    lines += ["| " + " | ".join(_cells(row, datasets)) + " |" for row in rows]
    note = ("Headline (ensemble) metrics of metrics/<dataset>.json per experiment, sorted by mean "
            "AUROC over the datasets. Regenerate with `make sweep`.")
    return "\n".join(lines + ["", note, ""])


# --- CLI ------------------------------------------------------------------------------------


def run_sweep(args) -> int:
    variants = grid(args.methods)
    prefix = check_prefix(args.prefix)
    names = [v.name(prefix) for v in variants]
    targets = [] if args.all_stages else list(args.target or DEFAULT_TARGETS)
    dvc = Dvc(Path(args.repo))

    if args.dry_run:
        print("# dry run: would remove earlier experiments of HEAD named", " ".join(names))
        for variant, name in zip(variants, names):
            print(" ".join(queue_command(variant, name, targets)))
        print(f"dvc queue start -j {args.jobs}")
        print(f"# poll the queue status every {args.poll:g} s (timeout {args.timeout:g} s), "
              f"then wait for the workers to exit (at most {args.grace:g} s)")
        print(f"dvc exp show --json  # -> table, {args.output}")
        return 0

    started = time.monotonic()
    tasks: dict[str, str] = {}
    finished = False
    try:
        tasks = queue_all(dvc, variants, names, targets)
        dvc(["queue", "start", "-j", str(args.jobs)])
        states = wait(dvc, tasks, jobs=args.jobs, timeout=args.timeout, poll=args.poll)
        finished = True
    finally:
        if tasks and not finished:
            abort(dvc, tasks)
        if tasks:
            wait_for_workers_to_exit(dvc.repo, grace=args.grace)
    elapsed = time.monotonic() - started

    failed = [name for name, state in states.items() if state != "Success"]
    for task, name in tasks.items():
        if name in failed:
            logs = dvc(["queue", "logs", task], check=False, quiet=True)
            print(f"\n--- experiment {name} failed; dvc queue logs {task[:7]} ---", file=sys.stderr)
            print((logs.stdout + logs.stderr).rstrip()[-args.log_chars:], file=sys.stderr)

    show = json.loads(dvc(["exp", "show", "--json"]).stdout)
    rows = rows_from_show(show, [n for n in names if n not in failed])
    missing = sorted(set(names) - set(failed) - {r.name for r in rows})
    if missing:
        print(f"error: `dvc exp show --json` has no metrics for {', '.join(missing)}", file=sys.stderr)
    title = f"Score sweep: {len(rows)} experiments, {args.jobs} workers, {elapsed:.0f} s"
    if rows:
        from rich.console import Console

        width = args.width or (None if sys.stdout.isatty() else 160)
        Console(width=width).print(rich_table(rows, title=title))
        output = Path(args.repo) / args.output
        write_text(output, markdown_table(rows, title="Score sweep"))
        print(f"Markdown table: {args.output}")
    if failed:
        print(f"error: {len(failed)} of {len(names)} experiments failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labelbench.ops.sweep",
        description="Queue every score x adjust_pred_probs variant as a DVC experiment, run the "
                    "queue, and print the comparison table (also written to reports/sweep.md).",
    )
    parser.add_argument("--jobs", "-j", type=int, default=2, help="queue workers (default 2)")
    parser.add_argument("--methods", type=lambda s: [m for m in s.split(",") if m],
                        help="comma-separated score methods (aliases accepted); default all. Each "
                             "method runs with adjust_pred_probs=false, and =true where supported")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="experiment name prefix (default sweep)")
    parser.add_argument("--target", action="append",
                        help="stage (group) each experiment reproduces; repeatable; default evaluate")
    parser.add_argument("--all-stages", action="store_true", help="reproduce the whole pipeline in each experiment")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the queue (default 3600)")
    parser.add_argument("--poll", type=float, default=2, help="seconds between `dvc queue status` polls")
    parser.add_argument("--grace", type=float, default=60,
                        help="seconds the idle queue workers get to exit by themselves before they "
                             "are terminated (default 60; they normally exit within ~20 s)")
    parser.add_argument("--output", default="reports/sweep.md", help="markdown table, relative to --repo")
    parser.add_argument("--repo", default=".", help="DVC repository (default: current directory)")
    parser.add_argument("--width", type=int, default=0,
                        help="console width of the printed table (default: the terminal's, else 160)")
    parser.add_argument("--log-chars", type=int, default=4000, help="tail of a failed task's log shown")
    parser.add_argument("--dry-run", action="store_true", help="print the dvc commands, run nothing")
    args = parser.parse_args(argv)
    try:
        if args.jobs < 1:
            raise SweepError("--jobs must be at least 1")
        return run_sweep(args)
    except ValueError as exc:  # unknown method
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: this sweep's tasks were killed / removed and the workers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Wall time and peak memory of the README workflow on a fresh clone, set-up excluded, and the
experiment against a two-stage toy `dvc exp run` timed in the same run.

Clones this checkout into a temp folder (reusing this virtualenv, no cache, no run-cache), then
times, each from process start to outputs written:

1. plain ``dvc pull`` + ``dvc repro`` + the headline table: what `make reproduce` runs after set-up
   (the trained outputs come from the public remote; only the uncached evaluation outputs rebuild);
2. ``dvc exp run -S score=margin`` in that clone;
3. ``dvc exp run -S n=2`` in a toy repo of two tiny python stages and one param (DVC's own cost).

Peak memory is the largest max RSS of any process each phase started. When the public remote does
not yet hold every cached output of this checkout's dvc.lock (a change retrained something on
purpose and the maintainers have not run `make publish`), the clone reads from a temporary copy
of it into which `make publish` pushed this checkout's cache first, as the maintainers would.

    python benchmarks/bench_workflow.py [--repeat 3]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import DVC_REMOTE, REPO_ROOT, clone_repo, make, venv_env  # noqa: E402

# Runs a shell command and reports its time and the peak RSS of its process tree (children).
MEASURE = (
    "import json, resource, subprocess, sys, time; s = time.perf_counter(); "
    "subprocess.run(sys.argv[1], shell=True, check=True, stdout=subprocess.DEVNULL); "
    "print(json.dumps([time.perf_counter() - s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
)
TOY_DVC_YAML = """stages:
  first:
    cmd: python -c "import yaml; n = yaml.safe_load(open('params.yaml'))['n']; open('a.txt', 'w').write(str(n))"
    params: [n]
    outs: [a.txt]
  second:
    cmd: python -c "open('b.txt', 'w').write(open('a.txt').read() * 2)"
    deps: [a.txt]
    metrics: [b.txt: {cache: false}]
"""


def sh(cmd: str, cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, shell=True, check=True, env=venv_env(), capture_output=True)


def measure(cmd: str, cwd: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, cmd], cwd=cwd, env=venv_env(), check=True,
                         capture_output=True, text=True).stdout
    seconds, peak = json.loads(out.strip().splitlines()[-1])
    return seconds, peak


def toy_repo(root: Path) -> Path:
    root.mkdir()
    (root / "params.yaml").write_text("n: 1\n")
    (root / "dvc.yaml").write_text(TOY_DVC_YAML)
    sh("git init -q && git config user.email b@e && git config user.name b && dvc init -q && dvc repro -q "
       "&& git add -A && git commit -qm toy", root)
    return root


def published_copy(tmp: Path) -> Path:
    """A copy of the public remote with this checkout's cached outputs and run-cache published into it."""
    import shutil

    public = shutil.copytree(DVC_REMOTE, tmp / "public")
    publisher = clone_repo(tmp / "publisher")
    sh(f"dvc cache dir --local {REPO_ROOT / '.dvc' / 'cache'} && dvc remote modify --local published url {public}",
       publisher)
    make("publish", publisher)
    return public


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="experiment timings, best of N")
    args = parser.parse_args()
    if not DVC_REMOTE.is_dir():
        print(f"error: no DVC remote at {DVC_REMOTE}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        repo = clone_repo(Path(tmp) / "clone")
        if subprocess.run(["dvc", "status", "-c", "-r", "published", "-q"], cwd=REPO_ROOT, env=venv_env(),
                          capture_output=True).returncode != 0:
            print("the public remote lacks outputs of dvc.lock: publishing this checkout's into a copy of it")
            sh(f"dvc remote modify --local published url {published_copy(Path(tmp))}", repo)
        full = measure("dvc pull -q && dvc repro -q && python stages/show.py", repo)
        toy = toy_repo(Path(tmp) / "toy")
        experiment, baseline = [], []
        for i in range(args.repeat):  # interleaved, so both see the same machine load
            experiment.append(measure(f"dvc exp run -q -S score={('margin', 'cwe')[i % 2]}", repo))
            baseline.append(measure(f"dvc exp run -q -S n={i + 2}", toy))
    exp_best, toy_best = min(experiment), min(baseline)
    print(f"fresh clone: dvc pull + dvc repro + table (set-up excluded): {full[0]:6.1f} s, peak {full[1]:5.0f} MiB")
    print(f"dvc exp run -S score=margin|cwe (best of {args.repeat}):            {exp_best[0]:6.1f} s, "
          f"peak {exp_best[1]:5.0f} MiB")
    print(f"two-stage toy dvc exp run (best of {args.repeat}):                  {toy_best[0]:6.1f} s")
    print(f"experiment / toy: {exp_best[0] / toy_best[0]:.1f}x (target <= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

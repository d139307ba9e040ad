"""Wall time and peak memory of the README workflow on a fresh clone, set-up excluded.

Clones this checkout into a temp folder (reusing this virtualenv) with no outputs and no
run-cache, then times:

1. ``dvc pull`` + ``dvc repro`` + the headline table: what `make reproduce` runs after set-up on a
   fresh clone, training digits on the CPU included;
2. the same with the trained outputs already there (pulled from storage, or a second clone): the
   evaluation half only (score, evaluate, benchmark, report) after deleting its outputs;
3. ``dvc exp run -S score=margin``.

Peak memory is the largest max RSS of any process each phase started.

    python benchmarks/bench_workflow.py
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import DVC_REMOTE, clone_repo, venv_env  # noqa: E402

# Runs a shell command and reports its time and the peak RSS of its process tree (children).
MEASURE = (
    "import json, resource, subprocess, sys, time; s = time.perf_counter(); "
    "subprocess.run(sys.argv[1], shell=True, check=True, stdout=subprocess.DEVNULL); "
    "print(json.dumps([time.perf_counter() - s, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
)
EVALUATION_OUTPUTS = ("rm -rf data/scores/*.csv data/scores/*.json metrics/* plots/pr plots/roc plots/lift "
                      "plots/*.png reports/*.md .dvc/cache/runs")


def measure(cmd: str, cwd: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, cmd], cwd=cwd, env=venv_env(), check=True,
                         capture_output=True, text=True).stdout
    seconds, peak = json.loads(out.strip().splitlines()[-1])
    return seconds, peak


def main() -> int:
    if not DVC_REMOTE.is_dir():
        print(f"error: no DVC remote at {DVC_REMOTE}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        repo = clone_repo(Path(tmp))
        subprocess.run(f"{EVALUATION_OUTPUTS} data/raw data/deduped data/noisy data/folds data/crossval "
                       "data/trained .dvc/cache", cwd=repo, shell=True, check=True)
        full = measure("dvc pull -q data/published.dvc && dvc repro -q && python stages/show.py", repo)
        subprocess.run(EVALUATION_OUTPUTS, cwd=repo, shell=True, check=True)
        evaluation = measure("dvc repro -q && python stages/show.py", repo)
        subprocess.run("git add -A && git commit -q --allow-empty -m baseline", cwd=repo, shell=True,
                       check=True, env=venv_env())
        experiment = measure("dvc exp run -q -S score=margin", repo)
    print(f"fresh clone, pull + repro + table (digits trained on CPU): {full[0]:6.1f} s, peak {full[1]:5.0f} MiB")
    print(f"evaluation half only (trained outputs present):          {evaluation[0]:6.1f} s, peak {evaluation[1]:5.0f} MiB"
          "  (targets < 30 s, < 1024 MiB)")
    print(f"dvc exp run -S score=margin:                             {experiment[0]:6.1f} s, peak {experiment[1]:5.0f} MiB"
          "  (target < 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

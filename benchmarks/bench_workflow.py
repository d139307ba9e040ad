"""Wall time and peak memory of the README workflow on a fresh clone, set-up excluded.

Clones this checkout into a temp folder (reusing this virtualenv), then times
``dvc pull`` + ``dvc repro`` + the headline table (what `make reproduce` runs after set-up) and
``dvc exp run -S score=margin``. Peak memory is the largest child process's max RSS.

    python benchmarks/bench_workflow.py
"""

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import DVC_REMOTE, clone_repo, venv_env  # noqa: E402


def timed(cmd, cwd) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=venv_env(), check=True, capture_output=True, shell=True)
    return time.perf_counter() - start


def main() -> int:
    if not DVC_REMOTE.is_dir():
        print(f"error: no DVC remote at {DVC_REMOTE}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        repo = clone_repo(Path(tmp))
        # a clean slate: no outputs, no run-cache
        subprocess.run("rm -rf data/scores/*.csv data/scores/*.json metrics/* plots/pr plots/roc plots/lift "
                       "plots/*.png reports/*.md .dvc/cache", cwd=repo, shell=True, check=True)
        reproduce = timed("dvc pull -q data/published.dvc && dvc repro -q && python stages/show.py", repo)
        subprocess.run("git add -A && git commit -q --allow-empty -m baseline", cwd=repo, shell=True, check=True, env=venv_env())
        experiment = timed("dvc exp run -q -S score=margin", repo)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"make reproduce after set-up (pull + repro + table): {reproduce:6.1f} s (target < 30 s)")
    print(f"dvc exp run -S score=margin:                        {experiment:6.1f} s (target < 15 s)")
    print(f"peak memory of any stage process:                   {peak:6.0f} MiB (target < 1024 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

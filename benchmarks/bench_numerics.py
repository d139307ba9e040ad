"""Cost of host-independent numpy and OpenBLAS numerics in the multiannotator stage: pinned vs not pinned.

    python benchmarks/bench_numerics.py [--repeat 2]

Each run is the stage's own command (dvc.yaml, committed params: CIFAR-10N's 50,000 images, CROWDLAB per model
and ensemble, Dawid-Skene, GLAD), timed from process start to its outputs written (imports included), interleaved:

* pinned: ``python stages/multiannotator.py ...`` as `dvc repro` runs it: one OpenBLAS thread, OpenBLAS's SSE3
  kernels, numpy's baseline loops (labelbench/evaluation/numerics.py);
* not pinned: the same stage in a process that loads numpy first (so OpenBLAS picks this processor's kernels and
  one thread per core, and numpy its instruction sets) with the check skipped: bytes that depend on the host.

Needs ``data/published`` (``dvc pull data/published``). Prints each run with the md5 of its multiannotator.csv,
the best and median of each variant and the ratio pinned / not pinned. Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fold_runs import REPO, report

#: The unpinned variant: numpy loaded before the pins, the check skipped.
UNPINNED = """
import runpy, sys
import numpy  # first: numpy and OpenBLAS pick this host's paths
import labelbench.evaluation.numerics as numerics
numerics.check = lambda: None
sys.argv = ["stages/multiannotator.py", *sys.argv[1:]]
runpy.run_path("stages/multiannotator.py", run_name="__main__")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if not (REPO / "data/published/cifar-10n-agg").is_dir():
        sys.exit("data/published missing: dvc pull data/published")
    from labelbench.evaluation.numerics import PINS

    env = {k: v for k, v in os.environ.items() if k not in PINS}
    variants = {"pinned": [sys.executable, "stages/multiannotator.py"], "not pinned": [sys.executable, "-c", UNPINNED]}
    runs: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for name, argv in variants.items():
                out = Path(tmp) / f"{name.replace(' ', '_')}_{r}"
                start = time.perf_counter()
                subprocess.run([*argv, "--published", "data/published", "--out", str(out), "--section",
                                str(out / "multiannotator.md")], cwd=REPO, env=env, check=True, capture_output=True)
                runs[name].append(time.perf_counter() - start)
                digest = hashlib.md5((out / "multiannotator.csv").read_bytes()).hexdigest()[:12]
                print(f"run {r + 1} {name:>12}: {runs[name][-1]:6.1f} s  multiannotator.csv md5 {digest}…", flush=True)
    report(runs, what="the multiannotator stage", ratio=("pinned", "not pinned"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

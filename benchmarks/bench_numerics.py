"""Cost of host-independent numpy and OpenBLAS numerics in the evaluation stages: pinned vs not pinned.

    python benchmarks/bench_numerics.py [--stages evaluate benchmark issues report] [--repeat 3]

Each run is a stage's own command (dvc.yaml, committed params), timed from process start to its outputs written
(imports included), the two variants interleaved, in a copy of the workspace (``host_environments.workspace_copy``):

* pinned: ``python stages/<stage>.py ...`` as `dvc repro` runs it: one OpenBLAS thread, OpenBLAS's SSE3 kernels,
  numpy's baseline loops (labelbench/evaluation/numerics.py);
* not pinned: the same stage in a process that loads numpy first (so OpenBLAS picks this processor's kernels and
  one thread per core, and numpy its instruction sets) with the check skipped: bytes that depend on the host.

Needs the pipeline's outputs in the workspace (``make reproduce``). Prints each run with one md5 of every file the
stage wrote, then per stage the best and median of each variant and the ratio pinned / not pinned.
``--stages multiannotator`` times CROWDLAB, Dawid-Skene and GLAD on CIFAR-10N (about 160 s a run).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from fold_runs import REPO, report
from host_environments import STAGES, outputs, workspace_copy

#: The unpinned variant: numpy loaded before the pins, the check skipped; argv[1] is the stage's script.
UNPINNED = """
import runpy, sys
import numpy  # first: numpy and OpenBLAS pick this host's paths
import labelbench.evaluation.numerics as numerics
numerics.check = lambda: None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def outputs_md5(copy: Path, paths: list[str]) -> str:
    """One md5 over every file the stage wrote (names and bytes, in name order)."""
    files = sorted(f for p in paths for f in ([copy / p] if (copy / p).is_file() else (copy / p).rglob("*"))
                   if f.is_file())
    return hashlib.md5(b"".join(str(f.relative_to(copy)).encode() + f.read_bytes() for f in files)).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=["evaluate", "benchmark", "issues", "report"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from labelbench.evaluation.numerics import PINS

    env = {k: v for k, v in os.environ.items() if k not in PINS}
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    with tempfile.TemporaryDirectory() as tmp:
        copy = workspace_copy(Path(tmp))
        for stage in args.stages:
            words = stages[stage]["cmd"].split()[1:]  # after "python"
            variants = {"pinned": [sys.executable, *words], "not pinned": [sys.executable, "-c", UNPINNED, *words]}
            runs: dict[str, list[float]] = {name: [] for name in variants}
            for r in range(args.repeat):
                for name, argv in variants.items():
                    start = time.perf_counter()
                    subprocess.run(argv, cwd=copy, env=env, check=True, capture_output=True)
                    runs[name].append(time.perf_counter() - start)
                    digest = outputs_md5(copy, outputs(stages[stage]))[:12]
                    print(f"{stage} run {r + 1} {name:>12}: {runs[name][-1]:6.1f} s  outputs md5 {digest}…",
                          flush=True)
            report(runs, what=f"the {stage} stage", ratio=("pinned", "not pinned"))
            for path in outputs(stages[stage]):  # the committed bytes again, which later stages verify
                shutil.rmtree(copy / path) if (copy / path).is_dir() else (copy / path).unlink()
                (shutil.copytree if (REPO / path).is_dir() else shutil.copy2)(REPO / path, copy / path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

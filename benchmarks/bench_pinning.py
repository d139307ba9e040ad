"""Cost of host-independent CPU training: one digits fold, pinned (as the stage runs) vs not pinned.

    python benchmarks/bench_pinning.py [--repeat 3] [--fold 0]

Each run is the crossval stage's own command for fold F of digits (committed params: test_resnet, 10 epochs,
16 px, 1,797 images), timed from process start to the fold folder written (imports included), interleaved:

* pinned: ``python stages/crossval.py ...`` as `dvc repro` runs it: ATen's portable kernels, MKL CBWR
  COMPATIBLE, oneDNN off, one thread (labelbench/train/host.py, ``torch_settings``);
* not pinned: the same ``main`` in a process that loads torch first (so ATen dispatches by the host's
  instruction set and MKL by its processor) with oneDNN left on and the host check skipped: what training
  did before the pins (one thread too), i.e. bytes that depend on the host.

Needs the digits inputs (``dvc pull raw@digits noise@digits folds@digits``). Prints each run, the best and
median of each variant, and the ratio pinned / not pinned. Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

#: The unpinned variant: torch loaded before labelbench, oneDNN back on inside torch_settings, no host check.
UNPINNED = """
import contextlib, runpy, sys
import torch  # first: ATen and MKL pick the host's fastest paths
import labelbench.train.crossval as crossval
crossval.host.check = lambda: None
settings = crossval.torch_settings
@contextlib.contextmanager
def with_onednn(config, device):
    with settings(config, device):
        torch.backends.mkldnn.enabled = True
        yield
crossval.torch_settings = with_onednn
sys.argv = ["stages/crossval.py", *sys.argv[1:]]
runpy.run_path("stages/crossval.py", run_name="__main__")
"""


def stage_args(fold: int, out: Path) -> list[str]:
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["crossval"]["cmd"]
    words = cmd.replace("${item.dataset}", "digits").replace("${item.model}", "test_resnet").replace(
        "${item.fold}", str(fold)).split()
    words[words.index("--out") + 1] = str(out)
    return words[2:]  # after "python stages/crossval.py"


def timed(argv: list[str], out: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    start = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return seconds, hashlib.md5((out / "model.safetensors").read_bytes()).hexdigest()[:12]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fold", type=int, default=0)
    args = parser.parse_args()
    if not (REPO / "data/raw/digits/images").is_dir():
        sys.exit("digits inputs missing: dvc pull raw@digits noise@digits folds@digits")
    runs: dict[str, list[float]] = {"pinned": [], "not pinned": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for variant in runs:
                out = Path(tmp) / f"{variant.replace(' ', '_')}_{r}"
                rest = stage_args(args.fold, out)
                argv = ([sys.executable, "stages/crossval.py", *rest] if variant == "pinned"
                        else [sys.executable, "-c", UNPINNED, *rest])
                seconds, digest = timed(argv, out)
                runs[variant].append(seconds)
                print(f"run {r + 1} {variant:>10}: {seconds:6.1f} s  model.safetensors md5 {digest}…", flush=True)
    load = os.getloadavg()[0]
    for variant, times in runs.items():
        print(f"{variant:>10}: best {min(times):.1f} s, median {statistics.median(times):.1f} s over {len(times)}")
    print(f"pinned / not pinned: best {min(runs['pinned']) / min(runs['not pinned']):.2f}x, median "
          f"{statistics.median(runs['pinned']) / statistics.median(runs['not pinned']):.2f}x "
          f"(digits fold {args.fold}, process start to outputs written; load average {load:.1f} after)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

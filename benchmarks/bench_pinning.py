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
import os
import sys

from fold_runs import interleaved, report

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fold", type=int, default=0)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")}
    runs = interleaved({"pinned": lambda rest: [sys.executable, "stages/crossval.py", *rest],
                        "not pinned": lambda rest: [sys.executable, "-c", UNPINNED, *rest]},
                       fold=args.fold, repeat=args.repeat, env=env)
    report(runs, what=f"digits fold {args.fold}", ratio=("pinned", "not pinned"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of the paired bootstrap: the benchmark stage with and without intervals, side by side.

Both run as fresh subprocesses, timed from process start to outputs written (imports, loading the
published datasets, every score variant × dataset × model, 6 ensembles × 5 cleanlab variants, the 7
``find_label_issues`` filters per pair, then benchmark.csv / filters.csv / summary.json):

(a) without intervals: ``run_benchmark(..., bootstrap=None)`` + ``write_outputs``;
(b) with intervals: the same with ``bootstrap=Bootstrap(resamples=B, seed=0, level=0.95)``
    (the stage's default B = 1,000 resamples per dataset, every row).

Interleaved runs (a burst of load hits both), best of N each; prints seconds, the ratio (target
<= 3x, and <= 60 s with intervals), CPU seconds and the peak RSS of the run's largest process
(main process or a pool worker; the workers share the parent's resample weights, so the RSS of
each counts those pages once per process). Checks that the point-estimate columns of (b) equal (a)'s
exactly.

    python benchmarks/bench_bootstrap.py [--published data/published] [--repeat 3] [--resamples 1000]
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_benchmark_stage import DATASETS, MODELS, REPO, print_timings, timed_run

RUNNER = """
import pathlib, sys
from labelbench.evaluation.benchmark import run_benchmark, write_outputs
from labelbench.evaluation.params import Bootstrap
datasets, lift_k, workers, resamples, out = eval(sys.argv[1])
bootstrap = Bootstrap(resamples=resamples, seed=0, level=0.95) if resamples else None
table, filters = run_benchmark(datasets, lift_k=lift_k, workers=workers, bootstrap=bootstrap)
write_outputs(table, filters, pathlib.Path(out), lift_k=lift_k, bootstrap=bootstrap)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published", default="data/published")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    published = Path(args.published).resolve()
    if not (published / DATASETS[0]).is_dir():
        print(f"error: {published} has no datasets; run `dvc pull -r published` first", file=sys.stderr)
        return 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    datasets = {name: (str(published), MODELS) for name in DATASETS}
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        plain_dir, boot_dir = Path(tmp, "plain"), Path(tmp, "bootstrap")
        plain, boot = [], []
        for _ in range(args.repeat):
            plain.append(timed_run(RUNNER, [repr((datasets, 100, args.workers, 0, str(plain_dir)))], env))
            boot.append(timed_run(RUNNER, [repr((datasets, 100, args.workers, args.resamples, str(boot_dir)))], env))
        a = pd.read_csv(plain_dir / "benchmark.csv", float_precision="round_trip")
        b = pd.read_csv(boot_dir / "benchmark.csv", float_precision="round_trip")
        assert b[a.columns].equals(a), "point estimates differ with the bootstrap"
        rows, columns = b.shape
    (t_plain, _, cpu_plain), (t_boot, _, cpu_boot) = min(plain), min(boot)
    print(f"work: {len(DATASETS)} published datasets x {len(MODELS)} models, {rows} rows; "
          f"bootstrap B = {args.resamples} per dataset, every row ({columns} columns); workers = {args.workers}")
    print_timings(
        "`python -c <runner>` from spawn to exit (imports, loading, all rows, filters, outputs written)",
        {"without intervals": plain, "with intervals   ": boot},
        f"ratio (wall, best vs best): {t_boot / t_plain:.2f}x (target <= 3x); CPU: {cpu_boot / cpu_plain:.2f}x; "
        f"with intervals {'within' if t_boot <= 60 else 'over'} 60 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

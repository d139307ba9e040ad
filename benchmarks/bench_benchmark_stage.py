"""Speed of the benchmark stage's computation against the straightforward approach.

Same inputs, same run: for every dataset × model × method variant and every ensemble scheme ×
cleanlab variant, (a) ``labelbench.evaluation.benchmark.run_benchmark`` (scores computed once, one sort per
score vector, a process pool over both cores) and (b) ``reference_benchmark`` (cleanlab score,
then scikit-learn ``roc_auc_score`` / ``average_precision_score`` and the authors' lift, one process).
Checks that every number agrees to 1e-9, then prints both times and the ratio (target ≥ 5×).

    python benchmarks/bench_benchmark_stage.py [--published data/published] [--repeat 3]
"""

import argparse
import resource
import sys
import time
from pathlib import Path

from labelbench.evaluation.benchmark import run_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import reference_benchmark  # noqa: E402  the test oracle is the baseline

DATASETS = ["roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s"]
MODELS = ["resnet18", "resnet50d", "efficientnet_b1", "twins_pcpvt_base", "swin_base_patch4_window7_224"]
KEY = ["dataset", "model", "method", "adjust_pred_probs"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published", default="data/published")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the fast path")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (Path(args.published) / DATASETS[0]).is_dir():
        print(f"error: {args.published} has no datasets; run `dvc pull data/published.dvc` first", file=sys.stderr)
        return 1
    datasets = {name: (args.published, MODELS) for name in DATASETS}

    fast_times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        fast, _ = run_benchmark(datasets, filters=False, workers=args.workers)
        fast_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    reference = reference_benchmark(datasets)
    reference_time = time.perf_counter() - start

    merged = fast.merge(reference, on=KEY, suffixes=("", "_ref"), validate="one_to_one")
    assert len(merged) == len(fast) == len(reference), "row sets differ"
    worst = max((merged[m] - merged[f"{m}_ref"]).abs().max()
                for m in ("auroc", "auprc", "lift_at_100", "lift_at_num_errors"))
    assert worst <= 1e-9, f"numbers disagree by {worst}"

    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    best = min(fast_times)
    print(f"rows: {len(fast)} (score vectors), max |difference| vs reference: {worst:.2e}")
    print(f"straightforward (cleanlab + scikit-learn, 1 process): {reference_time:7.2f} s")
    print(f"benchmark stage ({args.workers} workers, best of {args.repeat}):        {best:7.2f} s")
    print(f"speed-up: {reference_time / best:.1f}x (target >= 5x)")
    print(f"peak RSS: main process {peak_self:.0f} MiB, largest worker {peak_children:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end speed of the benchmark stage against the straightforward cleanlab + scikit-learn loop.

Both run as fresh subprocesses and are timed from process start to outputs written (imports,
loading, every score variant × dataset × model, 6 ensembles × 5 cleanlab variants, the 7
``find_label_issues`` filters per dataset × model, then benchmark.csv / filters.csv / summary.json):

(a) fast: ``run_benchmark`` + ``write_outputs`` of ``labelbench.evaluation.benchmark``, the code path
    of ``stages/benchmark.py`` (a tiny runner here, so this script does not depend on the stage's CLI);
(b) straightforward: ``tests/reference.py``'s ``reference_benchmark`` (cleanlab scores, scikit-learn
    AUROC / AP, the authors' lift, cleanlab's ensembles) and ``reference_filters``
    (``find_label_issues`` per filter_by with default settings, scikit-learn precision / recall / F1),
    one process, written with the same ``write_outputs``.

Checks that every number of the two outputs agrees (max |difference| <= 1e-9, flag counts equal),
then prints best-of-N wall times, the ratio (target >= 10x) and each run's peak RSS (largest
process of the run: the main process or a worker).

    python benchmarks/bench_benchmark_stage.py [--published data/published] [--repeat 5] [--reference-repeat 1]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s"]
MODELS = ["resnet18", "resnet50d", "efficientnet_b1", "twins_pcpvt_base", "swin_base_patch4_window7_224"]
ENSEMBLES = [
    "avg_pred_probs", "avg_pred_probs_weighted_by_accuracy", "avg_pred_probs_weighted_by_inv_log_loss",
    "avg_scores", "avg_scores_weighted_by_accuracy", "avg_scores_weighted_by_inv_log_loss",
]
LIFT_K = 100

FAST = """
import pathlib, sys
from labelbench.evaluation.benchmark import run_benchmark, write_outputs
datasets, ensembles, lift_k, workers, out = eval(sys.argv[1])
table, filters = run_benchmark(datasets, lift_k=lift_k, ensembles=ensembles, workers=workers)
write_outputs(table, filters, pathlib.Path(out), lift_k=lift_k)
"""

STRAIGHTFORWARD = """
import pathlib, sys
sys.path.insert(0, sys.argv[2])
from reference import reference_benchmark, reference_filters
from labelbench.evaluation.benchmark import write_outputs
datasets, ensembles, lift_k, workers, out = eval(sys.argv[1])
table = reference_benchmark(datasets, lift_k=lift_k, ensembles=ensembles)
filters = reference_filters(datasets)
write_outputs(table, filters, pathlib.Path(out), lift_k=lift_k)
"""


def timed_run(code: str, args: list[str], env: dict) -> tuple[float, float, float]:
    """Wall seconds from spawn to exit, the peak RSS (MiB) of the run's largest process, and the
    CPU seconds (user + system) of the run with its workers: less sensitive to a busy machine."""
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this run only (its workers included)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"run failed ({proc.returncode}):\n{log.read()}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def best_of(label: str, runs: list[tuple[float, float, float]]) -> str:
    """One line: best wall time of ``runs`` (from :func:`timed_run`), every run, CPU and peak RSS of the best."""
    wall, rss, cpu = min(runs)
    return (f"{label}: best of {len(runs)} {wall:7.2f} s   (all: {', '.join(f'{t:.2f}' for t, _, _ in runs)})  "
            f"CPU {cpu:.2f} s  peak RSS {rss:.0f} MiB")


def print_timings(timed: str, runs: dict[str, list], verdict: str) -> None:
    """What was timed, one :func:`best_of` line per label, the verdict (ratios), the load average."""
    print(f"timed: {timed}")
    for label, label_runs in runs.items():
        print(best_of(label, label_runs))
    print(verdict)
    print(f"load average when done: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")


def compare(fast_dir: Path, reference_dir: Path) -> tuple[float, int, int]:
    import pandas as pd

    worst = 0.0
    counts = []
    for name, key in (("benchmark.csv", ["dataset", "model", "method", "adjust_pred_probs"]),
                      ("filters.csv", ["dataset", "model", "filter_by"])):
        fast = pd.read_csv(fast_dir / name, float_precision="round_trip")
        reference = pd.read_csv(reference_dir / name, float_precision="round_trip")
        merged = fast.merge(reference, on=key, suffixes=("", "_ref"), validate="one_to_one")
        assert len(merged) == len(fast) == len(reference), f"{name}: row sets differ"
        for column in fast.columns.difference(key):
            if column == "num_flagged":
                assert (merged[column] == merged[f"{column}_ref"]).all(), "flag counts differ"
            else:
                worst = max(worst, float((merged[column] - merged[f"{column}_ref"]).abs().max()))
        counts.append(len(fast))
    return worst, counts[0], counts[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published", default="data/published")
    parser.add_argument("--repeat", type=int, default=5, help="best of N for the fast path")
    parser.add_argument("--reference-repeat", type=int, default=1, help="best of N for the straightforward loop")
    parser.add_argument("--workers", type=int, default=2, help="run_benchmark's workers (the stage's param)")
    args = parser.parse_args()
    published = Path(args.published).resolve()
    if not (published / DATASETS[0]).is_dir():
        print(f"error: {published} has no datasets; run `dvc pull -r published` first", file=sys.stderr)
        return 1
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's labelbench
    datasets = {name: (str(published), MODELS) for name in DATASETS}

    with tempfile.TemporaryDirectory() as tmp:
        fast_dir, reference_dir = Path(tmp, "fast"), Path(tmp, "reference")
        fast_args = [repr((datasets, ENSEMBLES, LIFT_K, args.workers, str(fast_dir)))]
        reference_args = [repr((datasets, ENSEMBLES, LIFT_K, 1, str(reference_dir))), str(REPO / "tests")]
        fast_runs, reference_runs = [], []
        # Interleaved, so that a burst of load on the machine hits both sides.
        for i in range(max(args.repeat, args.reference_repeat)):
            if i < args.reference_repeat:
                reference_runs.append(timed_run(STRAIGHTFORWARD, reference_args, env))
            if i < args.repeat:
                fast_runs.append(timed_run(FAST, fast_args, env))
        worst, rows, filter_rows = compare(fast_dir, reference_dir)
    assert worst <= 1e-9, f"numbers disagree by {worst}"

    fast_time, _, fast_cpu = min(fast_runs)
    reference_time, _, reference_cpu = min(reference_runs)
    print(f"work: {len(DATASETS)} datasets x {len(MODELS)} models; {rows} score vectors "
          f"(7 variants per model, 6 ensembles x 5 cleanlab variants per dataset), {filter_rows} filters")
    print(f"max |difference| between the two outputs: {worst:.2e} (flag counts equal)")
    print_timings(
        "`python -c <runner>` from spawn to exit: imports, loading, all of the above, "
        "benchmark.csv + filters.csv + summary.json written (peak RSS: the run's largest process)",
        {"straightforward (cleanlab + scikit-learn, find_label_issues defaults)": reference_runs,
         f"benchmark stage (run_benchmark + write_outputs, workers={args.workers})": fast_runs},
        f"speed-up (wall, best vs best): {reference_time / fast_time:.1f}x (target >= 10x); "
        f"CPU seconds: {reference_cpu / fast_cpu:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

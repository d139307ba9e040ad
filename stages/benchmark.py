"""Stage `benchmark`: every score variant × dataset × model, the ensembles and cleanlab's filters.

    python stages/benchmark.py --out metrics

Independent of the `score` param: writes ``<out>/benchmark.csv`` (with paired-bootstrap intervals
and ties with the best, params ``benchmark.bootstrap``), ``<out>/filters.csv`` and ``<out>/summary.json``.
On the datasets trained here the other detector families (training dynamics, representation neighbours, params
``benchmark.detectors``) score the examples from the folds' training records (``--crossval``), rows beside the
pred_probs variants of the same model.
"""

import argparse
import sys
from pathlib import Path

from labelbench.evaluation import numerics  # first: pins numpy's and OpenBLAS's numerics before numpy loads
from labelbench.config import load_params, load_runtime
from labelbench.evaluation.benchmark import run_benchmark, trained_detector_scores, write_outputs
from labelbench.evaluation.params import BenchmarkParams
from labelbench.data.files import stage_main


@stage_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--crossval", type=Path, required=True, help="the folds of the datasets trained here")
    args = parser.parse_args(argv)
    params = load_params(BenchmarkParams)
    workers = load_runtime().benchmark_workers
    bootstrap = params.benchmark.bootstrap
    numerics.check()
    table, filters = run_benchmark(
        params.roots(), lift_k=params.lift_k, ensembles=params.benchmark.ensembles, workers=workers,
        bootstrap=bootstrap, detectors=lambda loaded: trained_detector_scores(params, args.crossval, loaded))
    write_outputs(table, filters, args.out, lift_k=params.lift_k, bootstrap=bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())

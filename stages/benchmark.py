"""Stage `benchmark`: every method variant × dataset × model, the ensembles and cleanlab's filters.

Independent of `score`: writes metrics/benchmark.csv, metrics/filters.csv, metrics/summary.json.
"""

import argparse
import sys
from pathlib import Path

from labelbench.evaluation.benchmark import datasets_from_params, run_benchmark, write_outputs
from labelbench.data.io import DataError
from labelbench.config import ParamsError, load_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="metrics")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        section = params.section("benchmark")
        table, filters = run_benchmark(
            datasets_from_params(params),
            lift_k=int(section.get("lift_k", [100])[0]),
            ensembles=section.get("ensembles", []),
            workers=int(section.get("workers", 2)),
        )
    except (DataError, ParamsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_outputs(table, filters, Path(args.out), lift_k=int(section.get("lift_k", [100])[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `report`: reports/benchmark.md and the PNG figures, from the benchmark stage's outputs.

Independent of `score`: reads metrics/benchmark.csv, metrics/filters.csv, metrics/summary.json and
the datasets (for the PR curves and the most-likely-mislabeled list, with params `report.*`).
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from labelbench.benchmark import datasets_from_params
from labelbench.io import DataError
from labelbench.params import ParamsError, load_params
from labelbench.report import dot_plot, pr_curves, top_ranked, write_markdown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        section = params.section("report")
        datasets = datasets_from_params(params)
        benchmark = pd.read_csv("metrics/benchmark.csv")
        filters = pd.read_csv("metrics/filters.csv")
        summary = json.loads(Path("metrics/summary.json").read_text())
        method = section.get("ranking_method", "self_confidence")
        ensemble = section.get("ranking_ensemble", params.ensemble)
        top = top_ranked(datasets, method=method, ensemble=ensemble, top_n=int(section.get("top_n", 20)))
        figures = ["plots/auroc_dot_plot.png", "plots/pr_curves.png"]
        dot_plot(benchmark, Path(figures[0]))
        pr_curves(datasets, Path(figures[1]), method=method, ensemble=ensemble)
    except (DataError, ParamsError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_markdown(Path("reports/benchmark.md"), benchmark=benchmark, filters=filters,
                   summary=summary, top=top, figures=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

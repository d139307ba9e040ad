"""Stage `report`: reports/benchmark.md and the PNG figures, from the benchmark stage's outputs.

Independent of `score`: reads metrics/benchmark.csv, metrics/filters.csv, metrics/summary.json and
the datasets (for the PR curves and the most-likely-mislabeled list, with params `report.*`).
"""

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from labelbench.evaluation.benchmark import BENCHMARK_COLUMNS, FILTER_COLUMNS, datasets_from_params
from labelbench.data.io import DataError
from labelbench.config import ParamsError, load_params
from labelbench.evaluation.report import dot_plot, method_scores, pr_curves, top_ranked, write_markdown
from labelbench.evaluation.scores import resolve_method


def read_table(path: str, columns: list[str]) -> pd.DataFrame:
    """A table written by the benchmark stage, with its columns checked."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise DataError(path, f"missing columns {missing}" if missing else "has no rows")
    return frame


def read_summary(path: str) -> dict:
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
        summary["num_pairs"], summary["methods"].items()  # noqa: B018 - shape check
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a summary written by the benchmark stage ({exc!r})") from None
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        section = params.section("report")
        datasets = datasets_from_params(params)
        benchmark = read_table("metrics/benchmark.csv", BENCHMARK_COLUMNS)
        filters = read_table("metrics/filters.csv", FILTER_COLUMNS)
        summary = read_summary("metrics/summary.json")
        method = resolve_method(section.get("ranking_method", "self_confidence"))
        scored = method_scores(datasets, method=method, ensemble=section.get("ranking_ensemble", params.ensemble))
        top = top_ranked(scored, top_n=int(section.get("top_n", 20)))
        figures = ["plots/auroc_dot_plot.png", "plots/pr_curves.png"]
        dot_plot(benchmark, Path(figures[0]))
        pr_curves(scored, Path(figures[1]), method=method)
    except (DataError, ParamsError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_markdown(Path("reports/benchmark.md"), benchmark=benchmark, filters=filters,
                   summary=summary, top=top, figures=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `report`: the markdown report and the PNG figures, from the benchmark stage's outputs.

    python stages/report.py --metrics metrics --issues reports/issues --out reports/benchmark.md --figures plots

Reads ``<metrics>/{benchmark.csv,filters.csv,summary.json}``, the datasets (for the PR curves) and
``<issues>/<dataset>.csv`` (the most-likely-mislabeled lists); writes ``--out`` and ``<figures>/{auroc_dot_plot,pr_curves}.png``.
"""

import argparse
import json
import sys
from pathlib import Path

from labelbench.evaluation import numerics  # first: pins numpy's and OpenBLAS's numerics before numpy loads
from labelbench.config import load_params
from labelbench.data.io import DataError, atomic_outputs
from labelbench.data.verify import verify
from labelbench.evaluation.benchmark import BENCHMARK_COLUMNS, FILTER_COLUMNS
from labelbench.evaluation.metrics import metric_names
from labelbench.evaluation.params import ReportParams
from labelbench.evaluation.report import (
    dot_plot, family_section, method_scores, pr_curves, read_table, top_ranked, write_markdown,
)
from labelbench.data.files import read_text, stage_main


def read_summary(path: Path) -> dict:
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        summary["num_pairs"], summary["methods"].items(), float(summary["bootstrap"]["level"])  # noqa: B018 - shape
        int(summary["bootstrap"]["resamples"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(path, f"not a summary written by the benchmark stage ({exc!r})") from None
    return summary


@stage_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--issues", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figures", type=Path, required=True)
    parser.add_argument("--section", type=Path, action="append", default=[],
                        help="markdown written by another stage, appended as is (e.g. reports/multiannotator.md)")
    args = parser.parse_args(argv)
    params = load_params(ReportParams)
    for path in (args.metrics / "benchmark.csv", args.metrics / "filters.csv", args.metrics / "summary.json",
                 args.issues, *args.section):
        verify(path)  # the bytes DVC recorded for the benchmark, issues and multiannotator stages' outputs
    metrics = metric_names(params.lift_k)
    benchmark = read_table(args.metrics / "benchmark.csv", BENCHMARK_COLUMNS + metrics,
                           numbers=[m + end for m in metrics for end in ("", "_lo", "_hi", "_diff_lo", "_diff_hi")])
    filters = read_table(args.metrics / "filters.csv", FILTER_COLUMNS, numbers=FILTER_COLUMNS[3:])
    summary = read_summary(args.metrics / "summary.json")
    sections = [family_section(benchmark, trained=list(params.crossval.datasets), level=summary["bootstrap"]["level"])]
    sections += [read_text(path) for path in args.section]
    report = params.report
    numerics.check()  # after the inputs are checked: a bad file is the error to see first
    scored = method_scores(params.roots(), method=report.ranking_method, ensemble=report.ranking_ensemble)
    top = top_ranked(args.issues, list(params.sources()), top_n=report.top_n)
    figures = [args.figures / "auroc_dot_plot.png", args.figures / "pr_curves.png"]
    with atomic_outputs(files=[*figures, args.out]) as tmp:  # the figures and the page that shows them: all or none
        dot_plot(benchmark, tmp[figures[0]])
        pr_curves(scored, tmp[figures[1]], method=report.ranking_method)
        write_markdown(tmp[args.out], benchmark=benchmark, filters=filters, summary=summary, top=top,
                       figures=[f.as_posix() for f in figures], lift_k=params.lift_k, sections=sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())

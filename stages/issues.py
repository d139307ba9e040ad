"""Stage `issues`: per dataset, the examples ranked most likely mislabeled, as files to act on.

    python stages/issues.py --out reports/issues

Writes ``<out>/<dataset>.csv`` for every dataset (published, trained, added; also those without a
known error mask) and ``<out>/<dataset>.png``, a grid of the top images, where the dataset's images
are here; see :mod:`labelbench.evaluation.issues`.
"""

import argparse
import sys
from pathlib import Path

from labelbench.evaluation import numerics  # first: pins numpy's and OpenBLAS's numerics before numpy loads
from labelbench.config import load_params
from labelbench.data.io import atomic_dir, load_dataset, write_csv
from labelbench.evaluation.issues import class_names, issue_grid, rank_issues
from labelbench.evaluation.params import IssuesParams
from labelbench.data.files import stage_main


@stage_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(IssuesParams)
    ranking = params.report
    loaded = {}
    for name, source in params.sources().items():
        data = load_dataset(source.root, name, models=source.models, label_errors=source.label_errors)
        loaded[name] = (data, class_names(name, num_classes=data.num_classes, extras=source.extras), source.extras)
    numerics.check()  # after every input is checked: a bad file is the error to see first
    ranked = {}
    for name, (data, classes, extras) in loaded.items():
        issues = rank_issues(data, method=ranking.ranking_method, ensemble=ranking.ranking_ensemble,
                             classes=classes, rows=params.issues.rows)
        images = Path(extras, "images") if extras is not None else None
        ranked[name] = (issues, images if images is not None and images.is_dir() else None)
    with atomic_dir(args.out) as out:
        for name, (issues, images) in ranked.items():
            write_csv(out / f"{name}.csv", issues)
            if images is not None:
                issue_grid(issues, images=images, path=out / f"{name}.png", count=params.issues.grid,
                           title=f"{name}: the {min(params.issues.grid, len(issues))} examples ranked most "
                                 f"likely mislabeled (#rank given → suggested; red: known error)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

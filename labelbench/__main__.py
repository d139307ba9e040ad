"""``python -m labelbench add-dataset NAME --pred-probs DIR --labels given_labels.npy [...]``

Adds a dataset of your own to the benchmark (see :mod:`labelbench.data.add_dataset`): checked,
written to ``data/added/NAME``, tracked with DVC and registered in ``params.yaml``; the next
``dvc repro`` puts it in every table, plot and report. To rank label issues of your own data with
no benchmark around it, use cleanlab directly: ``cleanlab.filter.find_label_issues`` or
``cleanlab.Datalab`` (https://docs.cleanlab.ai/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import ParamsError
from labelbench.data.io import DataError


#: The module docstring as the terminal shows it (no reStructuredText markup).
HELP = """Add a dataset of your own to the benchmark: checked, written to data/added/NAME, tracked with DVC and
registered in params.yaml; the next `dvc repro` puts it in every table, plot and report.

To rank label issues of your own data with no benchmark around it, use cleanlab directly:
cleanlab.filter.find_label_issues or cleanlab.Datalab (https://docs.cleanlab.ai/)."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add-dataset", help="add a dataset of your own (pred_probs, labels, optional error mask)",
        description="Check, write (data/added/NAME), track (dvc add) and register (params.yaml) a dataset; "
                    "nothing is written when a check fails. Run from the repository root, then `dvc repro`.")
    add.add_argument("name", metavar="NAME", help="dataset name: letters, digits, '_' and '-'")
    add.add_argument("--pred-probs", type=Path, required=True, metavar="DIR",
                     help="folder of <model>.npy: out-of-sample predicted probabilities (N, K), one file per model")
    add.add_argument("--labels", type=Path, required=True, help="given labels (N,) int, .npy")
    add.add_argument("--errors", type=Path, help="known label errors (N,) bool, .npy: the dataset is benchmarked; "
                                                 "without it, ranked label issues only")
    add.add_argument("--true-labels", type=Path, help="true labels (N,) int, .npy")
    add.add_argument("--image-ids", type=Path, help="N lines: the image (relative path) of each row")
    add.add_argument("--images", type=Path, metavar="DIR", help="folder of the images named by --image-ids "
                                                                "(reports/issues/NAME.png shows the top ones)")
    add.add_argument("--classes", type=Path, help="K lines: class names, in label order")
    args = parser.parse_args(argv)
    from labelbench.data.add_dataset import add_dataset

    try:
        info = add_dataset(name=args.name, pred_probs=args.pred_probs, labels=args.labels, errors=args.errors,
                           true_labels=args.true_labels, image_ids=args.image_ids, images=args.images,
                           classes=args.classes)
    except (DataError, ParamsError, OSError) as exc:
        print(f"error: {exc}\nnothing was written", file=sys.stderr)
        return 1
    kind = (f"{info['errors']} known label errors: benchmarked" if info["errors"] is not None
            else "no known label errors: ranked label issues only (reports/issues)")
    print(f"added {args.name}: {info['examples']} examples, {info['classes']} classes, models "
          f"{', '.join(info['models'])}; {kind}\n"
          f"  data/added/{args.name} (tracked by data/added/{args.name}.dvc), params.yaml: added.{args.name}\n"
          f"next: git add data/added/{args.name}.dvc data/added/.gitignore params.yaml && dvc repro")
    return 0


if __name__ == "__main__":
    sys.exit(main())

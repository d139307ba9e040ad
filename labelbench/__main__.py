"""add-dataset: a dataset of your own, checked, written to data/added/NAME, tracked with DVC and registered in
params.yaml; the next `dvc repro` puts it in every table, plot and report. check-params: params.yaml, every block.

  add-dataset NAME --pred-probs DIR --labels given_labels.npy [--errors label_errors.npy]   pred_probs of yours
  add-dataset NAME --images DIR [--labels labels.csv] [--errors mislabeled.txt]             images, trained here
  check-params            every block at once (make reproduce runs it before anything else)

To rank label issues of your own data with no benchmark around it, use cleanlab directly:
cleanlab.filter.find_label_issues or cleanlab.Datalab (https://docs.cleanlab.ai/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import ParamsError
from labelbench.data.io import DataError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser(
        "add-dataset", help="add a dataset of your own (pred_probs, or images to train here)",
        description="Check, write (data/added/NAME), track (dvc add) and register (params.yaml) a dataset; "
                    "nothing is written when a check fails. Run from the repository root, then `dvc repro`. "
                    "With --pred-probs: your out-of-sample pred_probs (registered under `added`). Without: "
                    "--images DIR is trained here by cross-validation (registered under `crossval.datasets`, "
                    "source imagefolder) and gets every detector family.")
    add.add_argument("name", metavar="NAME", help="dataset name: letters, digits, '_' and '-'")
    add.add_argument("--pred-probs", type=Path, metavar="DIR",
                     help="folder of <model>.npy: out-of-sample predicted probabilities (N, K), one file per model")
    add.add_argument("--labels", type=Path, help="with --pred-probs: given labels (N,) int, .npy; with --images "
                                                 "alone: a CSV path,label (path relative to DIR, label a class "
                                                 "name) instead of class subfolders")
    add.add_argument("--errors", type=Path, help="known label errors: with --pred-probs (N,) bool .npy, with "
                                                 "--images alone the mislabeled images' paths, one per line. "
                                                 "With --pred-probs and without it: ranked label issues only")
    add.add_argument("--true-labels", type=Path, help="true labels (N,) int, .npy (with --pred-probs)")
    add.add_argument("--image-ids", type=Path, help="N lines: the image (relative path) of each row (with "
                                                    "--pred-probs)")
    add.add_argument("--images", type=Path, metavar="DIR",
                     help="with --pred-probs: the images named by --image-ids; alone: the images to train on, one "
                          "subfolder per class (torchvision's ImageFolder)")
    add.add_argument("--classes", type=Path, help="K lines: class names, in label order")
    add.add_argument("--noise", choices=["instance", "uniform"],
                     help="--images alone: the label noise injected when --noise-amount > 0 (default instance)")
    add.add_argument("--noise-amount", type=float, help="--images alone: share of labels to flip, the known errors "
                                                        "when there is no --errors (default 0)")
    add.add_argument("--sparsity", type=float, help="--noise uniform: cleanlab's frac_zero_noise_rates (0)")
    add.add_argument("--noise-seed", type=int, help="--images alone: seed of the injected noise (default 0)")
    commands.add_parser("check-params", help="check every block of params.yaml at once",
                        description="Check every block of params.yaml as the stage reading it would (a stage checks "
                                    "only the blocks it reads); make reproduce and the Ray driver run it first.")
    args = parser.parse_args(argv)
    if args.command == "check-params":
        from labelbench.evaluation.params import check_params

        try:
            check_params()
        except ParamsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print("params.yaml: every block is valid")
        return 0

    def given(*flags: str) -> list[str]:  # the defaults below: None tells a flag given from one left out
        return [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) is not None]

    noise_flags = given("--noise", "--noise-amount", "--sparsity", "--noise-seed")
    args.noise, args.noise_amount = args.noise or "instance", args.noise_amount or 0.0
    args.noise_seed = args.noise_seed or 0
    from labelbench.data.add_dataset import add_dataset, add_image_dataset

    trained = args.pred_probs is None
    try:
        if trained:
            misplaced = given("--true-labels", "--image-ids")
            if args.images is None or misplaced:
                parser.error("add-dataset needs --pred-probs DIR, or --images DIR (trained here) without "
                             f"{' and '.join(misplaced) or '--pred-probs options'}")
            info = add_image_dataset(name=args.name, images=args.images, labels=args.labels, classes=args.classes,
                                     errors=args.errors, noise=args.noise, noise_amount=args.noise_amount,
                                     sparsity=args.sparsity, noise_seed=args.noise_seed)
        else:
            if args.labels is None or noise_flags:
                parser.error("add-dataset --pred-probs needs --labels given_labels.npy" if args.labels is None else
                             f"add-dataset --pred-probs takes no {' or '.join(noise_flags)}: noise is injected into "
                             "images trained here (--images alone); your pred_probs come with their labels")
            info = add_dataset(name=args.name, pred_probs=args.pred_probs, labels=args.labels, errors=args.errors,
                               true_labels=args.true_labels, image_ids=args.image_ids, images=args.images,
                               classes=args.classes)
    except (DataError, ParamsError, OSError) as exc:
        print(f"error: {exc}\nnothing was written", file=sys.stderr)
        return 1
    if trained:
        errors = (f"{info['errors']} known label errors" if info["errors"] is not None
                  else f"{args.noise} noise, {args.noise_amount:g} of the labels flipped")
        key, what = "crossval.datasets", f"{info['examples']} images, {info['classes']} classes; {errors}; trained here"
    else:
        kind = (f"{info['errors']} known label errors: benchmarked" if info["errors"] is not None
                else "no known label errors: ranked label issues only (reports/issues)")
        key, what = "added", (f"{info['examples']} examples, {info['classes']} classes, models "
                              f"{', '.join(info['models'])}; {kind}")
    print(f"added {args.name}: {what}\n"
          f"  data/added/{args.name} (tracked by data/added/{args.name}.dvc), params.yaml: {key}.{args.name}\n"
          f"next: git add data/added/{args.name}.dvc data/added/.gitignore params.yaml && dvc repro")
    return 0


if __name__ == "__main__":
    sys.exit(main())

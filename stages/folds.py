"""Stage: one stratified k-fold split of a dataset (stratified on given_label).

    python stages/folds.py --in <labels.csv> --out <folds.csv> --k 5 [--seed 0|null]

Writes a CSV with columns image_id, fold (0..k-1) in input order. --seed null (the default;
also "none" or "") means StratifiedKFold(shuffle=False).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.train.dedupe import read_labels_csv
from labelbench.train.folds import folds_table
from labelbench.data.io import DataError, write_csv


def parse_seed(text: str) -> int | None:
    if text.strip().lower() in {"", "null", "none", "~"}:
        return None
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer or null, got {text!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer or null, got {text!r}")
    return seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inp", type=Path, required=True, help="labels.csv to read")
    parser.add_argument("--out", type=Path, required=True, help="folds CSV to write")
    parser.add_argument("--k", type=int, required=True, help="number of folds, >= 2")
    parser.add_argument("--seed", type=parse_seed, default=None, help="integer, or null for no shuffling")
    args = parser.parse_args(argv)
    if args.k < 2:
        parser.error(f"--k must be >= 2, got {args.k}")
    try:
        labels = read_labels_csv(args.inp)
        try:
            table = folds_table(labels=labels, k=args.k, seed=args.seed)
        except DataError:
            raise
        except ValueError as exc:  # e.g. a class with fewer than k members
            raise DataError(args.inp, str(exc)) from None
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_csv(args.out, table)
    print(f"{args.inp}: {len(table)} rows in {args.k} folds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

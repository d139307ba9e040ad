"""Stage `folds`: one stratified k-fold split of a dataset (stratified on given_label).

    python stages/folds.py --in <labels.csv> --out <folds.csv>

k = len(crossval.folds) and the shuffle seed crossval.fold_seed (null: StratifiedKFold without
shuffling) come from params.yaml. Writes a CSV with columns image_id, fold (0..k-1) in input order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import FoldsParams, load_params
from labelbench.data.files import DataError, read_labels_csv, stage_main, write_csv
from labelbench.data.verify import verify
from labelbench.train.folds import folds_table


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inp", type=Path, required=True, help="labels.csv to read")
    parser.add_argument("--out", type=Path, required=True, help="folds CSV to write")
    args = parser.parse_args(argv)
    params = load_params(FoldsParams).crossval
    k = len(params.folds)
    verify(args.inp)  # the bytes DVC recorded for noise@D's output
    labels = read_labels_csv(args.inp)
    try:
        table = folds_table(labels=labels, k=k, seed=params.fold_seed)
    except ValueError as exc:  # a class with fewer than k members
        raise DataError(args.inp, str(exc)) from None
    write_csv(args.out, table)
    print(f"{args.inp}: {len(table)} rows in {k} folds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

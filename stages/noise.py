"""Stage: add synthetic label noise to one dataset's labels (cleanlab, authors' recipe).

    python stages/noise.py --in <labels.csv> --out <folder> --noise-amount 0.2 --sparsity 0.4
                           [--seed 0] [--classes <classes.txt>]

Writes ``<out>/labels.csv`` (given_label = noisy, true_label = true, label_error = given != true;
unchanged when --noise-amount is 0) and ``<out>/noise.json``. K is the number of lines in
--classes, else max(true label) + 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.train.dedupe import read_labels_csv
from labelbench.data.io import DataError, write_csv, write_json
from labelbench.train.noise import check_noise_params, noisy_labels_table, read_classes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inp", type=Path, required=True, help="labels.csv to read")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--noise-amount", type=float, required=True, help="in [0, 1); 0 = pass through")
    parser.add_argument("--sparsity", type=float, required=True, help="fraction of zero noise rates, [0, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=Path, default=None, help="classes.txt fixing K (optional)")
    args = parser.parse_args(argv)
    try:
        labels = read_labels_csv(args.inp)
        k = len(read_classes(args.classes)) if args.classes else None
        true = labels["true_label"].fillna(labels["given_label"])
        try:
            check_noise_params(noise_amount=args.noise_amount, sparsity=args.sparsity,
                               num_classes=k if k is not None else max(int(true.max()) + 1, 2))
        except ValueError as exc:
            parser.error(str(exc))
        try:
            out, record = noisy_labels_table(labels=labels, noise_amount=args.noise_amount,
                                             sparsity=args.sparsity, seed=args.seed, num_classes=k)
        except DataError:
            raise
        except ValueError as exc:  # the labels do not fit the recipe (class range, absent class)
            raise DataError(args.inp, str(exc)) from None
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_csv(args.out / "labels.csv", out)
    write_json(args.out / "noise.json", record)
    print(f"{args.inp}: changed {record['num_changed']} of {record['num_examples']} labels "
          f"(rate {record['realised_noise_rate']:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

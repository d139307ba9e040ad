"""Stage `noise`: add synthetic label noise to one dataset's labels (uniform, the authors' recipe, or instance-dependent).

    python stages/noise.py <dataset> --in <labels.csv> --classes <classes.txt> --images <folder> --out <folder>

noise, noise_amount, sparsity and noise_seed come from ``crossval.datasets.<dataset>`` of params.yaml;
K is the number of lines of --classes; --images (the raw images) is read by instance noise only. Writes
``<out>/labels.csv`` (given_label = noisy, true_label = true, label_error = given != true; unchanged when
noise_amount is 0) and ``<out>/noise.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import NoiseParams, ParamsError, load_params
from labelbench.data.files import (
    DataError, atomic_outputs, read_classes, read_labels_csv, stage_main, write_csv, write_json,
)
from labelbench.data.verify import verify
from labelbench.train.noise import noisy_labels_table


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a key of crossval.datasets")
    parser.add_argument("--in", dest="inp", type=Path, required=True, help="labels.csv to read")
    parser.add_argument("--classes", type=Path, required=True, help="classes.txt fixing K")
    parser.add_argument("--images", type=Path, required=True, help="the raw images folder (instance noise)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    datasets = load_params(NoiseParams).crossval.datasets
    if args.dataset not in datasets:
        raise ParamsError(f"crossval.datasets has no {args.dataset!r}; it has {sorted(datasets)}")
    noise = datasets[args.dataset]
    for path in (args.inp, args.classes, args.images):
        verify(path)  # the bytes DVC recorded for dedupe@D's and raw@D's outputs
    labels = read_labels_csv(args.inp)
    k = len(read_classes(args.classes))
    try:
        out, record = noisy_labels_table(labels=labels, noise=noise.noise, noise_amount=noise.noise_amount,
                                         sparsity=noise.sparsity, seed=noise.noise_seed, num_classes=k,
                                         images=args.images)
    except DataError:  # an unreadable image, named
        raise
    except ValueError as exc:  # the labels do not fit the recipe (class range, absent class, trace, unknown truth)
        raise DataError(args.inp, f"{exc} (params.yaml: crossval.datasets.{args.dataset}: noise {noise.noise}, "
                                  f"noise_amount {noise.noise_amount})") from None
    errors = int(out["label_error"].fillna(out["given_label"] != out["true_label"]).eq(1).sum())  # as assemble
    if errors in (0, len(out)):  # before any fold trains: evaluation would refuse the mask (check_both_kinds)
        raise ParamsError(f"crossval.datasets.{args.dataset}: noise_amount {noise.noise_amount} leaves {errors} of "
                          f"{len(out)} labels wrong; the benchmark needs both errors and correct labels (set "
                          "noise_amount > 0 for a source without label errors of its own)")
    with atomic_outputs(files=[args.out / "labels.csv", args.out / "noise.json"]) as tmp:
        write_csv(tmp[args.out / "labels.csv"], out)
        write_json(tmp[args.out / "noise.json"], record)
    print(f"{args.inp}: changed {record['num_changed']} of {record['num_examples']} labels "
          f"(rate {record['realised_noise_rate']:.4f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

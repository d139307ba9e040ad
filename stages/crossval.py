"""Stage `crossval`: train one timm model on all folds but one, predict the held-out fold.

    python stages/crossval.py --dataset D --model M --fold F
        [--images data/raw/D/images] [--labels data/noisy/D/labels.csv]
        [--folds data/folds/D.csv] [--out data/crossval/D/M/fold_F]
        [--params params.yaml] [--epochs N] [--batch-size N] [--lr X] [--weight-decay X]
        [--image-size N] [--seed N] [--device auto|cpu|cuda] [--workers N] [--threads N]
        [--num-folds K] [--pretrained | --no-pretrained] [--mixed-precision | --no-mixed-precision]

Settings: built-in defaults (labelbench.train.TrainConfig), then the ``crossval:`` block of
--params (when given; its ``models`` list is ignored here), then the flags. Writes
``--out``: model.safetensors, heldout_indices.npy, heldout_pred_probs.npy, config.yaml,
dvclive/ (see labelbench.train.crossval).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from labelbench.data.io import DataError
from labelbench.config import read_params_block
from labelbench.train.crossval import DEVICES, PretrainedWeightsUnavailable, TrainConfig, train_fold




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, help="timm model name")
    parser.add_argument("--fold", required=True, type=int, help="held-out fold, 0..k-1")
    parser.add_argument("--images", type=Path, help="default data/raw/<dataset>/images")
    parser.add_argument("--labels", type=Path, help="default data/noisy/<dataset>/labels.csv")
    parser.add_argument("--folds", type=Path, help="default data/folds/<dataset>.csv")
    parser.add_argument("--out", type=Path, help="default data/crossval/<dataset>/<model>/fold_<fold>")
    parser.add_argument("--params", type=Path, help="params.yaml whose crossval: block to read")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", choices=DEVICES)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--num-folds", type=int, help="k of the folds file (crossval.folds)")
    parser.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args(argv)

    d = args.dataset
    images = args.images or Path("data/raw") / d / "images"
    labels = args.labels or Path("data/noisy") / d / "labels.csv"
    folds_csv = args.folds or Path("data/folds") / f"{d}.csv"
    out = args.out or Path("data/crossval") / d / args.model / f"fold_{args.fold}"
    try:
        block = read_params_block(args.params, "crossval") if args.params else {}
        flags = {
            key: getattr(args, key)
            for key in ("epochs", "batch_size", "lr", "weight_decay", "image_size", "seed", "device",
                        "workers", "threads", "pretrained", "mixed_precision")
        }
        flags["folds"] = args.num_folds
        config = TrainConfig.from_params(block, **flags, model=args.model)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        result = train_fold(
            images_root=images, labels_csv=labels, folds_csv=folds_csv, fold=args.fold, config=config, out_dir=out
        )
    except (DataError, PretrainedWeightsUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    last = result.history[-1]
    print(
        f"{d}/{args.model} fold {args.fold}: {len(result.heldout_indices)} held out, "
        f"{config.epochs} epochs in {result.seconds:.1f} s, train loss {last['loss']:.3f}, "
        f"held-out accuracy vs given labels {result.heldout_accuracy:.3f} -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

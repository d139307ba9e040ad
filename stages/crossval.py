"""Stage `crossval`: train one timm model on all folds but one, predict the held-out fold.

    python stages/crossval.py --dataset D --model M --fold F --images DIR --labels CSV --folds CSV --out DIR

Settings: the ``train`` block of params.yaml (what is trained) and ``runtime`` (how: declared by no stage);
k = len(crossval.folds), and F must be one of them.
Writes ``--out``: model.safetensors, heldout_indices.npy, heldout_pred_probs.npy, config.yaml,
dvclive/ (see labelbench.train.crossval).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import CrossvalParams, ParamsError, load_params, load_runtime
from labelbench.data.files import stage_main
from labelbench.train.crossval import TrainConfig, train_fold


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, help="timm model name")
    parser.add_argument("--fold", required=True, type=int, help="held-out fold, one of crossval.folds")
    parser.add_argument("--images", required=True, type=Path, help="images folder of the raw dataset")
    parser.add_argument("--labels", required=True, type=Path, help="labels.csv trained on")
    parser.add_argument("--folds", required=True, type=Path, help="folds CSV (image_id, fold)")
    parser.add_argument("--out", required=True, type=Path, help="fold folder to write")
    args = parser.parse_args(argv)
    params = load_params(CrossvalParams)
    runtime = load_runtime()
    folds = params.crossval.folds
    if args.fold not in folds:
        raise ParamsError(f"--fold {args.fold} is not one of crossval.folds = {folds}")
    config = TrainConfig.of(params.train, model=args.model, folds=len(folds))
    result = train_fold(images_root=args.images, labels_csv=args.labels, folds_csv=args.folds,
                        fold=args.fold, config=config, runtime=runtime, out_dir=args.out)
    last = result.history[-1]
    print(
        f"{args.dataset}/{args.model} fold {args.fold}: {len(result.heldout_indices)} held out, "
        f"{config.epochs} epochs in {result.seconds:.1f} s, train loss {last['loss']:.3f}, "
        f"held-out accuracy vs given labels {result.heldout_accuracy:.3f} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `assemble`: gather every fold's held-out predictions into the pred_probs data contract.

    python stages/assemble.py --dataset D --labels CSV --crossval-root DIR --out DIR

Reads ``<crossval-root>/<D>/<model>/fold_<f>/`` for every model of ``crossval.models`` and every
fold of ``crossval.folds`` (params.yaml) and writes ``<out>/<D>/`` (given_labels.npy,
true_labels.npy when known, label_errors.npy, image_ids.txt, pred_probs/<model>.npy); see
labelbench.train.assemble.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import AssembleParams, load_params
from labelbench.train.assemble import assemble
from labelbench.data.files import stage_main


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--labels", required=True, type=Path, help="labels.csv the folds were trained on")
    parser.add_argument("--crossval-root", required=True, type=Path, help="folder of <dataset>/<model>/fold_<f>")
    parser.add_argument("--out", required=True, type=Path, help="data contract root")
    args = parser.parse_args(argv)
    params = load_params(AssembleParams).crossval
    fold_dirs = {m: [args.crossval_root / args.dataset / m / f"fold_{f}" for f in params.folds]
                 for m in params.models}
    dataset = assemble(labels_csv=args.labels, fold_dirs=fold_dirs, out_root=args.out, dataset=args.dataset)
    for model, probs in dataset.pred_probs.items():
        accuracy = float((probs.argmax(1) == dataset.given_labels).mean())
        print(f"{args.dataset}/{model}: {probs.shape[0]} rows x {probs.shape[1]} classes, "
              f"out-of-sample accuracy vs given labels {accuracy:.3f}")
    print(f"{args.dataset}: {len(dataset.given_labels)} examples, {dataset.num_errors} label errors -> "
          f"{args.out / args.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

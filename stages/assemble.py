"""Stage `assemble`: gather every fold's held-out predictions into the pred_probs data contract.

    python stages/assemble.py --dataset D --models m1 [m2 ...] --folds 5
        [--labels data/noisy/D/labels.csv] [--crossval-root data/crossval] [--out data/trained]
        [--params params.yaml]

Reads ``<crossval-root>/<D>/<model>/fold_<f>/`` for f in 0..folds-1 and writes
``<out>/<D>/`` (given_labels.npy, true_labels.npy when known, label_errors.npy,
image_ids.txt, pred_probs/<model>.npy); see labelbench.train.assemble. With --params, --models and
--folds default to ``crossval.models`` and ``crossval.folds``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.train.assemble import assemble
from labelbench.data.io import DataError
from labelbench.config import read_params_block




def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--labels", type=Path, help="default data/noisy/<dataset>/labels.csv")
    parser.add_argument("--crossval-root", type=Path, default=Path("data/crossval"))
    parser.add_argument("--models", nargs="+", help="model names (default: crossval.models of --params)")
    parser.add_argument("--folds", type=int, help="number of folds (default: crossval.folds of --params)")
    parser.add_argument("--out", type=Path, default=Path("data/trained"), help="data contract root")
    parser.add_argument("--params", type=Path, help="params.yaml whose crossval: block to read")
    args = parser.parse_args(argv)

    try:
        block = read_params_block(args.params, "crossval") if args.params else {}
    except ValueError as exc:
        parser.error(str(exc))
    models = args.models or block.get("models")
    folds = args.folds if args.folds is not None else block.get("folds")
    if not models:
        parser.error("no models: pass --models or a --params file with crossval.models")
    if isinstance(models, str):
        models = [models]
    if len(set(models)) != len(models):
        parser.error(f"repeated model names in {models}")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        parser.error(f"--folds (or crossval.folds) must be an integer >= 2, got {folds!r}")
    labels = args.labels or Path("data/noisy") / args.dataset / "labels.csv"
    fold_dirs = {
        m: [args.crossval_root / args.dataset / m / f"fold_{f}" for f in range(folds)] for m in models
    }
    try:
        dataset = assemble(labels_csv=labels, fold_dirs=fold_dirs, out_root=args.out, dataset=args.dataset)
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for model, probs in dataset.pred_probs.items():
        accuracy = float((probs.argmax(1) == dataset.given_labels).mean())
        print(f"{args.dataset}/{model}: {probs.shape[0]} rows x {probs.shape[1]} classes, "
              f"out-of-sample accuracy vs given labels {accuracy:.3f}")
    print(f"{args.dataset}: {len(dataset.given_labels)} examples, {dataset.num_errors} label errors -> "
          f"{args.out / args.dataset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

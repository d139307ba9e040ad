"""Stage `evaluate`: score every dataset with the selected method, then measure how well each
model's and the ensemble's scores rank the real label errors.

    python stages/evaluate.py --scores data/scores --metrics metrics --plots plots

Writes ``<scores>/<dataset>.csv`` (per example: ids, labels, one score column per model and the
ensemble, rank) and ``.json`` (CV accuracies, ensemble weights); ``<metrics>/headline.json`` (the DVC
metrics: each registry metric of the ensemble per dataset); ``<metrics>/models/<dataset>.json``
(every model and the ensemble, with CV accuracy); ``<plots>/{pr,roc,lift}/<dataset>.csv``.
"""

import argparse
import sys
from pathlib import Path

from labelbench.config import ParamsError, load_params
from labelbench.data.io import DataError, atomic_dir, load_dataset, write_csv, write_json
from labelbench.evaluation.evaluate import curve_tables, evaluate_table, headline
from labelbench.evaluation.params import EvaluateParams
from labelbench.evaluation.scoring import score_dataset


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--scores", "--metrics", "--plots"):
        parser.add_argument(name, type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        params = load_params(EvaluateParams)
        datasets = {name: load_dataset(root, name, models=models) for name, (root, models) in params.roots().items()}
        for data in datasets.values():
            if not 0 < params.lift_k <= len(data.given_labels):
                raise ParamsError(f"params.yaml: lift_k = {params.lift_k}: must be in [1, {len(data.given_labels)}] "
                                  f"(the number of examples of {data.name})")
        scored, results, curves = {}, {}, {}
        for name, data in datasets.items():
            table, info = score_dataset(data, models=list(data.pred_probs), method=params.score,
                                        adjust_pred_probs=params.adjust_pred_probs, ensemble=params.ensemble)
            scored[name] = (table, info)
            results[name] = evaluate_table(table, lift_k=params.lift_k, cv_accuracy=info["cv_accuracy"])
            curves[name] = curve_tables(table, dataset=name, points=params.evaluate.curve_points)
    except (DataError, ParamsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    with atomic_dir(args.scores) as scores, atomic_dir(args.metrics / "models") as models, \
            atomic_dir(args.plots / "pr") as pr, atomic_dir(args.plots / "roc") as roc, \
            atomic_dir(args.plots / "lift") as lift:
        for name, (table, info) in scored.items():
            write_csv(scores / f"{name}.csv", table)
            write_json(scores / f"{name}.json", info)
            write_json(models / f"{name}.json", results[name])
            for folder, kind in ((pr, "pr"), (roc, "roc"), (lift, "lift")):
                write_csv(folder / f"{name}.csv", curves[name][kind])
    write_json(args.metrics / "headline.json", headline(results, lift_k=params.lift_k))
    return 0


if __name__ == "__main__":
    sys.exit(main())

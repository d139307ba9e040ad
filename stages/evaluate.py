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

from labelbench.evaluation import numerics  # first: pins numpy's and OpenBLAS's numerics before numpy loads
from labelbench.config import load_params
from labelbench.data.io import atomic_outputs, load_dataset, write_csv, write_json
from labelbench.evaluation.evaluate import curve_tables, evaluate_table, headline
from labelbench.evaluation.metrics import check_lift_k
from labelbench.evaluation.params import EvaluateParams
from labelbench.evaluation.scoring import score_dataset
from labelbench.data.files import stage_main


@stage_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--scores", "--metrics", "--plots"):
        parser.add_argument(name, type=Path, required=True)
    args = parser.parse_args(argv)
    params = load_params(EvaluateParams)
    datasets = {name: load_dataset(root, name, models=models) for name, (root, models) in params.roots().items()}
    check_lift_k(params.lift_k, {name: len(data.given_labels) for name, data in datasets.items()})
    numerics.check()  # after the inputs are checked: a bad file is the error to see first
    scored, results, curves = {}, {}, {}
    for name, data in datasets.items():
        table, info = score_dataset(data, models=list(data.pred_probs), method=params.score,
                                    adjust_pred_probs=params.adjust_pred_probs, ensemble=params.ensemble)
        scored[name] = (table, info)
        results[name] = evaluate_table(table, lift_k=params.lift_k, cv_accuracy=info["cv_accuracy"])
        curves[name] = curve_tables(table, dataset=name, points=params.evaluate.curve_points)
    curve_dirs = {kind: args.plots / kind for kind in ("pr", "roc", "lift")}
    headline_path = args.metrics / "headline.json"
    with atomic_outputs(files=[headline_path], dirs=[args.scores, args.metrics / "models", *curve_dirs.values()]) as tmp:
        for name, (table, info) in scored.items():
            write_csv(tmp[args.scores] / f"{name}.csv", table)
            write_json(tmp[args.scores] / f"{name}.json", info)
            write_json(tmp[args.metrics / "models"] / f"{name}.json", results[name])
            for kind, folder in curve_dirs.items():
                write_csv(tmp[folder] / f"{name}.csv", curves[name][kind])
        write_json(tmp[headline_path], headline(results, lift_k=params.lift_k))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `evaluate`: metrics and curve data of one dataset's score table.

Writes metrics/<dataset>.json (AUROC, AUPRC, lift@k, lift@#errors, CV accuracy per model and
ensemble) and plots/{pr,roc,lift}/<dataset>.csv (long form, one `model` column).
"""

import argparse
import sys

from labelbench.evaluate import curve_tables, cv_accuracies, evaluate_table, read_score_table
from labelbench.io import DataError, load_dataset, write_csv, write_json
from labelbench.params import ParamsError, load_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    name = args.dataset
    try:
        params = load_params(args.params)
        section = params.section("evaluate")
        frame = read_score_table(f"data/scores/{name}.csv")
        models = params.models_for(name)
        data = load_dataset(params.dataset_root(name), name, models=models)
        if list(frame["image_id"]) != data.image_ids:
            raise DataError(f"data/scores/{name}.csv", "rows do not match the dataset's image_ids.txt")
        metrics = evaluate_table(
            frame, lift_k=section.get("lift_k", [100]),
            cv_accuracy=cv_accuracies(data, models=models, ensemble=params.ensemble),
        )
        curves = curve_tables(frame, points=int(section.get("curve_points", 101)))
    except (DataError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_json(f"metrics/{name}.json", metrics)
    for kind, table in curves.items():
        write_csv(f"plots/{kind}/{name}.csv", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage `evaluate`: metrics and curve data of one dataset's score table.

Writes metrics/<dataset>.json (AUROC, AUPRC, lift@k, lift@#errors, CV accuracy per model and
ensemble) and plots/{pr,roc,lift}/<dataset>.csv (long form, one `model` column).
"""

import argparse
import json
import sys
from pathlib import Path

from labelbench.evaluation.evaluate import curve_tables, evaluate_table, read_score_table
from labelbench.data.io import DataError, write_csv, write_json
from labelbench.config import ParamsError, load_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    name = args.dataset
    try:
        section = load_params(args.params).section("evaluate")
        frame = read_score_table(f"data/scores/{name}.csv")
        info_path = Path(f"data/scores/{name}.json")
        try:
            cv_accuracy = json.loads(info_path.read_text())["cv_accuracy"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(info_path, f"unreadable or missing cv_accuracy ({exc})") from None
        metrics = evaluate_table(frame, lift_k=int(section.get("lift_k", [100])[0]), cv_accuracy=cv_accuracy)
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

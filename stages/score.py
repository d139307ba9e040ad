"""Stage `score`: per-example label quality scores of the selected method for one dataset.

Reads params `score`, `adjust_pred_probs`, `ensemble`, the dataset's root and models; writes
data/scores/<dataset>.csv.
"""

import argparse
import sys

from labelbench.evaluate import score_table
from labelbench.io import DataError, load_dataset, write_csv
from labelbench.params import ParamsError, load_params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="default: data/scores/<dataset>.csv")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        models = params.models_for(args.dataset)
        data = load_dataset(params.dataset_root(args.dataset), args.dataset, models=models)
        table = score_table(
            data, models=models, method=params.score,
            adjust_pred_probs=params.adjust_pred_probs, ensemble=params.ensemble,
        )
    except (DataError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_csv(args.out or f"data/scores/{args.dataset}.csv", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

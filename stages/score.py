"""Stage `score`: per-example label quality scores of the selected method for one dataset.

Reads params `score`, `adjust_pred_probs`, `ensemble`, the dataset's root and models; writes
data/scores/<dataset>.csv and data/scores/<dataset>.json (CV accuracies, ensemble weights).
"""

import argparse
import sys

from labelbench.data.io import DataError, load_dataset, write_csv, write_json
from labelbench.config import ParamsError, load_params
from labelbench.evaluation.scoring import score_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    try:
        params = load_params(args.params)
        models = params.models_for(args.dataset)
        data = load_dataset(params.dataset_root(args.dataset), args.dataset, models=models)
        table, info = score_dataset(
            data, models=models, method=params.score,
            adjust_pred_probs=params.adjust_pred_probs, ensemble=params.ensemble,
        )
    except (DataError, ParamsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_csv(f"data/scores/{args.dataset}.csv", table)
    write_json(f"data/scores/{args.dataset}.json", info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

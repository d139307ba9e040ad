"""Print the headline table (metrics/models/<dataset>.json of the selected score) in the terminal."""

import sys
from pathlib import Path

from rich.console import Console

from labelbench.config import load_params
from labelbench.data.files import stage_main
from labelbench.evaluation.params import EvaluateParams
from labelbench.evaluation.report import headline
from labelbench.evaluation.scores import resolve_method


@stage_main
def main(argv=None) -> int:
    params = load_params(EvaluateParams)
    adjust = " + adjust_pred_probs" if params.adjust_pred_probs else ""
    title = f"Label error detection with {params.score}{adjust} (ensemble: {params.ensemble})"
    method = resolve_method(params.score, adjust_pred_probs=params.adjust_pred_probs)
    Console(width=120).print(headline(Path("metrics"), list(params.roots()), lift_k=params.lift_k, title=title,
                                      method=method, adjust_pred_probs=params.adjust_pred_probs))
    print("Full tables: reports/benchmark.md   All variants: metrics/benchmark.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

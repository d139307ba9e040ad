"""Print the headline table (metrics/models/<dataset>.json of the selected score) in the terminal."""

import sys
from pathlib import Path

from rich.console import Console

from labelbench.config import load_params
from labelbench.data.files import DataError, stage_main
from labelbench.data.verify import changed_params, verify
from labelbench.evaluation.params import EvaluateParams
from labelbench.evaluation.report import headline
from labelbench.evaluation.scores import resolve_method


@stage_main
def main(argv=None) -> int:
    params = load_params(EvaluateParams)
    for path in [Path("metrics/benchmark.csv"), *(Path("metrics/models") / f"{name}.json" for name in params.roots())]:
        verify(path)  # the bytes DVC recorded (no-op outside a DVC repository)
    if changed := changed_params("evaluate"):  # else the title would name params that did not compute the numbers
        raise DataError("metrics/models", f"computed with other params ({'; '.join(changed)}): run `dvc repro` "
                                          "first")
    adjust = " + adjust_pred_probs" if params.adjust_pred_probs else ""
    title = f"Label error detection with {params.score}{adjust} (ensemble: {params.ensemble})"
    method = resolve_method(params.score, adjust_pred_probs=params.adjust_pred_probs)
    Console(width=120).print(headline(Path("metrics"), list(params.roots()), lift_k=params.lift_k, title=title,
                                      method=method, adjust_pred_probs=params.adjust_pred_probs))
    print("Full tables: reports/benchmark.md   All variants: metrics/benchmark.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

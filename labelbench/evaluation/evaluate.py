"""The `evaluate` stage: metrics and curves of a score table (written by :mod:`labelbench.evaluation.scoring`).

Imports only numpy and pandas, so the stage starts fast. Score table (``data/scores/<dataset>.csv``), one row per example, in the dataset's row order:
``image_id, given_label, true_label (if known), is_label_error, <model>..., ensemble:<scheme>, rank``
where each model column holds label quality scores (low = likely error) and ``rank`` orders the
ensemble column (1 = most likely a label error).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from labelbench.data.io import DataError
from labelbench.evaluation.metrics import Ranking, ranking_metrics


def read_score_table(path: str | Path) -> pd.DataFrame:
    """Read and validate a score table written by :func:`score_table`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str}, float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV ({exc})") from None
    required = {"image_id", "given_label", "is_label_error", "rank"}
    missing = required - set(frame.columns)
    if missing:
        raise DataError(path, f"missing columns {sorted(missing)}")
    if frame.empty:
        raise DataError(path, "has no rows")
    if not frame["is_label_error"].isin([0, 1]).all():
        raise DataError(path, "is_label_error must be 0 or 1")
    for column in score_columns(frame):
        values = frame[column].to_numpy()
        if not np.issubdtype(values.dtype, np.floating) or not np.isfinite(values).all():
            raise DataError(path, f"column {column!r} must hold finite numbers")
        if values.min() < 0 or values.max() > 1:
            raise DataError(path, f"column {column!r} has scores outside [0, 1]")
    return frame


def score_columns(frame: pd.DataFrame) -> list[str]:
    fixed = {"image_id", "given_label", "true_label", "is_label_error", "rank"}
    return [c for c in frame.columns if c not in fixed]


def evaluate_table(
    frame: pd.DataFrame, *, lift_k: int = 100, cv_accuracy: dict[str, float] | None = None
) -> dict:
    """Metrics per score column: AUROC, AUPRC, lift@k, lift@(number of errors), CV accuracy.

    The top-level metrics repeat the headline column's (the ensemble), so that `dvc exp show
    --drop models` gives one compact column per metric and dataset.
    """
    is_error = frame["is_label_error"].to_numpy().astype(bool)
    per_model = {}
    for column in score_columns(frame):
        metrics = ranking_metrics(is_error=is_error, scores=frame[column].to_numpy(), lift_k=lift_k)
        if cv_accuracy and column in cv_accuracy:
            metrics["cv_accuracy"] = cv_accuracy[column]
        per_model[column] = metrics
    # Headline: the ensemble column when there is one (the last score column), else the only model.
    headline = per_model[score_columns(frame)[-1]]
    return {
        "num_examples": int(is_error.shape[0]),
        "num_errors": int(is_error.sum()),
        **{k: v for k, v in headline.items() if k != "cv_accuracy"},
        "models": per_model,
    }


def curve_tables(frame: pd.DataFrame, *, points: int = 101, lift_k_grid=None) -> dict[str, pd.DataFrame]:
    """Long-form curve data for DVC plots, resampled on common grids so files stay small.

    ``pr``: recall grid -> best precision reachable at that recall or more (interpolated PR);
    ``roc``: false positive rate grid -> best true positive rate at that FPR or less;
    ``lift``: k grid -> lift@k. Each has a ``model`` column.
    """
    is_error = frame["is_label_error"].to_numpy().astype(bool)
    n = is_error.shape[0]
    if lift_k_grid is None:
        lift_k_grid = np.unique(np.geomspace(10, n, num=30).astype(int))
    grid = np.linspace(0, 1, points)
    pr_rows, roc_rows, lift_rows = [], [], []
    for column in score_columns(frame):
        ranking = Ranking.from_scores(is_error=is_error, scores=frame[column].to_numpy())
        precision, recall = ranking.pr_curve()
        best_from_here = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, grid, side="left").clip(max=recall.shape[0] - 1)
        pr_rows.append(pd.DataFrame({"model": column, "recall": grid, "precision": best_from_here[at]}))
        fpr, tpr = ranking.roc_curve()
        upto = np.searchsorted(fpr, grid, side="right") - 1
        roc_rows.append(pd.DataFrame({"model": column, "fpr": grid, "tpr": tpr[upto]}))
        lifts = [ranking.lift_at_k(int(k)) for k in lift_k_grid if 0 < k <= n]
        lift_rows.append(pd.DataFrame({"model": column, "k": [int(k) for k in lift_k_grid if 0 < k <= n], "lift": lifts}))
    return {
        "pr": pd.concat(pr_rows, ignore_index=True),
        "roc": pd.concat(roc_rows, ignore_index=True),
        "lift": pd.concat(lift_rows, ignore_index=True),
    }

"""The `score` and `evaluate` stages: per-example scores of the selected method, then their metrics.

Score table (``data/scores/<dataset>.csv``), one row per example, in the dataset's row order:
``image_id, given_label, true_label (if known), is_label_error, <model>..., ensemble:<scheme>, rank``
where each model column holds label quality scores (low = likely error) and ``rank`` orders the
ensemble column (1 = most likely a label error).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .ensembles import ensemble_scores, ensemble_weights, weighted_pred_probs
from .io import DataError, Dataset
from .metrics import Ranking, ranking_metrics
from .scores import label_quality_scores

ENSEMBLE_PREFIX = "ensemble:"


def error_rank(scores: np.ndarray) -> np.ndarray:
    """Rank (N,) with 1 = most likely mislabeled, using the authors' ``argsort(1 - score)`` order.

    >>> error_rank(np.array([0.9, 0.1, 0.5]))
    array([3, 1, 2])
    """
    order = np.argsort(1 - scores)
    rank = np.empty(scores.shape[0], dtype=np.int64)
    rank[order[::-1]] = np.arange(1, scores.shape[0] + 1)
    return rank


def score_table(
    dataset: Dataset, *, models: list[str], method: str, adjust_pred_probs: bool, ensemble: str
) -> pd.DataFrame:
    """Per-example scores of ``method`` for each model and the ``ensemble`` of all of them."""
    labels = dataset.given_labels
    table = {"image_id": dataset.image_ids, "given_label": labels}
    if dataset.true_labels is not None:
        table["true_label"] = dataset.true_labels
    table["is_label_error"] = dataset.label_errors.astype(np.int8)
    member_scores = []
    for model in models:
        scores = label_quality_scores(
            labels=labels, pred_probs=dataset.pred_probs[model], method=method,
            adjust_pred_probs=adjust_pred_probs,
        )
        table[model] = scores
        member_scores.append(scores)
    pred_probs_list = [dataset.pred_probs[m] for m in models]
    combined = ensemble_scores(
        ensemble, labels=labels, pred_probs_list=pred_probs_list, method=method,
        adjust_pred_probs=adjust_pred_probs, member_scores=member_scores,
    )
    table[ENSEMBLE_PREFIX + ensemble] = combined
    table["rank"] = error_rank(combined)
    return pd.DataFrame(table)


def cv_accuracies(dataset: Dataset, *, models: list[str], ensemble: str) -> dict[str, float]:
    """Accuracy of each model's out-of-sample argmax against the given labels, and the ensemble's
    (argmax of the pred_probs averaged with the scheme's weights)."""
    labels = dataset.given_labels
    out = {m: float((dataset.pred_probs[m].argmax(axis=1) == labels).mean()) for m in models}
    pred_probs_list = [dataset.pred_probs[m] for m in models]
    weights = ensemble_weights(ensemble, labels=labels, pred_probs_list=pred_probs_list)
    averaged = weighted_pred_probs(weights, pred_probs_list)
    out[ENSEMBLE_PREFIX + ensemble] = float((averaged.argmax(axis=1) == labels).mean())
    return out


def read_score_table(path: str | Path) -> pd.DataFrame:
    """Read and validate a score table written by :func:`score_table`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        frame = pd.read_csv(path, dtype={"image_id": str})
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
    frame: pd.DataFrame, *, lift_k=(100,), cv_accuracy: dict[str, float] | None = None
) -> dict:
    """Metrics per score column: AUROC, AUPRC, lift@k, lift@(number of errors), CV accuracy."""
    is_error = frame["is_label_error"].to_numpy().astype(bool)
    per_model = {}
    for column in score_columns(frame):
        metrics = ranking_metrics(is_error=is_error, scores=frame[column].to_numpy(), lift_k=lift_k)
        if cv_accuracy and column in cv_accuracy:
            metrics["cv_accuracy"] = cv_accuracy[column]
        per_model[column] = metrics
    return {
        "num_examples": int(is_error.shape[0]),
        "num_errors": int(is_error.sum()),
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

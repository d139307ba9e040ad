"""The `score` stage: per-example label quality scores of the selected method for one dataset.

Writes the score table described in :mod:`labelbench.evaluation.evaluate`, plus the models' cross-validation
accuracies and the ensemble's member weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labelbench.evaluation.ensembles import ensemble_scores, ensemble_weights, weighted_pred_probs
from labelbench.data.io import Dataset
from labelbench.evaluation.scores import label_quality_scores

ENSEMBLE_PREFIX = "ensemble:"


def error_rank(scores: np.ndarray) -> np.ndarray:
    """Rank (N,) with 1 = most likely mislabeled, using the authors' ``argsort(1 - score)`` order
    (stable: ties keep index order on every host, as :class:`~labelbench.evaluation.metrics.Ranking` ranks).

    >>> error_rank(np.array([0.9, 0.1, 0.5]))
    array([3, 1, 2])
    """
    order = np.argsort(1 - scores, kind="stable")
    rank = np.empty(scores.shape[0], dtype=np.int64)
    rank[order[::-1]] = np.arange(1, scores.shape[0] + 1)
    return rank


def score_dataset(
    dataset: Dataset, *, models: list[str], method: str, adjust_pred_probs: bool, ensemble: str
) -> tuple[pd.DataFrame, dict]:
    """Per-example scores of ``method`` for each model and the ``ensemble`` of all of them.

    Returns the score table and ``{"cv_accuracy": {column: accuracy}, "ensemble_weights":
    {model: weight}}``; a dataset with a single model gets no ensemble column.
    """
    labels = dataset.given_labels
    table = {"image_id": dataset.image_ids, "given_label": labels}
    if dataset.true_labels is not None:
        table["true_label"] = dataset.true_labels
    table["is_label_error"] = dataset.label_errors.astype(np.int8)
    pred_probs_list = [dataset.pred_probs[m] for m in models]
    member_scores = [
        label_quality_scores(labels=labels, pred_probs=p, method=method, adjust_pred_probs=adjust_pred_probs)
        for p in pred_probs_list
    ]
    table.update(zip(models, member_scores))
    info = {"cv_accuracy": {m: float((p.argmax(axis=1) == labels).mean()) for m, p in zip(models, pred_probs_list)}}
    ranked_by = member_scores[0]
    if len(models) > 1:
        weights = ensemble_weights(ensemble, labels=labels, pred_probs_list=pred_probs_list)
        ranked_by = ensemble_scores(
            ensemble, labels=labels, pred_probs_list=pred_probs_list, method=method,
            adjust_pred_probs=adjust_pred_probs, weights=weights, member_scores=member_scores,
        )
        table[ENSEMBLE_PREFIX + ensemble] = ranked_by
        # the ensemble's "CV accuracy": argmax of the pred_probs averaged with the scheme's weights
        averaged = weighted_pred_probs(weights, pred_probs_list)
        info["cv_accuracy"][ENSEMBLE_PREFIX + ensemble] = float((averaged.argmax(axis=1) == labels).mean())
        info["ensemble_weights"] = {m: float(w) for m, w in zip(models, weights)}
    table["rank"] = error_rank(ranked_by)
    return pd.DataFrame(table), info

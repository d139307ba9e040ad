"""The `score` stage: per-example label quality scores of the selected method for one dataset.

Writes the score table described in :mod:`labelbench.evaluation.evaluate`, plus the models' cross-validation
accuracies and the ensemble's member weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labelbench.evaluation.ensembles import ENSEMBLE_PREFIX, accuracy, score_models
from labelbench.data.io import Dataset


def error_rank(scores: np.ndarray) -> np.ndarray:
    """Rank (N,) with 1 = most likely mislabeled, using the authors' ``argsort(1 - score)`` order
    (stable: ties keep index order on every host, as :class:`~labelbench.evaluation.metrics.Ranking` ranks).

    >>> error_rank(np.array([0.9, 0.1, 0.5]))
    array([3, 1, 2])
    """
    return np.argsort(np.argsort(1 - scores, kind="stable")[::-1]) + 1  # the inverse of that order, from 1


def score_dataset(
    dataset: Dataset, *, models: list[str], method: str, adjust_pred_probs: bool, ensemble: str
) -> tuple[pd.DataFrame, dict]:
    """Per-example scores of ``method`` for each model and the ``ensemble`` of all of them
    (:func:`~labelbench.evaluation.ensembles.score_models`).

    Returns the score table and ``{"cv_accuracy": {column: accuracy}, "ensemble_weights":
    {model: weight}}``; a dataset with a single model gets no ensemble column.
    """
    labels = dataset.given_labels
    table = {"image_id": dataset.image_ids, "given_label": labels}
    if dataset.true_labels is not None:
        table["true_label"] = dataset.true_labels
    table["is_label_error"] = dataset.label_errors.astype(np.int8)
    scored = score_models({m: dataset.pred_probs[m] for m in models}, labels=labels, method=method,
                          adjust_pred_probs=adjust_pred_probs, ensemble=ensemble)
    table.update(scored.columns)
    info = {"cv_accuracy": {m: accuracy(labels, dataset.pred_probs[m]) for m in models}}
    if scored.ensemble is not None:
        # the ensemble's "CV accuracy": argmax of the pred_probs averaged with the scheme's weights
        info["cv_accuracy"][ENSEMBLE_PREFIX + ensemble] = accuracy(labels, scored.pred_probs)
        info["ensemble_weights"] = {m: float(w) for m, w in zip(models, scored.weights)}
    table["rank"] = error_rank(scored.ranking)
    return pd.DataFrame(table), info

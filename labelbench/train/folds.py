"""One stratified k-fold split per dataset, stratified on the given labels.

``sklearn.model_selection.StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)``;
with ``seed=None`` it is ``shuffle=False`` (the authors' choice), so folds are contiguous
runs of each class in input order. Every class needs at least ``k`` members, otherwise some
fold would miss it: that is an error here, not sklearn's warning.

>>> assign_folds(labels=np.array([0, 0, 1, 1, 0, 1]), k=3, seed=None).tolist()
[0, 1, 0, 1, 2, 2]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold


def assign_folds(*, labels: np.ndarray, k: int, seed: int | None = None) -> np.ndarray:
    """Fold index (N,) int64 in ``0..k-1`` for labels (N,) int >= 0; each row in exactly one fold.

    ValueError for a bad k (sklearn's) or when a class has fewer than k members (naming class and count).
    """
    splitter = StratifiedKFold(n_splits=k, shuffle=seed is not None, random_state=seed)
    classes, counts = np.unique(labels, return_counts=True)
    small = counts < k
    if small.any():
        detail = ", ".join(f"class {c} has {n}" for c, n in zip(classes[small], counts[small]))
        raise ValueError(
            f"every class needs at least k={k} members or a class would be missing from a fold: {detail}"
        )
    folds = np.empty(len(labels), dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros((len(labels), 1)), labels)):
        folds[test] = fold
    return folds


def folds_table(*, labels: pd.DataFrame, k: int, seed: int | None = None) -> pd.DataFrame:
    """Columns ``image_id, fold`` (N rows, input order) for a validated labels.csv frame."""
    folds = assign_folds(labels=labels["given_label"].to_numpy(dtype=np.int64), k=k, seed=seed)
    return pd.DataFrame({"image_id": labels["image_id"].to_numpy(), "fold": folds})

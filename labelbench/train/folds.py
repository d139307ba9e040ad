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

    Raises ValueError for k < 2 or when a class has fewer than k members (naming class and count).
    """
    labels = np.asarray(labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("labels must be integers >= 0")
    classes, counts = np.unique(labels, return_counts=True)
    small = counts < k
    if small.any():
        detail = ", ".join(f"class {c} has {n}" for c, n in zip(classes[small], counts[small]))
        raise ValueError(
            f"every class needs at least k={k} members or a class would be missing from a fold: {detail}"
        )
    splitter = StratifiedKFold(n_splits=int(k), shuffle=seed is not None, random_state=seed)
    folds = np.full(labels.shape[0], -1, dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros((labels.shape[0], 1)), labels)):
        folds[test] = fold
    assert (folds >= 0).all()
    return folds


def folds_table(*, labels: pd.DataFrame, k: int, seed: int | None = None) -> pd.DataFrame:
    """Columns ``image_id, fold`` (N rows, input order) for a validated labels.csv frame."""
    folds = assign_folds(labels=labels["given_label"].to_numpy(dtype=np.int64), k=k, seed=seed)
    return pd.DataFrame({"image_id": labels["image_id"].to_numpy(), "fold": folds})

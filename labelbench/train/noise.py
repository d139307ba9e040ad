"""Synthetic label noise, exactly as the authors made CIFAR-10S.

The recipe (cleanlab's noise generation; ``K`` classes, ``a`` = noise_amount, ``s`` = sparsity)::

    noise_matrix = generate_noise_matrix_from_trace(
        K, trace=int(K * (1 - a)), frac_zero_noise_rates=s, valid_noise_matrix=False, seed=seed)
    np.random.seed(seed)
    noisy = generate_noisy_labels(true_labels, noise_matrix)

applied to the true labels **in ImageFolder order** (:func:`labelbench.data.files.image_id_sort_key`).
With ``seed=0`` and ``a=0.2, s=0.4`` this reproduces the published CIFAR-10S labels on all 50,000
rows. ``int()`` truncates the trace, so the expected noise rate is ``(K - int(K * (1 - a))) / K``
for balanced classes. The global numpy RNG state is restored afterwards.

>>> true = np.repeat(np.arange(4), 250)
>>> noisy, matrix = add_noise(true_labels=true, noise_amount=0.5, sparsity=0.0, seed=0)
>>> noisy.shape, matrix.shape, round(float((noisy != true).mean()), 1)
((1000,), (4, 4), 0.5)
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import pandas as pd
from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace, generate_noisy_labels

from labelbench.data.files import sorted_order


@contextlib.contextmanager
def preserved_numpy_rng() -> Iterator[None]:
    """Restore the legacy global ``np.random`` state on exit (cleanlab seeds it)."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def noise_trace(*, noise_amount: float, num_classes: int) -> int:
    """The trace ``int(K * (1 - noise_amount))``; ValueError when it is below 1 (params.yaml checks the
    ranges of noise_amount and sparsity, but not against K)."""
    trace = int(num_classes * (1 - noise_amount))
    if trace < 1:
        raise ValueError(
            f"noise_amount={noise_amount!r} gives trace int({num_classes} * (1 - {noise_amount!r})) = {trace}; "
            f"valid noise_amount is in [0, 1) with int(K * (1 - noise_amount)) >= 1 "
            f"(K = {num_classes}: below {1 - 1 / num_classes:g})"
        )
    return trace


def make_noise_matrix(*, num_classes: int, noise_amount: float, sparsity: float, seed: int = 0) -> np.ndarray:
    """cleanlab's noise matrix ``P(given=i | true=j)``, shape (K, K), columns summing to 1."""
    trace = noise_trace(noise_amount=noise_amount, num_classes=num_classes)
    with preserved_numpy_rng():
        matrix = generate_noise_matrix_from_trace(
            num_classes, trace=trace, frac_zero_noise_rates=sparsity, valid_noise_matrix=False, seed=seed
        )
    return np.asarray(matrix, dtype=np.float64)


def add_noise(
    *, true_labels: np.ndarray, noise_amount: float, sparsity: float, seed: int = 0, num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels (N,) int64 and the noise matrix (K, K) float64 for true labels (N,) int >= 0.

    ``num_classes`` defaults to ``max(true_labels) + 1``; every class 0..K-1 must occur
    (cleanlab's generator needs it). Rows are used in the order given. ``noise_amount == 0``
    returns the labels unchanged with an identity matrix.
    """
    true_labels = np.asarray(true_labels)
    if not np.issubdtype(true_labels.dtype, np.integer):
        raise ValueError(f"true_labels must be integers, got dtype {true_labels.dtype}")
    k = int(true_labels.max()) + 1 if num_classes is None else num_classes
    noise_trace(noise_amount=noise_amount, num_classes=k)
    if true_labels.max() >= k:
        raise ValueError(f"true_labels must be < num_classes={k}, got max {true_labels.max()}")
    absent = np.flatnonzero(np.bincount(true_labels, minlength=k) == 0)
    if absent.size:
        raise ValueError(f"every class 0..{k - 1} must occur in true_labels; class(es) {absent.tolist()} do not")
    true_labels = true_labels.astype(np.int64, copy=False)
    if noise_amount == 0:
        return true_labels.copy(), np.eye(k)
    matrix = make_noise_matrix(num_classes=k, noise_amount=noise_amount, sparsity=sparsity, seed=seed)
    with preserved_numpy_rng():
        np.random.seed(seed)
        noisy = generate_noisy_labels(true_labels, matrix)
    return np.asarray(noisy, dtype=np.int64), matrix


def noisy_labels_table(
    *, labels: pd.DataFrame, noise_amount: float, sparsity: float, seed: int = 0, num_classes: int | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The recipe on a :func:`~labelbench.data.files.read_labels_csv` frame (true labels: ``true_label``, else
    ``given_label``): the frame with given_label = noisy, true_label, label_error = given != true, unchanged
    when ``noise_amount == 0``; and the ``noise.json`` record (noise_matrix[i][j] = P(given=i | true=j))."""
    true = labels["true_label"].fillna(labels["given_label"]).to_numpy(dtype=np.int64)
    k = int(true.max()) + 1 if num_classes is None else int(num_classes)
    noise_trace(noise_amount=noise_amount, num_classes=k)
    record = {"noise_amount": noise_amount, "sparsity": sparsity, "seed": seed, "num_classes": k,
              "num_examples": int(len(labels))}
    if noise_amount == 0:
        return labels.copy(), {**record, "num_changed": 0, "realised_noise_rate": 0.0, "noise_matrix": None}
    order = sorted_order(labels["image_id"].tolist())
    noisy_sorted, matrix = add_noise(
        true_labels=true[order], noise_amount=noise_amount, sparsity=sparsity, seed=seed, num_classes=k
    )
    noisy = np.empty_like(true)
    noisy[order] = noisy_sorted
    out = labels.copy()
    out["given_label"] = noisy
    out["true_label"] = pd.array(true, dtype="Int64")
    out["label_error"] = pd.array((noisy != true).astype(np.int64), dtype="Int64")
    changed = int((noisy != true).sum())
    return out, {**record, "num_changed": changed, "realised_noise_rate": changed / len(true),
                 "noise_matrix": matrix.tolist()}

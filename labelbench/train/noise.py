"""Synthetic label noise: uniform, exactly as the authors made CIFAR-10S, or instance-dependent.

The uniform recipe (cleanlab's noise generation; ``K`` classes, ``a`` = noise_amount, ``s`` = sparsity)::

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

Uniform noise picks the examples to flip at random, whatever they look like, which flatters every detector:
people mislabel the ambiguous ones. :func:`instance_noise` flips the examples a weak model finds ambiguous, each
toward the class that model confuses it with.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from cleanlab.benchmarking.noise_generation import generate_noise_matrix_from_trace, generate_noisy_labels
from PIL import Image

from labelbench.data.files import open_image, rgb_image, sorted_order

#: The weak model's input: every image as RGB at this side (Pillow's integer BOX resampling).
WEAK_MODEL_SIDE = 16


def preserved_numpy_rng() -> contextlib.ExitStack:
    """Restore the legacy global ``np.random`` state on exit (cleanlab seeds it)."""
    restore = contextlib.ExitStack()
    restore.callback(np.random.set_state, np.random.get_state())
    return restore


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


def check_classes(true_labels: np.ndarray, k: int) -> None:
    """ValueError unless ``true_labels`` (N,) are < ``k`` (as cleanlab's generator checks) and hold every class."""
    if true_labels.max() >= k:
        raise ValueError(f"true_labels must be < num_classes={k}, got max {true_labels.max()}")
    absent = np.flatnonzero(np.bincount(true_labels, minlength=k) == 0)
    if absent.size:
        raise ValueError(f"every class 0..{k - 1} must occur in true_labels; class(es) {absent.tolist()} do not")


def add_noise(
    *, true_labels: np.ndarray, noise_amount: float, sparsity: float, seed: int = 0, num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels (N,) int64 and the noise matrix (K, K) float64 for true labels (N,) int >= 0.

    ``num_classes`` defaults to ``max(true_labels) + 1``; every class 0..K-1 must occur
    (cleanlab's generator needs it). Rows are used in the order given. ``noise_amount == 0``
    returns the labels unchanged with an identity matrix.
    """
    true_labels = np.asarray(true_labels)
    if true_labels.dtype.kind not in "iu":  # np.integer admits timedelta64
        raise ValueError(f"true_labels must be integers, got dtype {true_labels.dtype}")
    k = int(true_labels.max()) + 1 if num_classes is None else num_classes
    noise_trace(noise_amount=noise_amount, num_classes=k)
    check_classes(true_labels, k)
    true_labels = true_labels.astype(np.int64, copy=False)
    if noise_amount == 0:
        return true_labels.copy(), np.eye(k)
    matrix = make_noise_matrix(num_classes=k, noise_amount=noise_amount, sparsity=sparsity, seed=seed)
    with preserved_numpy_rng():
        np.random.seed(seed)
        noisy = generate_noisy_labels(true_labels, matrix)
    return np.asarray(noisy, dtype=np.int64), matrix


def weak_model_pixels(images: os.PathLike | str, image_ids: Sequence[str]) -> np.ndarray:
    """The weak model's input (N, 3 * side * side) int64: each image as RGB at side :data:`WEAK_MODEL_SIDE`
    (Pillow's BOX resampling, integer arithmetic: the same values on any host); DataError naming an unreadable
    image."""
    rows = []
    for image_id in image_ids:
        with open_image(Path(images) / image_id) as image:
            small = rgb_image(image).resize((WEAK_MODEL_SIDE, WEAK_MODEL_SIDE), Image.Resampling.BOX)
        rows.append(np.asarray(small, dtype=np.int64).reshape(-1))
    return np.stack(rows)


def class_mean_distances(pixels: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Squared distance (N, K) float64 of each row of ``pixels`` (N, D) int to each class's mean under ``labels``
    (N,): the nearest-class-mean classifier trained on those labels. The numerators are exact int64
    (``||c x - S||^2`` for class sum S and count c, below 2**63 for 8-bit pixels, D <= 768, c <= 50,000), then one
    correctly rounded division each, so the result is the same on any host (no BLAS, no reduction order)."""
    sums = np.zeros((num_classes, pixels.shape[1]), dtype=np.int64)
    np.add.at(sums, labels, pixels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)
    numerators = (counts[None, :] ** 2 * (pixels * pixels).sum(axis=1)[:, None]
                  - 2 * counts[None, :] * (pixels @ sums.T) + (sums * sums).sum(axis=1)[None, :])
    return numerators.astype(np.float64) / (counts.astype(np.float64) ** 2)[None, :]


def instance_noise(
    *, pixels: np.ndarray, true_labels: np.ndarray, noise_amount: float, seed: int, num_classes: int,
) -> tuple[np.ndarray, dict]:
    """Instance-dependent noise: noisy labels (N,) int64 and a record of the weak model.

    The weak model is the nearest class mean of ``pixels`` (N, D) int (:func:`weak_model_pixels`) trained on
    ``true_labels`` (N,); for example i with squared distance ``d_true`` to its class's mean, its most confused
    class is the nearest other mean (``d_other``; the lowest class index on a tie). ``round(noise_amount * N)``
    examples are drawn without replacement (``numpy.random.default_rng(seed)``) with probability proportional to
    ``(d_true / d_other) ** 2``, and each is given its most confused class: the ambiguous examples are the likely
    flips, and each flip is the plausible mistake. Every class 0..K-1 must occur in ``true_labels``.

    >>> pixels = np.array([[0], [1], [2], [9], [10], [11], [5]])
    >>> noisy, record = instance_noise(pixels=pixels, true_labels=np.array([0, 0, 0, 1, 1, 1, 1]),
    ...                                noise_amount=0.15, seed=0, num_classes=2)
    >>> noisy.tolist(), record["num_changed"]  # the 5 sits between the classes: the one flipped
    ([0, 0, 0, 1, 1, 1, 0], 1)
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    check_classes(true_labels, num_classes)
    rows = np.arange(len(true_labels))
    distances = class_mean_distances(np.asarray(pixels, dtype=np.int64), true_labels, num_classes)
    d_true = distances[rows, true_labels]
    distances[rows, true_labels] = np.inf
    confused = distances.argmin(axis=1)
    d_other = distances[rows, confused]
    ratio = np.divide(d_true, d_other, out=np.ones_like(d_true), where=d_other > 0)
    weights = ratio * ratio
    count = round(noise_amount * len(true_labels))
    noisy = true_labels.copy()
    if count:
        # math.fsum: the exactly rounded sum, the same whatever numpy's reduction order
        chosen = np.random.default_rng(seed).choice(len(noisy), size=count, replace=False,
                                                    p=weights / math.fsum(weights.tolist()))
        noisy[chosen] = confused[chosen]
    return noisy, {"weak_model": f"nearest class mean of RGB {WEAK_MODEL_SIDE}x{WEAK_MODEL_SIDE} pixels, "
                                 "trained on the true labels",
                   "weak_model_accuracy": float((d_true <= d_other).mean()),  # the nearest mean is the true one
                   "num_changed": int((noisy != true_labels).sum())}


def noisy_labels_table(
    *, labels: pd.DataFrame, noise: str = "uniform", noise_amount: float, sparsity: float | None = None,
    seed: int = 0, num_classes: int | None = None, images: os.PathLike | str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The recipe on a :func:`~labelbench.data.files.read_labels_csv` frame (true labels: ``true_label``, else
    ``given_label``): the frame with given_label = noisy, true_label, label_error = given != true, unchanged
    when ``noise_amount == 0``; and the ``noise.json`` record. ``noise``: ``uniform`` (:func:`add_noise` with
    ``sparsity``; noise_matrix[i][j] = P(given=i | true=j)) or ``instance`` (:func:`instance_noise` on the
    images under the folder ``images``)."""
    true = labels["true_label"].fillna(labels["given_label"]).to_numpy(dtype=np.int64)
    k = int(true.max()) + 1 if num_classes is None else int(num_classes)
    if noise == "uniform":  # the record's keys as before instance noise existed (noise.json keeps its bytes)
        record = {"noise_amount": noise_amount, "sparsity": sparsity}
    else:
        record = {"noise": noise, "noise_amount": noise_amount}
    record.update(seed=seed, num_classes=k, num_examples=int(len(labels)))
    if noise_amount == 0:
        return labels.copy(), {**record, "num_changed": 0, "realised_noise_rate": 0.0, "noise_matrix": None}
    unknown = (labels["label_error"].eq(1) & labels["true_label"].isna()).fillna(False).astype(bool)
    if unknown.any():  # their true label is not known: the noise would be drawn from the wrong one, erasing them
        raise ValueError(f"{int(unknown.sum())} row(s) are label errors without a true_label (first "
                         f"{labels['image_id'][unknown].iloc[0]!r}): noise cannot be added to them; use noise_amount 0")
    order = sorted_order(labels["image_id"].tolist())
    if noise == "uniform":
        noisy_sorted, matrix = add_noise(
            true_labels=true[order], noise_amount=noise_amount, sparsity=sparsity, seed=seed, num_classes=k
        )
        extra = {"noise_matrix": matrix.tolist()}
    else:
        ids = labels["image_id"].to_numpy()[order].tolist()
        noisy_sorted, weak = instance_noise(pixels=weak_model_pixels(images, ids), true_labels=true[order],
                                            noise_amount=noise_amount, seed=seed, num_classes=k)
        extra = {"weak_model": weak["weak_model"], "weak_model_accuracy": weak["weak_model_accuracy"]}
    noisy = np.empty_like(true)
    noisy[order] = noisy_sorted
    out = labels.copy()
    out["given_label"] = noisy
    out["true_label"] = pd.array(true, dtype="Int64")
    out["label_error"] = pd.array((noisy != true).astype(np.int64), dtype="Int64")
    changed = int((noisy != true).sum())
    return out, {**record, "num_changed": changed, "realised_noise_rate": changed / len(true), **extra}

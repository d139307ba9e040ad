"""Label quality scores: one registry from method name to function.

Every score is an array of shape (N,) in [0, 1] where **low means likely mislabeled**
(cleanlab's convention); "error-ness" is ``1 - score``.

cleanlab's own methods (``self_confidence``, ``normalized_margin``,
``confidence_weighted_entropy``) are computed by cleanlab, or by vectorised code that a
test holds to cleanlab within 1e-12. ``entropy`` and ``least_confidence`` are the
label-agnostic uncertainty baselines of the paper.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# cleanlab (and scikit-learn under it) takes ~1 s to import: imported where needed, so stages
# that only read params or metrics start fast.


def given_value(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``values[..., i, labels[i]]``: each example's value for its given label. (E, N, K) or (N, K), (N,) -> (E, N)
    or (N,)."""
    return np.take_along_axis(values, np.broadcast_to(labels[:, None], values.shape[:-1] + (1,)), axis=-1)[..., 0]


def margin(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``values[..., i, labels[i]] - max_{j != labels[i]} values[..., i, j]``, in ``values``' dtype.
    (E, N, K) or (N, K), (N,) -> (E, N) or (N,)."""
    others = values.copy()
    np.put_along_axis(others, np.broadcast_to(labels[:, None], values.shape[:-1] + (1,)), -np.inf, axis=-1)
    return given_value(values, labels) - others.max(axis=-1)


def self_confidence(*, labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``P[i, labels[i]]``: the probability the model gives the given label. Shapes (N,), (N, K) -> (N,)."""
    return given_value(pred_probs, labels)


def normalized_margin(*, labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``(P[k] - max_{j != k} P[j] + 1) / 2`` for given label k. Shapes (N,), (N, K) -> (N,)."""
    return (margin(pred_probs, labels) + 1) / 2


def confidence_weighted_entropy(*, labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """cleanlab's rescaled ``entropy(P) / P[k]``. Shapes (N,), (N, K) -> (N,)."""
    from cleanlab.rank import get_confidence_weighted_entropy_for_each_label

    return get_confidence_weighted_entropy_for_each_label(labels, pred_probs)


def entropy(*, labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``1 - H(P) / log K``: certain predictions look clean whatever the label. (N, K) -> (N,)."""
    from cleanlab.internal.label_quality_utils import get_normalized_entropy

    return 1 - get_normalized_entropy(pred_probs)


def least_confidence(*, labels: np.ndarray, pred_probs: np.ndarray) -> np.ndarray:
    """``max_j P[j]``: the classic uncertainty-sampling baseline, label-agnostic. (N, K) -> (N,)."""
    return pred_probs.max(axis=1)


SCORE_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "self_confidence": self_confidence, "normalized_margin": normalized_margin,
    "confidence_weighted_entropy": confidence_weighted_entropy, "entropy": entropy,
    "least_confidence": least_confidence,
}

ALIASES = {"confidence": "self_confidence", "margin": "normalized_margin", "cwe": "confidence_weighted_entropy"}

#: Methods that accept ``adjust_pred_probs=True`` (cleanlab refuses it for the entropy score).
ADJUSTABLE = ("self_confidence", "normalized_margin")

#: The five cleanlab variants the paper compares, as (method, adjust_pred_probs).
CLEANLAB_VARIANTS: tuple[tuple[str, bool], ...] = (
    ("self_confidence", False), ("self_confidence", True), ("normalized_margin", False), ("normalized_margin", True),
    ("confidence_weighted_entropy", False),
)

#: Every variant of the benchmark: the cleanlab five plus the two baselines.
ALL_VARIANTS: tuple[tuple[str, bool], ...] = CLEANLAB_VARIANTS + (("entropy", False), ("least_confidence", False))


def resolve_method(name: str, *, adjust_pred_probs: bool = False) -> str:
    """Return the canonical method name for ``name`` (aliases accepted).

    >>> resolve_method("margin")
    'normalized_margin'
    >>> resolve_method("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown score method 'nope'; valid: self_confidence, normalized_margin, confidence_weighted_entropy, entropy, least_confidence (aliases: confidence, margin, cwe)
    """
    method = ALIASES.get(name, name)
    if method not in SCORE_METHODS:
        raise ValueError(f"unknown score method {name!r}; valid: {', '.join(SCORE_METHODS)} "
                         f"(aliases: {', '.join(ALIASES)})")
    if adjust_pred_probs and method not in ADJUSTABLE:
        raise ValueError(f"adjust_pred_probs=True is not supported by method {method!r}; "
                         f"it is supported by: {', '.join(ADJUSTABLE)}")
    return method


def label_quality_scores(*, labels: np.ndarray, pred_probs: np.ndarray, method: str,
                         adjust_pred_probs: bool = False) -> np.ndarray:
    """Scores of shape (N,) for ``labels`` (N,) and ``pred_probs`` (N, K); low = likely error.

    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> label_quality_scores(labels=np.array([0, 0, 0]), pred_probs=p, method="margin")
    array([0.9, 0.2, 0.6])
    """
    (scores,) = all_variant_scores(labels=labels, pred_probs=pred_probs,
                                   variants=[(method, adjust_pred_probs)]).values()
    return scores


def all_variant_scores(*, labels: np.ndarray, pred_probs: np.ndarray,
                       variants=ALL_VARIANTS) -> dict[tuple[str, bool], np.ndarray]:
    """Every (method, adjust_pred_probs) score vector, computing the adjustment only once."""
    out, adjusted = {}, None
    for method, adjust in variants:
        method = resolve_method(method, adjust_pred_probs=adjust)
        if adjust and adjusted is None:
            # cleanlab's class-imbalance adjustment: subtract per-class confident thresholds, renormalise
            from cleanlab.internal.label_quality_utils import _subtract_confident_thresholds

            adjusted = _subtract_confident_thresholds(labels, pred_probs)
        out[(method, adjust)] = SCORE_METHODS[method](labels=labels, pred_probs=adjusted if adjust else pred_probs)
    return out

"""How well a label quality score ranks the real label errors.

All metrics take ``is_error`` (N,) bool, the ground truth, and ``scores`` (N,), cleanlab-style label
quality scores where *low* means likely mislabeled. Error-ness is ``1 - scores``, exactly as the
authors computed it, so ties and rounding match theirs.

* **AUROC**: probability that a random real error gets a higher error-ness than a random clean
  example (0.5 = chance, 1 = perfect). Ties count one half, as in scikit-learn.
* **AUPRC**: average precision, the area under the precision-recall curve as scikit-learn's
  ``average_precision_score`` defines it; chance level is the error rate.
* **lift@k**: the error rate among the k examples ranked most likely erroneous divided by the
  overall error rate (1 = chance). The ranking is ``np.argsort(1 - scores, kind="stable")`` taking the
  last k, the authors' definition with one tie rule: tied error-ness keeps index order, so of examples
  tied at the cut the top k take those with the highest indices. numpy's default kind is not stable
  (on x86-64 with AVX2/AVX-512, numpy >= 2 sorts with x86-simd-sort), so without ``stable`` the tie
  order, and lift@k on data with ties at the cut, would depend on the host.

:data:`METRICS` is the registry; :func:`ranking_metrics` derives all of them from one sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from labelbench.config import ParamsError


@dataclass(frozen=True)
class Ranking:
    """One score vector sorted once: ``order`` is ``np.argsort(1 - scores, kind="stable")`` (ascending error-ness,
    ties in index order, the same on every host)."""

    errorness: np.ndarray
    is_error: np.ndarray
    order: np.ndarray

    @classmethod
    def from_scores(cls, *, is_error: np.ndarray, scores: np.ndarray) -> "Ranking":
        is_error = np.asarray(is_error, dtype=bool)
        errorness = 1 - np.asarray(scores, dtype=np.float64)
        if is_error.shape != errorness.shape or is_error.ndim != 1:
            raise ValueError(f"shapes differ: is_error {is_error.shape}, scores {errorness.shape}")
        if not is_error.any() or is_error.all():
            raise ValueError("ranking metrics need at least one error and one clean example")
        return cls(errorness, is_error, np.argsort(errorness, kind="stable"))

    def lift_at_k(self, k: int) -> float:
        k = int(k)
        if not 0 < k <= self.order.shape[0]:
            raise ValueError(f"k must be in [1, {self.order.shape[0]}], got {k}")
        return float(self.is_error[self.order[-k:]].mean() / self.is_error.mean())

    def ties(self) -> tuple[np.ndarray, np.ndarray]:
        """``order`` reversed (N,), highest error-ness first, and (N,) bool: where a run of equal error-ness starts."""
        descending = self.order[::-1]
        values = self.errorness[descending]
        return descending, np.r_[True, values[1:] != values[:-1]]

    def _curve(self):
        """Cumulative true/false positives at each distinct threshold, highest error-ness first."""
        descending, tie_start = self.ties()
        last_of_tie = np.flatnonzero(np.r_[tie_start[1:], True])
        tps = np.cumsum(self.is_error[descending], dtype=np.float64)[last_of_tie]
        return tps, (last_of_tie + 1) - tps

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at each distinct threshold, from the strictest."""
        tps, fps = self._curve()
        return tps / (tps + fps), tps / tps[-1]

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, tpr) starting at (0, 0)."""
        tps, fps = self._curve()
        return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]

    def auroc(self) -> float:
        fpr, tpr = self.roc_curve()
        return float(np.trapezoid(tpr, fpr))

    def auprc(self) -> float:
        precision, recall = self.pr_curve()
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


#: The metric registry: name -> function(ranking, lift_k) -> float. Every table, metrics file, the
#: report, the sweep and `dvc exp show` take their columns from here, so a new metric is one
#: function and one line. ``{k}`` in a name stands for the ``lift_k`` param.
METRICS: dict[str, Callable[[Ranking, int], float]] = {
    "auroc": lambda ranking, k: ranking.auroc(),
    "auprc": lambda ranking, k: ranking.auprc(),
    "lift_at_{k}": lambda ranking, k: ranking.lift_at_k(k),
    "lift_at_num_errors": lambda ranking, k: ranking.lift_at_k(ranking.is_error.sum()),
}


def metric_names(lift_k: int) -> list[str]:
    """Column names of the registry for this ``lift_k``.

    >>> metric_names(100)
    ['auroc', 'auprc', 'lift_at_100', 'lift_at_num_errors']
    """
    return [name.format(k=int(lift_k)) for name in METRICS]


def ranking_metrics(*, is_error: np.ndarray, scores: np.ndarray, lift_k: int = 100) -> dict[str, float]:
    """Every registry metric of ``scores`` (N,) against ``is_error`` (N,), from one sort.

    >>> is_error = np.array([True, False, False, True, False, False])
    >>> scores = np.array([0.1, 0.9, 0.8, 0.2, 0.6, 0.7])
    >>> ranking_metrics(is_error=is_error, scores=scores, lift_k=2)
    {'auroc': 1.0, 'auprc': 1.0, 'lift_at_2': 3.0, 'lift_at_num_errors': 3.0}
    """
    return metrics_of(Ranking.from_scores(is_error=is_error, scores=scores), lift_k=lift_k)


def metrics_of(ranking: Ranking, *, lift_k: int) -> dict[str, float]:
    """Every registry metric of a sorted score vector."""
    return {name.format(k=int(lift_k)): fn(ranking, int(lift_k)) for name, fn in METRICS.items()}


def filter_metrics(*, is_error: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a boolean filter against the real errors (0 when undefined).

    >>> filter_metrics(is_error=np.array([1, 1, 0, 0], bool), flagged=np.array([1, 0, 1, 0], bool))
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'num_flagged': 2}
    """
    from sklearn.metrics import precision_recall_fscore_support  # loaded already where filters run (cleanlab)

    precision, recall, f1, _ = precision_recall_fscore_support(is_error, flagged, average="binary", zero_division=0)
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1), "num_flagged": int(flagged.sum())}


def check_lift_k(lift_k: int, sizes: dict[str, int]) -> None:
    """ParamsError unless ``lift_k`` (params.yaml) is in [1, N] for every dataset (name -> N), checked before any
    scoring."""
    for name, size in sizes.items():
        if not 0 < lift_k <= size:
            raise ParamsError(f"params.yaml: lift_k = {lift_k}: must be in [1, {size}] (the number of examples of "
                              f"{name})")

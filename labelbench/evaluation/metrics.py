"""How well a label quality score ranks the real label errors.

All metrics take ``is_error`` (N,) bool, the ground truth, and ``scores`` (N,), cleanlab-style label
quality scores where *low* means likely mislabeled. Error-ness is ``1 - scores``, exactly as the
authors computed it, so ties and rounding match theirs.

* **AUROC**: probability that a random real error gets a higher error-ness than a random clean
  example (0.5 = chance, 1 = perfect). Ties count one half, as in scikit-learn.
* **AUPRC**: average precision, the area under the precision-recall curve as scikit-learn's
  ``average_precision_score`` defines it; chance level is the error rate.
* **lift@k**: the error rate among the k examples ranked most likely erroneous divided by the
  overall error rate (1 = chance). The ranking is ``np.argsort(1 - scores)`` taking the last k,
  the authors' definition, so ties at the cut fall exactly as in their notebooks.

:func:`ranking_metrics` derives all of them from one sort. The ``reference_*`` functions are the
straightforward scikit-learn computations that tests and the benchmark compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranking:
    """One score vector sorted once: ``order`` is ``np.argsort(1 - scores)`` (ascending error-ness)."""

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
        return cls(errorness, is_error, np.argsort(errorness))

    def lift_at_k(self, k: int) -> float:
        k = int(k)
        if not 0 < k <= self.order.shape[0]:
            raise ValueError(f"k must be in [1, {self.order.shape[0]}], got {k}")
        return float(self.is_error[self.order[-k:]].mean() / self.is_error.mean())

    def _curve(self):
        """Cumulative true/false positives at each distinct threshold, highest error-ness first."""
        descending = self.order[::-1]
        values = self.errorness[descending]
        hits = self.is_error[descending]
        last_of_tie = np.r_[np.flatnonzero(np.diff(values)), values.shape[0] - 1]
        tps = np.cumsum(hits, dtype=np.float64)[last_of_tie]
        fps = (last_of_tie + 1) - tps
        return tps, fps, values[last_of_tie]

    def auroc(self) -> float:
        tps, fps, _ = self._curve()
        tpr = np.r_[0.0, tps / tps[-1]]
        fpr = np.r_[0.0, fps / fps[-1]]
        return float(np.trapezoid(tpr, fpr))

    def auprc(self) -> float:
        tps, fps, _ = self._curve()
        precision = tps / (tps + fps)
        recall = tps / tps[-1]
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def pr_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(precision, recall) at each distinct threshold, from the strictest."""
        tps, fps, _ = self._curve()
        return tps / (tps + fps), tps / tps[-1]

    def roc_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(fpr, tpr) starting at (0, 0)."""
        tps, fps, _ = self._curve()
        return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def ranking_metrics(*, is_error: np.ndarray, scores: np.ndarray, lift_k=(100,)) -> dict[str, float]:
    """AUROC, AUPRC, lift@k for each k and lift@(number of errors), from one sort.

    >>> is_error = np.array([True, False, False, True, False, False])
    >>> scores = np.array([0.1, 0.9, 0.8, 0.2, 0.6, 0.7])
    >>> m = ranking_metrics(is_error=is_error, scores=scores, lift_k=(2,))
    >>> m["auroc"], m["auprc"], m["lift_at_2"], m["lift_at_num_errors"]
    (1.0, 1.0, 3.0, 3.0)
    """
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    out = {"auroc": ranking.auroc(), "auprc": ranking.auprc()}
    for k in lift_k:
        out[f"lift_at_{int(k)}"] = ranking.lift_at_k(k)
    out["lift_at_num_errors"] = ranking.lift_at_k(int(ranking.is_error.sum()))
    return out


# --- straightforward references (scikit-learn and the authors' lift) ---------------------------


def reference_lift_at_k(is_error: np.ndarray, errorness: np.ndarray, k: int) -> float:
    """The authors' ``lift_at_k``: rate of errors among the top k by error-ness over the base rate."""
    top = np.argsort(errorness)[-k:]
    return float(np.mean(is_error[top]) / np.mean(is_error))


def reference_metrics(*, is_error: np.ndarray, scores: np.ndarray, lift_k=(100,)) -> dict[str, float]:
    """Same keys as :func:`ranking_metrics`, computed the straightforward way."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # slow import; references only

    errorness = 1 - scores
    out = {
        "auroc": float(roc_auc_score(is_error, errorness)),
        "auprc": float(average_precision_score(is_error, errorness)),
    }
    for k in lift_k:
        out[f"lift_at_{int(k)}"] = reference_lift_at_k(is_error, errorness, int(k))
    out["lift_at_num_errors"] = reference_lift_at_k(is_error, errorness, int(is_error.sum()))
    return out


def filter_metrics(*, is_error: np.ndarray, flagged: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a boolean filter against the real errors (0 when undefined).

    >>> filter_metrics(is_error=np.array([1, 1, 0, 0], bool), flagged=np.array([1, 0, 1, 0], bool))
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'num_flagged': 2}
    """
    tp = int(np.sum(is_error & flagged))
    flagged_count = int(flagged.sum())
    errors = int(is_error.sum())
    precision = tp / flagged_count if flagged_count else 0.0
    recall = tp / errors if errors else 0.0
    f1 = 2 * tp / (flagged_count + errors) if (flagged_count + errors) else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "num_flagged": flagged_count}

"""Test oracles: the straightforward computations (cleanlab, scikit-learn, the authors' lift) that
the fast code in ``labelbench.evaluation`` is held to, and the speed benchmarks' baseline."""

from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from cleanlab.rank import get_label_quality_ensemble_scores, get_label_quality_scores

from labelbench.data.io import load_dataset
from labelbench.evaluation.benchmark import ENSEMBLE_PREFIX, FILTER_BY, _metric_row
from labelbench.evaluation.ensembles import ENSEMBLE_SCHEMES, LOG_LOSS_SEARCH_T
from labelbench.evaluation.scores import ALL_VARIANTS, CLEANLAB_VARIANTS, label_quality_scores


def reference_lift_at_k(is_error: np.ndarray, errorness: np.ndarray, k: int) -> float:
    """The authors' ``lift_at_k``: rate of errors among the top k by error-ness over the base rate (ties in index
    order: a stable sort, the same on every host)."""
    top = np.argsort(errorness, kind="stable")[-k:]
    return float(np.mean(is_error[top]) / np.mean(is_error))


def reference_metrics(*, is_error: np.ndarray, scores: np.ndarray, lift_k: int = 100) -> dict[str, float]:
    """Same keys as :func:`ranking_metrics`, computed the straightforward way."""
    from sklearn.metrics import average_precision_score, roc_auc_score  # slow import; references only

    errorness = 1 - scores
    out = {
        "auroc": float(roc_auc_score(is_error, errorness)),
        "auprc": float(average_precision_score(is_error, errorness)),
    }
    out[f"lift_at_{int(lift_k)}"] = reference_lift_at_k(is_error, errorness, int(lift_k))
    out["lift_at_num_errors"] = reference_lift_at_k(is_error, errorness, int(is_error.sum()))
    return out


_CLEANLAB_ENSEMBLE_WEIGHTING = {"uniform": "uniform", "accuracy": "accuracy", "inv_log_loss": "log_loss_search"}


def reference_benchmark(
    datasets: dict[str, tuple[str, Sequence[str]]],
    *,
    lift_k: int = 100,
    ensembles: Iterable[str] = tuple(ENSEMBLE_SCHEMES),
) -> pd.DataFrame:
    """For each dataset × model × method: cleanlab score, then scikit-learn AUROC / AP and the
    authors' lift; ensembles through cleanlab's ``get_label_quality_ensemble_scores`` (avg_scores*)
    or a plain ``np.average`` of pred_probs (avg_pred_probs*). One process, nothing shared."""
    rows = []
    for name, (root, models) in datasets.items():
        data = load_dataset(root, name, models=list(models))
        labels, is_error = data.given_labels, data.label_errors
        for model in models:
            for method, adjust in ALL_VARIANTS:
                if method in ("entropy", "least_confidence"):
                    scores = label_quality_scores(labels=labels, pred_probs=data.pred_probs[model], method=method)
                else:
                    scores = get_label_quality_scores(labels, data.pred_probs[model], method=method, adjust_pred_probs=adjust)
                rows.append(_metric_row(name, model, method, adjust, reference_metrics(is_error=is_error, scores=scores, lift_k=lift_k)))
        pred_probs_list = [data.pred_probs[m] for m in models]
        for scheme in ensembles:
            averaged, weighting = ENSEMBLE_SCHEMES[scheme]
            for method, adjust in CLEANLAB_VARIANTS:
                if averaged == "scores":
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
                        scores = get_label_quality_ensemble_scores(
                            labels, pred_probs_list, method=method, adjust_pred_probs=adjust,
                            weight_ensemble_members_by=_CLEANLAB_ENSEMBLE_WEIGHTING[weighting], verbose=False,
                        )
                else:
                    weights = _reference_weights(weighting, labels, pred_probs_list)
                    avg = np.average(np.stack(pred_probs_list), axis=0, weights=weights)
                    scores = get_label_quality_scores(labels, avg, method=method, adjust_pred_probs=adjust)
                rows.append(_metric_row(name, ENSEMBLE_PREFIX + scheme, method, adjust,
                                        reference_metrics(is_error=is_error, scores=scores, lift_k=lift_k)))
    return pd.DataFrame(rows)


def _reference_weights(weighting, labels, pred_probs_list):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
        return _reference_weights_inner(weighting, labels, pred_probs_list)


def _reference_weights_inner(weighting, labels, pred_probs_list):
    if weighting == "uniform":
        return None
    if weighting == "accuracy":
        return [(p.argmax(axis=1) == labels).mean() for p in pred_probs_list]
    # inv_log_loss: the naive search, recomputing every model's log loss for every t
    from sklearn.metrics import log_loss
    from cleanlab.internal.constants import CLIPPING_LOWER_BOUND

    best, best_weights = float("inf"), None
    for t in LOG_LOSS_SEARCH_T:
        raw = []
        for p in pred_probs_list:
            clipped = np.clip(p, CLIPPING_LOWER_BOUND, None)
            clipped = clipped / clipped.sum(axis=1, keepdims=True)
            raw.append(np.exp(-t * log_loss(labels, clipped)))
        weights = np.array(raw) / np.sum(raw)
        loss = log_loss(labels, np.average(np.stack(pred_probs_list), axis=0, weights=weights))
        if loss < best:
            best, best_weights = loss, weights
    return best_weights


def reference_filters(datasets: dict[str, tuple[str, Sequence[str]]], **find_label_issues_kwargs) -> pd.DataFrame:
    """For each dataset × model × ``filter_by``: cleanlab's ``find_label_issues`` with its default
    settings (unless ``find_label_issues_kwargs`` says otherwise), then scikit-learn's precision,
    recall and F1 against the real errors. One dataset loaded at a time, nothing shared."""
    from cleanlab.filter import find_label_issues
    from sklearn.metrics import f1_score, precision_score, recall_score

    rows = []
    for name, (root, models) in datasets.items():
        data = load_dataset(root, name, models=list(models))
        for model in models:
            for filter_by in FILTER_BY:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # tiny-class and zero-division warnings
                    flagged = find_label_issues(data.given_labels, data.pred_probs[model], filter_by=filter_by,
                                                **find_label_issues_kwargs)
                    rows.append({
                        "dataset": name, "model": model, "filter_by": filter_by,
                        "precision": float(precision_score(data.label_errors, flagged, zero_division=0)),
                        "recall": float(recall_score(data.label_errors, flagged, zero_division=0)),
                        "f1": float(f1_score(data.label_errors, flagged, zero_division=0)),
                        "num_flagged": int(flagged.sum()),
                    })
    return pd.DataFrame(rows)

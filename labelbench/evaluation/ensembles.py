"""Ensembles of several models' pred_probs into one label quality score.

Two ways to combine M models, each with three weightings, give the six schemes:

* ``avg_pred_probs*``: average the (N, K) pred_probs with weights, then score once.
* ``avg_scores*``: score each model, then average the (N,) scores with weights. These are
  cleanlab's ``get_label_quality_ensemble_scores`` with ``weight_ensemble_members_by`` =
  ``uniform``, ``accuracy`` and ``log_loss_search``.

Weights: ``uniform`` 1/M; ``accuracy`` proportional to each model's accuracy against the given
labels; ``inv_log_loss`` proportional to ``exp(-t * logloss(model))`` with the t from
``LOG_LOSS_SEARCH_T`` whose weighted average of pred_probs has the lowest log loss (cleanlab's search).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from labelbench.evaluation.scores import label_quality_scores

LOG_LOSS_SEARCH_T = (1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 200)
#: cleanlab.internal.constants.CLIPPING_LOWER_BOUND (a test keeps them equal)
CLIPPING_LOWER_BOUND = 1e-6
#: Column (and model) name of an ensemble's scores: ``ensemble:<scheme>``.
ENSEMBLE_PREFIX = "ensemble:"


def short_model(model: str) -> str:
    """A model's name in the reports' tables: timm's swin_base_patch4_window7_224 as swin_base, ensemble:<scheme> as
    <scheme>."""
    return model.replace("swin_base_patch4_window7_224", "swin_base").replace(ENSEMBLE_PREFIX, "")


def log_loss(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """scikit-learn's ``log_loss(labels, pred_probs)`` bit for bit, without importing scikit-learn
    (a second of start-up per stage): the mean of ``-log(clip(P[i, labels[i]], eps, 1 - eps))``.

    Like scikit-learn without ``labels=``, every class must occur in ``labels`` (N,) so that the
    columns of ``pred_probs`` (N, K) line up with the classes.

    >>> log_loss(np.array([0, 1]), np.array([[0.5, 0.5], [0.25, 0.75]]))  # doctest: +ELLIPSIS
    0.490...
    """
    present = np.unique(labels)
    if present.shape[0] != pred_probs.shape[1] or present.shape[0] < 2:
        raise ValueError(f"log loss needs every one of the {pred_probs.shape[1]} classes among the labels; "
                         f"found {present.shape[0]}")
    eps = np.finfo(pred_probs.dtype).eps
    given = np.clip(pred_probs, eps, 1 - eps)[np.arange(labels.shape[0]), labels]
    return float(np.average(-np.log(given)))


def accuracy(labels: np.ndarray, pred_probs: np.ndarray) -> float:
    """Share of the rows whose most probable class in ``pred_probs`` (N, K) is their label in ``labels`` (N,)."""
    return float((pred_probs.argmax(axis=1) == labels).mean())


#: scheme name -> (what is averaged, weighting)
ENSEMBLE_SCHEMES: dict[str, tuple[str, str]] = {
    "avg_pred_probs": ("pred_probs", "uniform"),
    "avg_pred_probs_weighted_by_accuracy": ("pred_probs", "accuracy"),
    "avg_pred_probs_weighted_by_inv_log_loss": ("pred_probs", "inv_log_loss"),
    "avg_scores": ("scores", "uniform"),
    "avg_scores_weighted_by_accuracy": ("scores", "accuracy"),
    "avg_scores_weighted_by_inv_log_loss": ("scores", "inv_log_loss"),
}


def check_scheme(name: str) -> str:
    """Return ``name`` if it is a known scheme, else raise a ValueError listing the valid ones.

    >>> check_scheme("avg_scores")
    'avg_scores'
    """
    if name not in ENSEMBLE_SCHEMES:
        raise ValueError(f"unknown ensemble scheme {name!r}; valid: {', '.join(ENSEMBLE_SCHEMES)}")
    return name


def ensemble_weights(scheme: str, *, labels: np.ndarray, pred_probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """The (M,) member weights that ``scheme`` uses (see the module), against ``labels`` (N,)."""
    _, weighting = ENSEMBLE_SCHEMES[check_scheme(scheme)]
    if weighting == "uniform":
        return np.full(len(pred_probs_list), 1 / len(pred_probs_list))
    if weighting == "accuracy":
        accuracies = np.array([accuracy(labels, p) for p in pred_probs_list])
        return accuracies / sum(accuracies)
    # each model's log loss does not depend on t: computed once (cleanlab: per t, the same values)
    clipped = (np.clip(p, a_min=CLIPPING_LOWER_BOUND, a_max=None) for p in pred_probs_list)
    losses = [log_loss(labels, c / c.sum(axis=1)[:, np.newaxis]) for c in clipped]
    unnormalised = ([np.exp(-t * loss) for loss in losses] for t in LOG_LOSS_SEARCH_T)
    candidates = [np.array(u) / sum(u) for u in unnormalised]
    # the first t whose weighted pred_probs have the lowest log loss (strictly lower replaces), as cleanlab's search
    return min(candidates, key=lambda w: log_loss(labels, weighted_pred_probs(w, pred_probs_list)))


def weighted_pred_probs(weights: np.ndarray, pred_probs_list: Sequence[np.ndarray]) -> np.ndarray:
    """``sum_i w_i * P_i``: shape (N, K)."""
    return sum(weights[i] * p for i, p in enumerate(pred_probs_list))


def ensemble_scores(scheme: str, *, labels: np.ndarray, pred_probs_list: Sequence[np.ndarray], method: str,
                    adjust_pred_probs: bool = False, weights: np.ndarray | None = None,
                    member_scores: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Ensemble label quality scores (N,) from M models' pred_probs (each (N, K)).

    ``weights`` and ``member_scores`` may be passed in when already computed (the benchmark
    reuses them across methods); they are computed here otherwise.

    >>> p1 = np.array([[0.9, 0.1], [0.4, 0.6]]); p2 = np.array([[0.7, 0.3], [0.2, 0.8]])
    >>> ensemble_scores("avg_scores", labels=np.array([0, 0]), pred_probs_list=[p1, p2],
    ...                 method="self_confidence")
    array([0.8, 0.3])
    """
    averaged, weighting = ENSEMBLE_SCHEMES[check_scheme(scheme)]
    if weights is None:
        weights = ensemble_weights(scheme, labels=labels, pred_probs_list=pred_probs_list)
    score = functools.partial(label_quality_scores, labels=labels, method=method, adjust_pred_probs=adjust_pred_probs)
    if averaged == "pred_probs":
        return score(pred_probs=weighted_pred_probs(weights, pred_probs_list))
    if member_scores is None:
        member_scores = [score(pred_probs=p) for p in pred_probs_list]
    if weighting == "uniform":
        return np.vstack(member_scores).T.mean(axis=1)  # cleanlab's "uniform" is a plain mean
    return (np.vstack(member_scores).T * weights).sum(axis=1)


@dataclass(frozen=True)
class ModelScores:
    """What :func:`score_models` returns. ``members``: model -> its scores (N,). With an ensemble:
    ``ensemble`` its scores (N,), ``weights`` its member weights (M,) and ``pred_probs`` the members'
    pred_probs averaged with those weights (N, K); without: None, None and the only model's pred_probs."""

    scheme: str
    members: dict[str, np.ndarray]
    ensemble: np.ndarray | None
    weights: np.ndarray | None
    pred_probs: np.ndarray

    @property
    def columns(self) -> dict[str, np.ndarray]:
        """Each model's scores, then the ensemble's as ``ensemble:<scheme>`` where there is one."""
        if self.ensemble is None:
            return dict(self.members)
        return {**self.members, ENSEMBLE_PREFIX + self.scheme: self.ensemble}

    @property
    def ranking(self) -> np.ndarray:
        """The scores that rank the examples: the ensemble's, else the only model's."""
        return next(iter(self.members.values())) if self.ensemble is None else self.ensemble


def score_models(pred_probs: dict[str, np.ndarray], *, labels: np.ndarray, method: str, adjust_pred_probs: bool = False,
                 ensemble: str, always_ensemble: bool = False) -> ModelScores:
    """``method``'s scores of ``labels`` (N,) under each model's pred_probs (model -> (N, K)), then
    those of the ``ensemble`` scheme of all of them: with two or more models, or with one when
    ``always_ensemble``. ``labels`` are the ones judged: a dataset's given labels, or the
    multi-annotator track's majority vote.

    >>> p1 = np.array([[0.9, 0.1], [0.4, 0.6]]); p2 = np.array([[0.7, 0.3], [0.2, 0.8]])
    >>> score_models({"a": p1, "b": p2}, labels=np.array([0, 0]), method="self_confidence",
    ...              ensemble="avg_scores").columns
    {'a': array([0.9, 0.4]), 'b': array([0.7, 0.2]), 'ensemble:avg_scores': array([0.8, 0.3])}
    """
    pred_probs_list = list(pred_probs.values())
    members = {
        model: label_quality_scores(labels=labels, pred_probs=p, method=method, adjust_pred_probs=adjust_pred_probs)
        for model, p in pred_probs.items()
    }
    if len(pred_probs_list) < 2 and not always_ensemble:
        return ModelScores(ensemble, members, None, None, pred_probs_list[0])
    weights = ensemble_weights(ensemble, labels=labels, pred_probs_list=pred_probs_list)
    scores = ensemble_scores(ensemble, labels=labels, pred_probs_list=pred_probs_list, method=method,
                             adjust_pred_probs=adjust_pred_probs, weights=weights, member_scores=list(members.values()))
    return ModelScores(ensemble, members, scores, weights, weighted_pred_probs(weights, pred_probs_list))

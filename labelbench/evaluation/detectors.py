"""Label-error detectors beyond held-out ``pred_probs``: one registry from name to function per family.

Same convention as :mod:`labelbench.evaluation.scores`: every detector returns a score of shape (N,) where
**low means likely mislabeled** (not necessarily in [0, 1]; the metrics only rank).

* ``TRAINING_DYNAMICS``: probes of the training trajectory of a model. Input: ``logits`` (E, N, K), the logits of N
  training examples in each of E epochs as the model saw them in that epoch (all NaN in an epoch that did not train
  on the example: each score uses the epochs that did), and ``labels`` (N,) their given labels.
  Such scores are in-sample: with k-fold cross-validation every example is a training example of k - 1 folds, and
  its score is the mean over those folds (:func:`over_folds`).
* ``REPRESENTATION``: neighbours in a model's penultimate-layer space. Input: ``embeddings`` (N, D) of the examples
  to score and ``reference`` (M, D) with ``reference_labels`` (M,): the examples the same model was trained on, so
  that each score is out-of-sample (the held-out examples of a fold against that fold's training examples).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import log_softmax, softmax

from labelbench.data.files import DataError
from labelbench.evaluation.scores import given_value, margin


def _over_epochs(values: np.ndarray, *, spread: bool = False) -> np.ndarray:
    """Mean (or with ``spread`` the standard deviation) over axis 0 of (E, N) ``values``, NaN epochs left out; NaN
    where an example has no epoch (without numpy's empty-slice warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanstd if spread else np.nanmean)(values, axis=0)


def aum(*, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Area Under the Margin (Pleiss et al., NeurIPS 2020): the mean over epochs of ``z[y] - max_{j != y} z[j]``
    (logits ``z``, given label ``y``). A mislabeled example keeps a negative margin: low = likely mislabeled.
    (E, N, K), (N,) -> (N,)."""
    return _over_epochs(margin(logits.astype(np.float64), labels))


def forgetting(*, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Forgetting events (Toneva et al., ICLR 2019), negated: the number of epochs in which the example goes from
    classified as its given label to not; an example never classified as its label counts E, more than any learned
    one can have (at most E // 2), as the paper ranks never-learned examples first. Low = likely mislabeled.
    (E, N, K), (N,) -> (N,)."""
    seen = ~np.isnan(logits).any(axis=-1)
    correct = (np.nan_to_num(logits, nan=-np.inf).argmax(axis=-1) == labels[None, :]) & seen
    # an epoch that did not see the example keeps its last state: events count between the epochs that did
    state = correct.copy()
    for epoch in range(1, state.shape[0]):
        state[epoch] = np.where(seen[epoch], correct[epoch], state[epoch - 1])
    events = (state[:-1] & ~state[1:]).sum(axis=0)
    score = -np.where(correct.any(axis=0), events, logits.shape[0]).astype(np.float64)
    return np.where(seen.any(axis=0), score, np.nan)  # never trained on: no evidence


def small_loss(*, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Small-loss criterion (Jiang et al., ICML 2018, MentorNet; as a detector, Arazo et al. 2019), negated: minus the
    mean over epochs of the cross-entropy ``-log softmax(z)[y]``. Low = large loss = likely mislabeled.
    (E, N, K), (N,) -> (N,)."""
    return _over_epochs(given_value(log_softmax(logits.astype(np.float64), axis=-1), labels))


def datamaps_confidence(*, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Data-maps confidence (Swayamdipta et al., EMNLP 2020): the mean over epochs of ``softmax(z)[y]``. Mislabeled
    examples sit in the "hard to learn" region: low = likely mislabeled. (E, N, K), (N,) -> (N,)."""
    return _over_epochs(given_value(softmax(logits.astype(np.float64), axis=-1), labels))


def datamaps_variability(*, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Data-maps variability (Swayamdipta et al., EMNLP 2020): the standard deviation over epochs of
    ``softmax(z)[y]``. "Hard to learn" (mislabeled) examples have low confidence and low variability, ambiguous ones
    high variability: low = likely mislabeled, though easy clean examples are low too (the paper's point: variability
    alone separates ambiguous from the rest). (E, N, K), (N,) -> (N,)."""
    return _over_epochs(given_value(softmax(logits.astype(np.float64), axis=-1), labels), spread=True)


def el2n(*, logits: np.ndarray, labels: np.ndarray, epoch: int = 1) -> np.ndarray:
    """EL2N (Paul et al., NeurIPS 2021), negated: minus ``||softmax(z) - onehot(y)||_2`` at the early epoch ``epoch``
    (0-based; the paper scores a few epochs in; the last epoch when there are fewer). A large error norm early =
    likely mislabeled, so low = likely mislabeled. (E, N, K), (N,) -> (N,)."""
    if epoch < 0:
        raise ValueError(f"el2n epoch {epoch}: must be >= 0")
    epoch = min(epoch, logits.shape[0] - 1)  # a run of fewer epochs: its last
    # an example that epoch did not train on: its first later epoch that did (NaN: none did)
    later = logits[epoch:].astype(np.float64)
    first = (~np.isnan(later).any(axis=-1)).argmax(axis=0)
    probs = softmax(later[first, np.arange(labels.shape[0])], axis=-1)
    probs[np.arange(labels.shape[0]), labels] -= 1
    return -np.linalg.norm(probs, axis=1)


TRAINING_DYNAMICS: dict[str, Callable[..., np.ndarray]] = {
    "aum": aum, "forgetting": forgetting, "small_loss": small_loss, "datamaps_confidence": datamaps_confidence,
    "datamaps_variability": datamaps_variability, "el2n": el2n,
}


def over_folds(per_fold: list[tuple[np.ndarray, np.ndarray]], num_examples: int) -> np.ndarray:
    """Combine in-sample scores of the k folds: ``per_fold`` holds ``(rows, scores)`` per fold (the dataset rows it
    trained on and their scores, NaN where that fold's epochs never drew the row); each example's score is the mean
    over the folds with a score for it. One with none (possible with one epoch: each epoch drops its ragged last
    batch) gets the median of the others: no evidence either way. (N,)."""
    total, count, listed = np.zeros(num_examples), np.zeros(num_examples), np.zeros(num_examples, dtype=bool)
    for rows, scores in per_fold:
        listed[rows] = True
        seen = ~np.isnan(scores)
        np.add.at(total, rows[seen], scores[seen])
        np.add.at(count, rows[seen], 1)
    if not listed.all():
        raise ValueError(f"{int((~listed).sum())} examples are in no fold's training rows")
    combined = total / np.maximum(count, 1)
    return np.where(count > 0, combined, np.median(combined[count > 0]) if (count > 0).any() else 0.0)


def _neighbour_labels(embeddings: np.ndarray, reference: np.ndarray, reference_labels: np.ndarray,
                      k: int) -> np.ndarray:
    """(N, k): the given labels of each row's k nearest reference rows (cosine distance, ties by reference order)."""
    from sklearn.neighbors import NearestNeighbors

    if not 0 < k <= reference.shape[0]:
        raise ValueError(f"k={k}: between 1 and the {reference.shape[0]} reference examples")
    finder = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(reference)
    return reference_labels[finder.kneighbors(embeddings, return_distance=False)]


def knn_agreement(*, embeddings: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                  reference_labels: np.ndarray, k: int = 10) -> np.ndarray:
    """k-NN label agreement (Deep k-NN, Bahri et al., ICML 2020): the share of an example's k nearest reference
    examples in representation space whose given label is its given label. Low = likely mislabeled.
    (N, D), (N,), (M, D), (M,) -> (N,)."""
    return (_neighbour_labels(embeddings, reference, reference_labels, k) == labels[:, None]).mean(axis=1)


def simifeat_vote(*, embeddings: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                  reference_labels: np.ndarray, k: int = 10) -> np.ndarray:
    """SimiFeat-style vote (Zhu et al., ICML 2022, its voting detector): among the k nearest reference examples, the
    share voting for the given label minus the largest share voting for any other class, in [-1, 1]; negative
    when the neighbours' majority disagrees. Low = likely mislabeled. (N, D), (N,), (M, D), (M,) -> (N,)."""
    neighbours = _neighbour_labels(embeddings, reference, reference_labels, k)
    classes = int(max(labels.max(), reference_labels.max())) + 1
    return margin(np.stack([(neighbours == c).mean(axis=1) for c in range(classes)], axis=1), labels)


REPRESENTATION: dict[str, Callable[..., np.ndarray]] = {"knn_agreement": knn_agreement, "simifeat_vote": simifeat_vote}

#: Every detector family beyond held-out ``pred_probs``, by name.
FAMILIES: dict[str, dict[str, Callable[..., np.ndarray]]] = {"training_dynamics": TRAINING_DYNAMICS,
                                                              "representation": REPRESENTATION}


def family_of(method: str) -> str:
    """The family (training_dynamics, representation) of detector ``method``; ``pred_probs`` for the score
    registry's methods (:mod:`labelbench.evaluation.scores`)."""
    return next((family for family, registry in FAMILIES.items() if method in registry), "pred_probs")


def record_scores(fold_dirs: list[Path], *, labels: np.ndarray, neighbours: int, el2n_epoch: int) -> dict[str, np.ndarray]:
    """Every detector's scores (N,) for one model from its k cross-validation folds' ``records/``
    (:mod:`labelbench.train.crossval`): the training-dynamics scores of each fold on its training rows, averaged over
    the folds that trained on each example (:func:`over_folds`); the representation scores of each fold's held-out
    rows against its training rows, in that fold's feature space. ``labels`` (N,): the given labels trained on."""
    from labelbench.data.io import load_npy

    n = labels.shape[0]
    dynamics: dict[str, list] = {name: [] for name in TRAINING_DYNAMICS}
    representation = {name: np.full(n, np.nan) for name in REPRESENTATION}
    for fold_dir in fold_dirs:
        records = Path(fold_dir) / "records"
        train, held = load_npy(records / "train_indices.npy"), load_npy(Path(fold_dir) / "heldout_indices.npy")
        logits, features = load_npy(records / "train_logits.npy"), load_npy(records / "embeddings.npy")
        if logits.shape[1] != train.shape[0] or features.shape[0] != n:
            raise DataError(records, f"records of {logits.shape[1]} training rows and {features.shape[0]} feature rows "
                                     f"do not fit {train.shape[0]} training rows of {n} examples")
        for name, score in TRAINING_DYNAMICS.items():
            extra = {"epoch": el2n_epoch} if name == "el2n" else {}
            dynamics[name].append((train, score(logits=logits, labels=labels[train], **extra)))
        features = features.astype(np.float32)
        for name, score in REPRESENTATION.items():
            representation[name][held] = score(embeddings=features[held], labels=labels[held],
                                               reference=features[train], reference_labels=labels[train],
                                               k=neighbours)
    scores = {name: over_folds(parts, n) for name, parts in dynamics.items()}
    if any(np.isnan(values).any() for values in representation.values()):
        raise DataError(Path(fold_dirs[0]).parent, "the folds' held-out rows do not cover every example")
    return {**scores, **representation}

"""The multi-annotator track: CIFAR-10N's three human labels per image, aggregated into a consensus.

Inputs (one published dataset of the data contract, see DESIGN.md, and CIFAR-10N's labels)::

    <root>/<dataset>/...                      given/true labels, image_ids.txt, pred_probs/<model>.npy
    <root>/raw/cifar-10n_human_labels.npz     int (50000,) each: clean_label, aggre_label, worse_label,
                                              random_label1, random_label2, random_label3

Row r of the dataset is image ``train/image_id_<i>.png`` of its ``image_ids.txt`` and index i of the
npz: rows are joined by that number, never by position (the published row order is not the npz's).

Each method turns the (N, M) annotations (M = 3 annotator slots) into an :class:`Aggregate`: a
consensus label per image, where it has one a quality score per image (low = the consensus is likely
wrong) and an estimated quality per annotator slot. :func:`row_metrics` scores it against
``clean_label``: consensus accuracy; the metric registry (:mod:`labelbench.evaluation.metrics`: AUROC,
AUPRC, lift) of the quality score for finding the images whose consensus is wrong; Spearman's rank
correlation between estimated and true annotator accuracy.

Methods: cleanlab's CROWDLAB per model and for the ensemble of models (cleanlab's
``get_label_quality_multiannotator_ensemble``); majority vote (``aggre_label``, the dataset's own;
quality = share of annotators agreeing with it); crowd-kit's Dawid-Skene and GLAD (quality = the
posterior probability of their consensus); single-label scores of ``aggre_label`` (a cleanlab score
per model and an ensemble of them, :mod:`labelbench.evaluation.ensembles`).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from labelbench.data.io import (
    _SHOWN, DataError, Dataset, atomic_outputs, checksums_path, load_dataset, read_checksums, verify_checksum,
    write_csv, write_json, write_text,
)
from labelbench.data.raw.cifar import CIFAR10N_VARIANTS, load_cifar10n
from labelbench.evaluation.ensembles import score_models, short_model
from labelbench.evaluation.metrics import metric_names, ranking_metrics
from labelbench.evaluation.scores import resolve_method

#: The npz of CIFAR-10N's human labels, relative to the published root.
HUMAN_LABELS = "raw/cifar-10n_human_labels.npz"
#: The annotator slots of the npz, one column each of the (N, M) annotations.
ANNOTATORS = ("random_label1", "random_label2", "random_label3")
_IMAGE_ID = re.compile(r"train/image_id_(0|[1-9][0-9]*)\.png")
SECTION_TITLE = "## Multi-annotator track (CIFAR-10N)"


def npz_index(image_ids: list[str], *, path, size: int) -> np.ndarray:
    """Index (N,) int64 into the npz of each row: the ``<i>`` of ``train/image_id_<i>.png``.

    DataError naming ``path`` (the image_ids.txt) unless every id parses, lies in ``[0, size)`` and
    occurs once.

    >>> npz_index(["train/image_id_2.png", "train/image_id_0.png"], path="ids.txt", size=3)
    array([2, 0])
    """
    parsed = [_IMAGE_ID.fullmatch(i) for i in image_ids]
    bad = [i for i, m in zip(image_ids, parsed) if m is None]
    if bad:
        raise DataError(path, f"{len(bad)} id(s) are not 'train/image_id_<i>.png', e.g. {bad[:_SHOWN]}")
    index = np.array([int(m.group(1)) for m in parsed], dtype=np.int64)
    outside = index[index >= size]
    if outside.size:
        raise DataError(path, f"{outside.size} id(s) outside the {size} images of {HUMAN_LABELS}, e.g. "
                              f"image_id_{int(outside[0])}")
    values, counts = np.unique(index, return_counts=True)
    if (counts > 1).any():
        raise DataError(path, f"{int((counts > 1).sum())} repeated id(s), e.g. image_id_{int(values[counts > 1][0])}")
    return index


@dataclass(frozen=True)
class Track:
    """The inputs, row r of each = row r of ``dataset``.

    ``annotations`` (N, M) int64 frame, one column per slot of :data:`ANNOTATORS`; ``majority`` (N,)
    ``aggre_label``; ``clean`` (N,) ``clean_label``; ``dataset`` the contract's arrays and pred_probs.
    """

    dataset: Dataset
    annotations: pd.DataFrame
    majority: np.ndarray
    clean: np.ndarray

    def annotator_accuracy(self) -> pd.Series:
        """True accuracy (M,) of each slot against ``clean_label``."""
        return self.annotations.eq(self.clean, axis=0).mean()


def load_track(root, *, dataset: str, models: list[str]) -> Track:
    """Load ``<root>/<dataset>`` (checksums verified, :func:`~labelbench.data.io.load_dataset`) and the
    npz (verified against the same list when the root has one), joined by image id. The join is
    checked: the npz's ``clean_label`` must equal the dataset's true labels and its variant label
    (``aggre_label`` / ``worse_label``) the dataset's given labels."""
    root = Path(root)
    path = root / HUMAN_LABELS
    listing = checksums_path(root)
    if listing is not None and path.is_file():
        verify_checksum(path, root, read_checksums(listing), listing)
    arrays = load_cifar10n(path, extra=ANNOTATORS)  # clean, aggregate, worst labels and the slots, int64 (N,)
    data = load_dataset(root, dataset, models)
    ids_path = root / dataset / "image_ids.txt"
    index = npz_index(data.image_ids, path=ids_path, size=arrays["clean_label"].shape[0])
    variant = CIFAR10N_VARIANTS[dataset.removeprefix("cifar-10n-")]
    for key, ours, name in (("clean_label", data.true_labels, "true_labels.npy"),
                            (variant, data.given_labels, "given_labels.npy")):
        if ours is None or not np.array_equal(arrays[key][index], ours):
            raise DataError(ids_path, f"joined by image id, {path.name}'s {key} differs from {name} "
                                      f"(not the CIFAR-10N images, or ids out of step)")
    annotations = pd.DataFrame({k: arrays[k][index] for k in ANNOTATORS})
    return Track(dataset=data, annotations=annotations, majority=arrays["aggre_label"][index],
                 clean=arrays["clean_label"][index])


@dataclass(frozen=True)
class Aggregate:
    """One method's output: ``consensus`` (N,) int labels; ``quality`` (N,) or None, low = the
    consensus is likely wrong; ``annotator_quality`` (M,) estimated per slot (higher = better) or None."""

    consensus: np.ndarray
    quality: np.ndarray | None = None
    annotator_quality: np.ndarray | None = None


def crowdlab(annotations: pd.DataFrame, pred_probs: np.ndarray | list[np.ndarray]) -> Aggregate:
    """cleanlab's CROWDLAB (consensus ``best_quality``) with one model's ``pred_probs`` (N, K)
    (``get_label_quality_multiannotator``), or with a list of them for the ensemble
    (``get_label_quality_multiannotator_ensemble``: each model weighted by cleanlab's estimate of its quality)."""
    from cleanlab import multiannotator

    if isinstance(pred_probs, list):
        result = multiannotator.get_label_quality_multiannotator_ensemble(annotations, np.stack(pred_probs),
                                                                          verbose=False)
    else:
        result = multiannotator.get_label_quality_multiannotator(annotations, pred_probs, verbose=False)
    quality = result["label_quality"]
    stats = result["annotator_stats"].reindex(list(ANNOTATORS))
    return Aggregate(consensus=quality["consensus_label"].to_numpy(np.int64),
                     quality=quality["consensus_quality_score"].to_numpy(np.float64),
                     annotator_quality=stats["annotator_quality"].to_numpy(np.float64))


def majority_vote(annotations: pd.DataFrame, majority: np.ndarray) -> Aggregate:
    """The given majority vote ``majority`` (N,); quality = share of the M annotators agreeing with it,
    annotator quality = each slot's agreement with it."""
    agrees = annotations.eq(majority, axis=0)
    return Aggregate(consensus=np.asarray(majority, dtype=np.int64),
                     quality=agrees.mean(axis=1).to_numpy(np.float64),
                     annotator_quality=agrees.mean().to_numpy(np.float64))


def _fit_posterior(model, annotations: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Fit the crowd-kit ``model`` on the annotations in its long format (one row per annotation: task = row
    number, worker = slot, label): consensus (N,) = the most probable label (crowd-kit's ``idxmax``) and its
    posterior probability (N,)."""
    n, m = annotations.shape
    long = pd.DataFrame({"task": np.repeat(np.arange(n), m), "worker": np.tile(np.asarray(annotations.columns), n),
                         "label": annotations.to_numpy().ravel()})
    probas = model.fit_predict_proba(long).reindex(np.arange(n))
    if probas.isna().to_numpy().any():
        raise ValueError("crowd-kit returned no posterior for some tasks")
    values = probas.to_numpy(np.float64)
    best = values.argmax(axis=1)
    return probas.columns.to_numpy()[best].astype(np.int64), values[np.arange(n), best]


def dawid_skene(annotations: pd.DataFrame, *, max_iter: int) -> Aggregate:
    """crowd-kit's Dawid-Skene; annotator quality = its estimated accuracy of each slot,
    ``sum_k prior_k * P(label k | true k)`` from the fitted confusion matrices."""
    from crowdkit.aggregation import DawidSkene

    model = DawidSkene(n_iter=max_iter)
    consensus, quality = _fit_posterior(model, annotations)
    errors, priors = model.errors_, model.priors_
    accuracy = [sum(priors[k] * errors.loc[(worker, k), k] for k in priors.index if (worker, k) in errors.index)
                for worker in annotations.columns]
    return Aggregate(consensus=consensus, quality=quality, annotator_quality=np.array(accuracy, dtype=np.float64))


def glad(annotations: pd.DataFrame, *, max_iter: int) -> Aggregate:
    """crowd-kit's GLAD; annotator quality = its expertise ``alpha`` of each slot."""
    from crowdkit.aggregation import GLAD

    model = GLAD(n_iter=max_iter)
    consensus, quality = _fit_posterior(model, annotations)
    alphas = model.alphas_.reindex(annotations.columns).to_numpy(np.float64)
    return Aggregate(consensus=consensus, quality=quality, annotator_quality=alphas)


#: crowd-kit aggregator name (the params' ``baselines``) -> function(annotations, max_iter=...).
BASELINES: dict[str, Callable[..., Aggregate]] = {"dawid_skene": dawid_skene, "glad": glad}


def spearman(estimated: np.ndarray, true: np.ndarray) -> float:
    """Spearman's rank correlation of two (M,) vectors; NaN when either is constant or NaN (undefined)."""
    from scipy.stats import spearmanr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's warning for a constant input, whose correlation is NaN
        return float(spearmanr(estimated, true).statistic)


def row_metrics(aggregate: Aggregate, *, clean: np.ndarray, annotator_accuracy: np.ndarray,
                lift_k: int) -> dict[str, float]:
    """Consensus accuracy against ``clean`` (N,); the registry metrics of ``aggregate.quality`` for
    finding the wrong consensus labels (NaN without a quality score, or when every consensus label is
    right or every one wrong); Spearman of ``aggregate.annotator_quality`` against the slots' true
    ``annotator_accuracy`` (M,) (NaN without an estimate)."""
    wrong = aggregate.consensus != clean
    out = {"consensus_accuracy": float((~wrong).mean()), "num_wrong_consensus": int(wrong.sum())}
    if aggregate.quality is not None and 0 < wrong.sum() < wrong.size:
        out.update(ranking_metrics(is_error=wrong, scores=aggregate.quality, lift_k=lift_k))
    else:
        out.update(dict.fromkeys(metric_names(lift_k), math.nan))
    estimated = aggregate.annotator_quality
    estimated = np.full(len(ANNOTATORS), math.nan) if estimated is None else estimated
    out["annotator_spearman"] = spearman(estimated, annotator_accuracy)
    out.update({f"annotator_quality:{name}": float(value) for name, value in zip(ANNOTATORS, estimated)})
    return out


def run_track(track: Track, *, baselines: list[str], dawid_skene_max_iter: int, glad_max_iter: int,
              score: str, ensemble: str, lift_k: int) -> tuple[pd.DataFrame, dict, dict[str, float]]:
    """Every method on ``track``: (table, one row per method and model; summary for
    ``multiannotator.json``; seconds each method took (per model for CROWDLAB; the single-label
    ``score`` of every model and their ``ensemble`` together), which are not written to the outputs,
    so that they stay reproducible)."""
    ann, pred_probs = track.annotations, track.dataset.pred_probs
    score = resolve_method(score)
    # (method, model, job): a job returns its Aggregate, or model -> Aggregate for several rows
    jobs: list[tuple[str, str, Callable[[], Aggregate | dict[str, Aggregate]]]] = [
        ("crowdlab", model, lambda probs=probs: crowdlab(ann, probs)) for model, probs in pred_probs.items()]
    jobs += [("crowdlab", "ensemble", lambda: crowdlab(ann, list(pred_probs.values()))),
             ("majority_vote", "", lambda: majority_vote(ann, track.majority))]
    max_iter = {"dawid_skene": dawid_skene_max_iter, "glad": glad_max_iter}
    jobs += [(name, "", lambda name=name: BASELINES[name](ann, max_iter=max_iter[name])) for name in baselines]

    def single_label() -> dict[str, Aggregate]:
        """``score`` of the majority vote: a row per model, then one for their ensemble."""
        scored = score_models(pred_probs, labels=track.majority, method=score, ensemble=ensemble, always_ensemble=True)
        return {model: Aggregate(consensus=track.majority, quality=quality) for model, quality in scored.columns.items()}
    jobs.append((score, "", single_label))

    accuracy = track.annotator_accuracy()
    rows, seconds = [], {}
    for method, model, job in jobs:
        start = time.perf_counter()
        result = job()
        seconds[f"{method}:{model}" if model else method] = time.perf_counter() - start
        for model, aggregate in result.items() if isinstance(result, dict) else [(model, result)]:
            rows.append({"dataset": track.dataset.name, "method": method, "model": model,
                         **row_metrics(aggregate, clean=track.clean, annotator_accuracy=accuracy.to_numpy(),
                                       lift_k=lift_k)})
    table = pd.DataFrame(rows, columns=table_columns(lift_k))
    return table, summarise(table, annotator_accuracy=accuracy), seconds


def table_columns(lift_k: int) -> list[str]:
    """Columns of ``multiannotator.csv``."""
    return ["dataset", "method", "model", "consensus_accuracy", "num_wrong_consensus", *metric_names(lift_k),
            "annotator_spearman", *(f"annotator_quality:{name}" for name in ANNOTATORS)]


def not_evaluated(*, lift_k: int) -> tuple[pd.DataFrame, dict]:
    """The outputs when the track's dataset is not among the evaluated ones (``published.datasets``): a
    table with no rows and an empty summary, so that a quick configuration (e.g. roman-numeral only)
    does not pay for the track."""
    return pd.DataFrame(columns=table_columns(lift_k)), {}


def summarise(table: pd.DataFrame, *, annotator_accuracy: pd.Series) -> dict:
    """The few numbers of ``multiannotator.json`` (the DVC metrics): consensus accuracy of majority vote
    and of the best CROWDLAB row, that row's AUROC, and each slot's true accuracy."""
    crowdlab_rows = table[table["method"] == "crowdlab"]
    best = crowdlab_rows.loc[crowdlab_rows["consensus_accuracy"].idxmax()]
    majority = table.loc[table["method"] == "majority_vote", "consensus_accuracy"].iloc[0]
    return {
        "consensus_accuracy": {"majority_vote": float(majority), "crowdlab_best": float(best["consensus_accuracy"])},
        "auroc": {"crowdlab_best": float(best["auroc"])},
        "annotator_accuracy": {name: float(annotator_accuracy[name]) for name in ANNOTATORS},
    }


_DESCRIPTIONS = {
    "consensus_accuracy": "share of images whose consensus label equals `clean_label`",
    "num_wrong_consensus": "number of images whose consensus label differs from `clean_label` (the positives "
                           "of the next columns; each row has its own)",
    "auroc": "probability that an image with a wrong consensus label gets a lower quality score than one "
             "with a right consensus label (ties count one half; 0.5 = chance)",
    "auprc": "average precision of the ranking by quality score (lowest first) for finding the wrong "
             "consensus labels; chance = that row's share of wrong consensus labels",
    "lift_at_num_errors": "share of wrong consensus labels among as many lowest-scored images as there are "
                          "wrong ones, divided by the overall share (1 = chance)",
    "annotator_spearman": "Spearman rank correlation between the method's estimated quality of the three "
                          "annotator slots and their true accuracy against `clean_label`; with 3 slots it "
                          "can only be -1, -0.5, 0.5 or 1, so it is coarse",
}


def _describe(column: str) -> str:
    if lift := re.fullmatch(r"lift_at_(\d+)", column):
        return (f"share of wrong consensus labels among the {lift.group(1)} lowest-scored images, divided by "
                f"the overall share (1 = chance)")
    return _DESCRIPTIONS.get(column, "a metric of the registry (`labelbench.evaluation.metrics`) of the quality score "
                                     "for finding the wrong consensus labels")


def _cell(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def markdown_section(*, table: pd.DataFrame, summary: dict) -> str:
    """The report's "Multi-annotator track (CIFAR-10N)" section from ``multiannotator.csv`` (``table``)
    and ``multiannotator.json`` (``summary``): the caveat, the table, one sentence per metric."""
    if table.empty:
        return (f"{SECTION_TITLE}\n\nNot evaluated: `multiannotator.dataset` is not among the evaluated "
                f"`published.datasets`.\n")
    dataset = table["dataset"].iloc[0]
    trained_on = CIFAR10N_VARIANTS[dataset.removeprefix("cifar-10n-")]
    metric_columns = [c for c in table.columns
                      if c not in ("dataset", "method", "model") and not c.startswith("annotator_quality:")]
    model = table["model"].fillna("").replace("", "–").map(short_model)  # empty in the CSV: no model
    cells = pd.concat([table["method"], model, table[metric_columns].map(_cell)], axis=1)
    accuracy = ", ".join(f"`{k}` {v:.4f}" for k, v in summary["annotator_accuracy"].items())
    lines = [
        SECTION_TITLE, "",
        f"Each of the {len(ANNOTATORS)} human labels per CIFAR-10N training image (`random_label1..3`, from "
        f"`{HUMAN_LABELS}`, joined to `{dataset}` by the number in `image_ids.txt`) is one annotator slot; "
        f"a method turns them into a consensus label per image and, where it can, a quality score per image "
        f"(low = the consensus is likely wrong) and a quality estimate per slot. The npz holds no worker "
        f"ids, so a slot is not one person: the three slots are treated as three annotators. True accuracy "
        f"of the slots against `clean_label`: {accuracy}.",
        "",
        f"**Caveat.** The `pred_probs` used here (those of `{dataset}`) come from models trained on "
        f"`{trained_on}`"
        + (", the majority vote" if trained_on == "aggre_label" else "")
        + ": out of sample (cross-validation), but they have seen the "
        + ("majority vote" if trained_on == "aggre_label" else f"`{trained_on}`")
        + " of the other images, so CROWDLAB and the single-label scores are not independent of the "
        "annotations they are compared with.",
        "",
        "Rows: `crowdlab` with one model's `pred_probs` or `ensemble` (cleanlab's "
        "`get_label_quality_multiannotator_ensemble`); `majority_vote` is `aggre_label` (quality = share of "
        "slots agreeing with it); `dawid_skene` and `glad` are crowd-kit's (quality = posterior probability "
        "of their consensus); the remaining rows score `aggre_label` itself with one model or an ensemble "
        "(single-label scores, consensus = majority vote). `–`: the method gives no such output.",
        "",
        cells.to_markdown(index=False, disable_numparse=True),
        "",
    ]
    lines += [f"- `{column}`: {_describe(column)}." for column in metric_columns]
    return "\n".join(lines) + "\n"


def write_outputs(table: pd.DataFrame, summary: dict, *, csv_path, json_path, section_path=None) -> None:
    """``multiannotator.csv`` (the table), ``multiannotator.json`` (the summary) and, when given, the
    markdown section on its own; all or none (:func:`~labelbench.data.files.atomic_outputs`)."""
    paths = [Path(csv_path), Path(json_path)] + ([Path(section_path)] if section_path is not None else [])
    with atomic_outputs(files=paths) as tmp:
        write_csv(tmp[paths[0]], table)
        write_json(tmp[paths[1]], summary)
        if section_path is not None:
            write_text(tmp[paths[2]], markdown_section(table=table, summary=summary))

"""The full benchmark: every score variant × dataset × model, the ensembles, and cleanlab's filters.

Outputs (long form):

* ``benchmark.csv``: dataset, model, method, adjust_pred_probs, auroc, auprc, lift_at_100,
  lift_at_num_errors. Ensembles appear with model ``ensemble:<scheme>``. With the bootstrap
  (:mod:`labelbench.evaluation.bootstrap`) also ``<metric>_lo``, ``<metric>_hi`` (percentile
  interval) and ``<metric>_vs_best`` (``best`` / ``tied`` / ``worse``: the variant against the best
  variant of its dataset × model, or of its ensemble scheme, by the paired difference's interval).
* ``filters.csv``: dataset, model, filter_by, precision, recall, f1, num_flagged.
* ``summary.json``: per method variant, the mean over dataset × model pairs of each metric
  min-max normalised within the pair (the paper's summary; 1 = best variant on every pair); with
  the bootstrap also ``verdicts``: per variant and metric, wins (best), ties, losses over the pairs.

Fast path: each score vector is computed once (adjusted pred_probs shared between methods,
per-model scores reused by the ``avg_scores*`` ensembles, log losses computed once per model),
every metric comes from one sort, each pair's confident joint is computed once for cleanlab's
filters, the datasets are loaded once, and (dataset, model) tasks run on a process pool.
``tests/reference.py`` holds the straightforward computation the tests compare against.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import os
import signal
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues

from labelbench.evaluation.ensembles import (ENSEMBLE_PREFIX, ENSEMBLE_SCHEMES, check_scheme, ensemble_scores,
                                             ensemble_weights)
from labelbench.data.io import Dataset, load_dataset
from labelbench.evaluation.bootstrap import (
    compiled_pass, difference_intervals, interval_names, paired_verdicts, percentile_interval,
    resample_weights, weighted_metrics,
)
from labelbench.evaluation.detectors import family_of
from labelbench.evaluation.metrics import Ranking, check_lift_k, filter_metrics, metric_names, metrics_of
from labelbench.evaluation.params import Bootstrap
from labelbench.evaluation.scores import ALL_VARIANTS, CLEANLAB_VARIANTS, all_variant_scores

FILTER_BY = ("prune_by_class", "prune_by_noise_rate", "both", "confident_learning", "predicted_neq_given",
             "low_normalized_margin", "low_self_confidence")
BENCHMARK_COLUMNS = ["dataset", "model", "method", "adjust_pred_probs"]  # then the metric registry's
FILTER_COLUMNS = ["dataset", "model", "filter_by", "precision", "recall", "f1", "num_flagged"]


@dataclass(frozen=True)
class Task:
    """One unit of work: a single model's variants and filters, or (with ``ensembles``) one dataset's ensembles."""

    dataset: str
    models: tuple[str, ...]
    lift_k: int
    ensembles: tuple[str, ...] = ()
    bootstrap: bool = False  # replicates on the dataset's resample weights (_WEIGHTS)


def _metric_row(dataset, model, method, adjust, metrics):
    return {"dataset": dataset, "model": model, "method": method, "adjust_pred_probs": adjust, **metrics}


# Datasets loaded (and validated) once in the parent, before the fork: the workers inherit them,
# and each dataset's (B, N) resample weights, shared by all its score vectors (paired bootstrap).
_LOADED: dict[str, Dataset] = {}
_WEIGHTS: dict[str, np.ndarray] = {}
#: Scores of the other detector families (labelbench.evaluation.detectors): dataset -> model -> detector -> (N,).
_DETECTORS: dict[str, dict[str, dict[str, np.ndarray]]] = {}


def worker_pool(workers: int) -> multiprocessing.pool.Pool:
    """Forked workers (they inherit the loaded datasets) that take SIGTERM's default action. Leaving the pool's
    block stops them by SIGTERM; with the stage's handler (``files.stage_main``: ``sys.exit``) inherited through
    the fork, one could stop holding the task queue's lock and leave another waiting on it, and the stage hung
    (seen once in CI, in `dvc repro` of the benchmark stage). The default is theirs from the fork on: set only by
    the initializer, a worker stuck before it ran (a lock another thread held at the fork) ignored SIGTERM and the
    pool's exit waited on it forever (seen once in CI, in this function's test)."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:  # the initializer too: the pool forks a replacement for a worker that dies
        return multiprocessing.get_context("fork").Pool(workers, initializer=signal.signal,
                                                        initargs=(signal.SIGTERM, signal.SIG_DFL))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _measure(task: Task, scores: np.ndarray, replicates: list) -> dict[str, float]:
    """Point estimates of one score vector; its bootstrap replicates appended to ``replicates``."""
    ranking = Ranking.from_scores(is_error=_LOADED[task.dataset].label_errors, scores=scores)
    if task.bootstrap:
        replicates.append(weighted_metrics(ranking, _WEIGHTS[task.dataset], lift_k=task.lift_k))
    return metrics_of(ranking, lift_k=task.lift_k)


def _run_task(task: Task) -> tuple[list[dict], list[dict], list[dict]]:
    """(metric rows, filter rows, per metric row {metric: (B,) replicates} or nothing)."""
    data = _LOADED[task.dataset]
    labels, is_error = data.given_labels, data.label_errors
    rows, filter_rows, replicates = [], [], []
    if not task.ensembles:
        (model,) = task.models
        pred_probs = data.pred_probs[model]
        for (method, adjust), scores in all_variant_scores(labels=labels, pred_probs=pred_probs).items():
            rows.append(_metric_row(task.dataset, model, method, adjust, _measure(task, scores, replicates)))
        for method, scores in _DETECTORS.get(task.dataset, {}).get(model, {}).items():  # beside them, judged alike
            rows.append(_metric_row(task.dataset, model, method, False, _measure(task, scores, replicates)))
        confident_joint = compute_confident_joint(labels, pred_probs)  # once for the seven filters
        for filter_by in FILTER_BY:
            flagged = _find_label_issues(labels, pred_probs, filter_by, confident_joint)
            filter_rows.append({"dataset": task.dataset, "model": model, "filter_by": filter_by,
                                **filter_metrics(is_error=is_error, flagged=flagged)})
        return rows, filter_rows, replicates
    pred_probs_list = [data.pred_probs[m] for m in task.models]
    member_scores = [all_variant_scores(labels=labels, pred_probs=p, variants=CLEANLAB_VARIANTS)
                     for p in pred_probs_list]
    weights_by_weighting: dict[str, np.ndarray] = {}
    for scheme in task.ensembles:
        weighting = ENSEMBLE_SCHEMES[scheme][1]
        if weighting not in weights_by_weighting:
            weights_by_weighting[weighting] = ensemble_weights(scheme, labels=labels, pred_probs_list=pred_probs_list)
        for method, adjust in CLEANLAB_VARIANTS:  # avg_scores*: the members' scores above, reused
            scores = ensemble_scores(scheme, labels=labels, pred_probs_list=pred_probs_list, method=method,
                                     adjust_pred_probs=adjust, weights=weights_by_weighting[weighting],
                                     member_scores=[s[(method, adjust)] for s in member_scores])
            metrics = _measure(task, scores, replicates)
            rows.append(_metric_row(task.dataset, ENSEMBLE_PREFIX + scheme, method, adjust, metrics))
    return rows, filter_rows, replicates


#: The filters of find_label_issues that use a confident joint handed to them (the others compute
#: their own, or none); a test holds the result equal to find_label_issues without it.
USES_CONFIDENT_JOINT = ("prune_by_class", "prune_by_noise_rate", "both")


def _find_label_issues(labels, pred_probs, filter_by, confident_joint=None):
    given = {"confident_joint": confident_joint} if filter_by in USES_CONFIDENT_JOINT else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about tiny classes; not ours to show
        # n_jobs=1: the stage's own pool spreads the pairs; cleanlab's pool inside it would only contend
        return find_label_issues(labels, pred_probs, filter_by=filter_by, n_jobs=1, **given)


def run_benchmark(
    datasets: dict[str, tuple[str, Sequence[str]]],
    *,
    lift_k: int = 100,
    ensembles: Iterable[str] = tuple(ENSEMBLE_SCHEMES),
    workers: int | None = None,
    bootstrap: Bootstrap | None = None,
    detectors: Callable[[dict[str, Dataset]], dict[str, dict[str, dict[str, np.ndarray]]]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every task; returns (benchmark table, filter table) in a stable order. With
    ``bootstrap``, the table also has each metric's interval and verdict columns
    (:func:`interval_columns`). ``detectors``: a function of the loaded datasets (name -> Dataset) giving
    dataset -> model -> detector -> scores (N,) of the other detector families, rows beside that model's pred_probs
    variants (method = the detector's name), in the same verdict group."""
    lift_k, ensembles = int(lift_k), tuple(map(check_scheme, ensembles))  # an unknown scheme: refused before any work
    _LOADED.clear()
    _WEIGHTS.clear()
    _DETECTORS.clear()
    _LOADED.update({name: load_dataset(root, name, models=list(models)) for name, (root, models) in datasets.items()})
    check_lift_k(lift_k, {name: len(data.given_labels) for name, data in _LOADED.items()})
    _DETECTORS.update(detectors(dict(_LOADED)) if detectors is not None else {})
    if bootstrap is not None:
        _WEIGHTS.update({name: resample_weights(n=data.given_labels.shape[0], resamples=bootstrap.resamples,
                                                seed=bootstrap.seed, name=name) for name, data in _LOADED.items()})
        compiled_pass()  # compiled (or loaded) once here; the forked workers inherit it
    # ensemble tasks first: they are the longest
    tasks = [Task(name, tuple(models), lift_k, ensembles, bootstrap=bootstrap is not None)
             for name, (_, models) in datasets.items() if ensembles and len(models) > 1]
    tasks += [Task(name, (model,), lift_k, bootstrap=bootstrap is not None)
              for name, (_, models) in datasets.items() for model in models]
    workers = min(workers or os.cpu_count() or 1, len(tasks))
    try:
        if workers > 1:
            with worker_pool(workers) as pool:
                results = pool.map(_run_task, tasks, chunksize=1)
        else:
            results = [_run_task(t) for t in tasks]
    finally:
        _WEIGHTS.clear()
        _DETECTORS.clear()
    rows = [r for result in results for r in result[0]]
    filter_rows = [r for result in results for r in result[1]]
    table = pd.DataFrame(rows, columns=BENCHMARK_COLUMNS + metric_names(lift_k))
    if bootstrap is not None:
        replicates = [r for result in results for r in result[2]]
        table = pd.concat([table, interval_columns(table, replicates, lift_k=lift_k, level=bootstrap.level)], axis=1)
    return _sorted(table, datasets, ["method", "adjust_pred_probs"]), _sorted(
        pd.DataFrame(filter_rows, columns=FILTER_COLUMNS), datasets, ["filter_by"]
    )


def interval_columns(table: pd.DataFrame, replicates: list[dict], *, lift_k: int, level: float) -> pd.DataFrame:
    """For each metric with a bootstrap counterpart: ``<metric>_lo``, ``<metric>_hi`` (percentile
    interval of row i's replicates ``replicates[i][metric]`` (B,)), then per (dataset, model) group
    (a single model's 7 variants and, on a dataset trained here, its other detectors; or one ensemble scheme's 5)
    ``<metric>_vs_best`` (:func:`labelbench.evaluation.bootstrap.paired_verdicts`) and ``<metric>_diff_lo``,
    ``<metric>_diff_hi``: the interval of the paired difference to the group's best (0, 0 for it); and
    ``<metric>_vs_best_in_family``: the verdict within the row's detector family of that group (for the pred_probs
    rows: against the best of the 7 variants alone, what the report's variant tables and the summary count)."""
    names = interval_names(lift_k)
    out = {}
    for metric in names:
        bounds = [percentile_interval(r[metric], level=level) for r in replicates]
        out[f"{metric}_lo"], out[f"{metric}_hi"] = np.reshape(bounds, (-1, 2)).T
    families = table["method"].map(family_of)
    for metric in names:
        verdicts, in_family = (pd.Series("", index=table.index, dtype=object) for _ in range(2))
        low, high = pd.Series(np.nan, index=table.index), pd.Series(np.nan, index=table.index)
        for _, group in table.groupby(["dataset", "model"], sort=False):
            stacked = np.stack([replicates[i][metric] for i in group.index])
            points = group[metric].to_numpy()
            intervals = difference_intervals(points, stacked, level=level)
            verdicts[group.index] = paired_verdicts(points, intervals)
            low[group.index], high[group.index] = zip(*intervals)
            for _, rows in group.groupby(families[group.index], sort=False):
                family_points = rows[metric].to_numpy()
                in_family[rows.index] = paired_verdicts(family_points, difference_intervals(
                    family_points, stacked[group.index.get_indexer(rows.index)], level=level))
        out[f"{metric}_vs_best"] = verdicts
        out[f"{metric}_diff_lo"], out[f"{metric}_diff_hi"] = low, high
        out[f"{metric}_vs_best_in_family"] = in_family
    return pd.DataFrame(out, index=table.index)


def _sorted(frame: pd.DataFrame, datasets, keys) -> pd.DataFrame:
    """Datasets in params order, single models before ensembles, then the given keys."""
    if frame.empty:
        return frame
    order = {name: i for i, name in enumerate(datasets)}
    frame = frame.assign(_d=frame["dataset"].map(order), _e=frame["model"].str.startswith(ENSEMBLE_PREFIX))
    return frame.sort_values(["_d", "_e", "model", *keys], kind="stable").drop(columns=["_d", "_e"]).reset_index(drop=True)


def variant_label(method: str, adjust_pred_probs: bool) -> str:
    """Name of a (method, adjust_pred_probs) variant in tables.

    >>> variant_label("self_confidence", True)
    'self_confidence+adjust_pred_probs'
    """
    return f"{method}+adjust_pred_probs" if adjust_pred_probs else method


def variant_labels(rows: pd.DataFrame) -> list[str]:
    return [variant_label(m, a) for m, a in zip(rows["method"], rows["adjust_pred_probs"])]


def in_variant_order(present) -> list[str]:
    """The variant labels among ``present``, in the order of :data:`ALL_VARIANTS`."""
    return [variant_label(m, a) for m, a in ALL_VARIANTS if variant_label(m, a) in present]


def summarize(table: pd.DataFrame, *, lift_k: int) -> dict:
    """Per method variant: mean over single-model (dataset, model) pairs of each metric, min-max
    normalised across the variants within the pair (a pair where all variants tie counts 0.5).
    With verdict columns, also ``verdicts``: per variant and metric the number of pairs where it
    is the best of the pair's variants alone (wins), tied with the best or sharing its value (ties) or worse
    (losses): a pair has at most one win, and wins + ties + losses = pairs for each variant.

    Ensembles are left out: they cover the five cleanlab variants only, so normalising them
    against the seven single-model variants would not compare like with like; so are the other detector families,
    which exist on the datasets trained here only (their verdicts against each pair's best over every family are
    the table's ``<metric>_vs_best``)."""
    single = table[~table["model"].str.startswith(ENSEMBLE_PREFIX)
                   & table["method"].isin({m for m, _ in ALL_VARIANTS})].copy()  # the other families: trained only
    single["variant"] = variant_labels(single)
    metrics = metric_names(lift_k)
    group = single.groupby(["dataset", "model"])[metrics]
    low, span = group.transform("min"), group.transform("max") - group.transform("min")
    normalised = ((single[metrics] - low) / span.where(span > 0, 1)).where(span > 0, 0.5)
    means = normalised.groupby(single["variant"], sort=False).mean()
    order = in_variant_order(means.index)
    summary = {
        "num_pairs": int(single.groupby(["dataset", "model"]).ngroups),
        "methods": {v: {m: float(means.loc[v, m]) for m in metrics} for v in order},
    }
    judged = [m for m in metrics if f"{m}_vs_best_in_family" in single.columns]
    if judged:  # against the best of the pair's pred_probs variants: a detector of another family is no variant
        words = {"wins": "best", "ties": "tied", "losses": "worse"}
        summary["verdicts"] = {
            v: {m: {count: int(((single["variant"] == v) & (single[f"{m}_vs_best_in_family"] == word)).sum())
                    for count, word in words.items()} for m in judged}
            for v in order
        }
    return summary


def write_outputs(table: pd.DataFrame, filters: pd.DataFrame, out_dir: Path, *, lift_k: int,
                  bootstrap: Bootstrap | None = None) -> None:
    """benchmark.csv, filters.csv, summary.json (with the bootstrap's settings when it ran), all or none."""
    from labelbench.data.io import atomic_outputs, write_csv, write_json

    summary = summarize(table, lift_k=lift_k)
    if bootstrap is not None:
        summary["bootstrap"] = {"resamples": int(bootstrap.resamples), "seed": int(bootstrap.seed),
                                "level": float(bootstrap.level)}
    names = ("benchmark.csv", "filters.csv", "summary.json")
    with atomic_outputs(files=[out_dir / name for name in names]) as tmp:
        write_csv(tmp[out_dir / names[0]], table)
        write_csv(tmp[out_dir / names[1]], filters)
        write_json(tmp[out_dir / names[2]], summary)


def trained_detector_scores(params, crossval_root: Path, datasets: dict[str, Dataset],
                            ) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """dataset -> model -> detector -> scores (N,) of every dataset trained here (``params.crossval``), from the
    records of its folds ``crossval.folds`` under ``crossval_root/<dataset>/<model>/fold_<k>`` (each folder checked
    against the bytes DVC recorded for it) and the given labels of ``datasets`` (name -> Dataset, as
    :func:`run_benchmark` loaded them)."""
    from labelbench.config import ParamsError
    from labelbench.data.io import load_npy
    from labelbench.data.verify import verify
    from labelbench.evaluation.detectors import record_scores

    settings = params.benchmark.detectors
    out = {}
    for name in params.crossval.datasets:  # params.roots()'s trained datasets, in its order, with their models
        out[name] = {}
        for model in params.crossval.models:
            fold_dirs = [Path(crossval_root) / name / model / f"fold_{k}" for k in params.crossval.folds]
            for fold_dir in fold_dirs:
                verify(fold_dir)
                rows = load_npy(fold_dir / "records" / "train_indices.npy").shape[0]
                if settings.neighbours > rows:  # before any detector runs: the key named, not the k of a function
                    raise ParamsError(f"params.yaml: benchmark.detectors.neighbours = {settings.neighbours}: more than "
                                      f"the {rows} training rows of {fold_dir} among which the neighbours are found")
            out[name][model] = record_scores(fold_dirs, labels=datasets[name].given_labels,
                                             neighbours=settings.neighbours, el2n_epoch=settings.el2n_epoch)
    return out

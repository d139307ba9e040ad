"""Metrics and curves of a score table (built by :mod:`labelbench.evaluation.scoring`).

Score table (``data/scores/<dataset>.csv``), one row per example, in the dataset's row order:
``image_id, given_label, true_label (if known), is_label_error, <model>..., ensemble:<scheme>, rank``
where each model column holds label quality scores (low = likely error) and ``rank`` orders the
ensemble column (1 = most likely a label error).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from labelbench.evaluation.metrics import Ranking, metric_names, ranking_metrics


def score_columns(frame: pd.DataFrame) -> list[str]:
    fixed = {"image_id", "given_label", "true_label", "is_label_error", "rank"}
    return [c for c in frame.columns if c not in fixed]


def evaluate_table(frame: pd.DataFrame, *, lift_k: int, cv_accuracy: dict[str, float]) -> dict:
    """Every registry metric per score column (each model, then the ensemble), plus CV accuracy.
    (Intervals are the benchmark stage's, which covers every variant: the headline table looks them
    up there, so that changing ``score`` reruns no bootstrap.)"""
    is_error = frame["is_label_error"].to_numpy().astype(bool)
    per_model = {column: {**ranking_metrics(is_error=is_error, scores=frame[column].to_numpy(), lift_k=lift_k),
                          "cv_accuracy": cv_accuracy[column]} for column in score_columns(frame)}
    return {"num_examples": int(is_error.shape[0]), "num_errors": int(is_error.sum()), "models": per_model}


def headline(per_dataset: dict[str, dict], *, lift_k: int) -> dict:
    """``{metric: {dataset: value}}`` of each dataset's headline column (the ensemble when there is
    one, the last score column, else the only model): what `dvc exp show` compares, metric first so
    that one metric across datasets reads left to right."""
    heads = {name: list(result["models"].values())[-1] for name, result in per_dataset.items()}
    return {metric: {name: head[metric] for name, head in heads.items()} for metric in metric_names(lift_k)}


def curve_tables(frame: pd.DataFrame, *, dataset: str, points: int = 101) -> dict[str, pd.DataFrame]:
    """Long-form curve data for DVC plots, resampled on common grids so files stay small.

    ``pr``: recall grid -> best precision reachable at that recall or more (interpolated PR);
    ``roc``: false positive rate grid -> best true positive rate at that FPR or less;
    ``lift``: k grid -> lift@k. Each has a ``dataset`` column (constant: the chart's heading in `dvc plots`, whose
    title is shared by every dataset's file) and a ``model`` column.
    """
    is_error = frame["is_label_error"].to_numpy().astype(bool)
    n = is_error.shape[0]
    ks = [int(k) for k in np.unique(np.geomspace(10, n, num=30).astype(int)) if 0 < k <= n]
    grid = np.linspace(0, 1, points)
    frames = {"pr": [], "roc": [], "lift": []}
    for column in score_columns(frame):
        ranking = Ranking.from_scores(is_error=is_error, scores=frame[column].to_numpy())
        precision, recall = ranking.pr_curve()
        best_from_here = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, grid, side="left").clip(max=recall.shape[0] - 1)
        fpr, tpr = ranking.roc_curve()
        upto = np.searchsorted(fpr, grid, side="right") - 1
        curves = {"pr": {"recall": grid, "precision": best_from_here[at]}, "roc": {"fpr": grid, "tpr": tpr[upto]},
                  "lift": {"k": ks, "lift": [ranking.lift_at_k(k) for k in ks]}}
        for kind, columns in curves.items():
            frames[kind].append(pd.DataFrame({"dataset": dataset, "model": column, **columns}))
    return {kind: pd.concat(parts, ignore_index=True) for kind, parts in frames.items()}

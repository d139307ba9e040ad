"""Ranked label issues: the examples most likely mislabeled, as files people can act on.

``reports/issues/<dataset>.csv``, one row per example, most likely mislabeled first (the
``report.ranking_method`` score of the ``report.ranking_ensemble`` of the dataset's models, or of
its only model, ordered as the authors rank: ``argsort(1 - score)``)::

    rank             1 = most likely mislabeled
    image_id         row's id (image_ids.txt)
    given_label      the label in the data (class name)
    suggested_label  argmax of the ensemble's pred_probs (the scheme's weights; the only model's
                     pred_probs for one model): the label the models would give
    score            the ranking score (low = likely mislabeled)
    score:<model>    each model's score of the same method (with two or more models)
    true_label       where known (class name)
    is_label_error   where known (the dataset's error mask): 1 = a real label error

``reports/issues/<dataset>.png``: the first images of that list in a grid, titled
``given → suggested``, for datasets whose images are here (those trained here; added ones with
``--images``). Ranking a dataset with no benchmark around it is cleanlab's job
(``cleanlab.filter.find_label_issues``, ``cleanlab.Datalab``); this module ranks the benchmark's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from labelbench.data.files import rgb_image
from labelbench.data.io import DataError, Dataset, atomic_path, open_image, read_class_names, read_csv_strings
from labelbench.data.classes import CIFAR10_CLASSES, ROMAN_CLASSES
from labelbench.evaluation.ensembles import score_models
from labelbench.evaluation.scoring import error_rank

#: Class names of the published datasets, which do not ship a classes.txt: class index k is the
#: k-th name. roman-numeral: the Data-Centric AI competition's folders in numeral order (the
#: published given labels match the images' folders in this order); CIFAR-10*: the CIFAR-10
#: batches.meta label_names. tests/test_issues.py holds both to the data.
PUBLISHED_CLASSES = {"roman-numeral": ROMAN_CLASSES, "cifar-10n-agg": CIFAR10_CLASSES,
                     "cifar-10n-worst": CIFAR10_CLASSES, "cifar-10s": CIFAR10_CLASSES}


def class_names(name: str, *, num_classes: int, extras: str | Path | None) -> list[str]:
    """The K class names of dataset ``name``: ``<extras>/classes.txt`` where the dataset has one
    (trained: data/raw/<name>; added with --classes), the published names, else "0".."K-1"."""
    if extras is not None and (Path(extras) / "classes.txt").is_file():
        return read_class_names(Path(extras) / "classes.txt", num_classes=num_classes)
    if name in PUBLISHED_CLASSES and len(PUBLISHED_CLASSES[name]) == num_classes:
        return list(PUBLISHED_CLASSES[name])
    return [str(k) for k in range(num_classes)]


def rank_issues(data: Dataset, *, method: str, ensemble: str, classes: list[str], rows: int) -> pd.DataFrame:
    """The ``rows`` examples of ``data`` ranked most likely mislabeled (columns: see the module)."""
    labels = data.given_labels
    scored = score_models(data.pred_probs, labels=labels, method=method, ensemble=ensemble)
    score = scored.ranking
    top = np.argsort(error_rank(score), kind="stable")[:rows]  # ranks are distinct
    names = np.array(classes, dtype=object)
    table = {
        "rank": np.arange(1, top.shape[0] + 1),
        "image_id": [data.image_ids[i] for i in top],
        "given_label": names[labels[top]],
        "suggested_label": names[scored.pred_probs[top].argmax(axis=1)],
        "score": score[top],
    }
    if scored.ensemble is not None:
        table.update({f"score:{m}": s[top] for m, s in scored.members.items()})
    if data.true_labels is not None:
        table["true_label"] = names[data.true_labels[top]]
    if data.label_errors is not None:
        table["is_label_error"] = data.label_errors[top].astype(np.int8)
    return pd.DataFrame(table)


def read_issues(path: str | Path) -> pd.DataFrame:
    """A ranked-issues CSV written by the `issues` stage (strings; ``rank`` and ``score`` as numbers)."""
    frame = read_csv_strings(path)
    missing = [c for c in ("rank", "image_id", "given_label", "suggested_label", "score") if c not in frame.columns]
    if missing or frame.empty:
        raise DataError(path, f"missing columns {missing} (rerun the issues stage)" if missing else "has no rows")
    try:
        return frame.astype({"rank": np.int64, "score": np.float64})
    except ValueError as exc:
        raise DataError(path, f"rank and score must be numbers ({exc})") from None


def issue_grid(issues: pd.DataFrame, *, images: Path, path: Path, count: int, title: str) -> None:
    """PNG grid of the first ``count`` rows of ``issues`` (from :func:`rank_issues`): each image
    ``<images>/<image_id>`` titled ``#rank given → suggested`` (red where it is a known error)."""
    plt = pyplot()
    rows = issues.head(count)
    pictures = []
    for image_id in rows["image_id"]:
        with open_image(images / image_id) as image:
            pictures.append(np.asarray(rgb_image(image)))
    columns = min(6, len(pictures))
    lines = -(-len(pictures) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(2.0 * columns, 2.25 * lines + 0.5), squeeze=False)
    known = rows["is_label_error"].astype(int).tolist() if "is_label_error" in rows else [0] * len(rows)
    for ax in axes.flat:
        ax.axis("off")
    for ax, picture, r, given, suggested, error in zip(axes.flat, pictures, rows["rank"], rows["given_label"],
                                                       rows["suggested_label"], known):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(f"#{r} {_short(given)} → {_short(suggested)}", fontsize=8, color="red" if error else "black")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path, *, dpi: int) -> None:
    """Write matplotlib figure ``fig`` to ``path`` atomically (no Software tag: the same bytes on every
    host with the same matplotlib), then close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)


def _short(label: str, width: int = 12) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def top_ranked(issues_dir: str | Path, datasets: list[str], *, top_n: int) -> pd.DataFrame:
    """The first ``top_n`` rows of each dataset's ranked issues (``<issues_dir>/<dataset>.csv``)
    with a ``dataset`` column, for the report."""
    frames = [read_issues(Path(issues_dir) / f"{name}.csv").head(top_n).assign(dataset=name) for name in datasets]
    return pd.concat(frames, ignore_index=True).fillna("")  # a column some datasets lack: empty


"""Exact-duplicate removal from one raw dataset.

Raw layout read here (one dataset)::

    <raw>/<dataset>/
      images/<image_id>   PNG files; image_id is a relative path, e.g. ``train/airplane/0001.png``
      labels.csv          image_id, given_label, true_label (int or empty), label_error (0/1 or empty)
      classes.txt         one class name per line

Two images are duplicates when the sha256 of their file bytes is equal. In each group of
duplicates the image whose id sorts first (:func:`~labelbench.data.io.image_id_sort_key`) is kept and the
others are removed; ``removed.csv`` names, for every removed image, the kept one.

Only images listed in ``labels.csv`` take part. An image listed there but missing from
``images/`` is an error (:class:`~labelbench.data.io.DataError` naming it); an image present in
``images/`` but not listed is ignored: it is not hashed and not written, and is returned in
:attr:`DedupeResult.unlisted` so the stage can report the count.

"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from labelbench.data.io import _SHOWN, DataError, image_id_sort_key, read_labels_csv

REMOVED_COLUMNS = ("image_id", "duplicate_of")


# --- dedupe ---------------------------------------------------------------------------------


@dataclass
class DedupeResult:
    """``labels``: input rows minus removed ones, input order and columns (M <= N rows).
    ``removed``: columns image_id, duplicate_of, in ImageFolder order of image_id.
    ``unlisted``: image ids found under ``images/`` but absent from labels.csv (ignored)."""

    labels: pd.DataFrame
    removed: pd.DataFrame
    unlisted: list[str] = field(default_factory=list)


def file_sha256(path: os.PathLike | str) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def find_duplicates(*, image_dir: os.PathLike | str, image_ids: Sequence[str]) -> pd.DataFrame:
    """Exact duplicates among ``image_dir/<image_id>`` for the N given ids.

    Returns a frame with columns ``image_id, duplicate_of`` (one row per removed image,
    ImageFolder order); ``duplicate_of`` is the first id of its group in that order, which is
    kept. Raises DataError naming the missing files if any listed image does not exist.
    """
    image_dir = Path(image_dir)
    missing = _missing(image_dir, image_ids)
    if missing:
        raise DataError(image_dir, f"{len(missing)} listed image(s) are missing: {_show(missing)}")
    kept_by_hash: dict[str, str] = {}
    removed: list[tuple[str, str]] = []
    for image_id in sorted(image_ids, key=image_id_sort_key):
        digest = file_sha256(image_dir / image_id)
        first = kept_by_hash.setdefault(digest, image_id)
        if first != image_id:
            removed.append((image_id, first))
    return pd.DataFrame(removed, columns=list(REMOVED_COLUMNS), dtype=str)


def _missing(image_dir: Path, image_ids: Sequence[str]) -> list[str]:
    return [i for i in image_ids if not (image_dir / i).is_file()]


def _show(ids: Sequence[str]) -> str:
    return ", ".join(map(repr, ids[:_SHOWN])) + (f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else "")


def list_images(image_dir: os.PathLike | str) -> list[str]:
    """Every file under ``image_dir`` as a relative POSIX path (hidden files skipped), sorted."""
    image_dir = Path(image_dir)
    found = []
    for root, dirs, files in os.walk(image_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        rel = Path(root).relative_to(image_dir)
        found += [(rel / f).as_posix() for f in files if not f.startswith(".")]
    return sorted(found, key=image_id_sort_key)


def dedupe(*, raw_dir: os.PathLike | str) -> DedupeResult:
    """Remove exact duplicates from the raw dataset folder ``raw_dir`` (see module docstring)."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "raw dataset folder not found")
    image_dir = raw_dir / "images"
    if not image_dir.is_dir():
        raise DataError(image_dir, "images folder not found")
    labels_path = raw_dir / "labels.csv"
    labels = read_labels_csv(labels_path)
    ids = labels["image_id"].tolist()
    missing = _missing(image_dir, ids)
    if missing:
        raise DataError(labels_path, f"lists {len(missing)} image(s) missing from {image_dir}: {_show(missing)}")
    removed = find_duplicates(image_dir=image_dir, image_ids=ids)
    listed = set(ids)
    unlisted = [i for i in list_images(image_dir) if i not in listed]
    keep = ~labels["image_id"].isin(set(removed["image_id"]))
    return DedupeResult(labels=labels[keep].reset_index(drop=True), removed=removed, unlisted=unlisted)

"""Exact-duplicate removal from one raw dataset (``images/``, ``labels.csv``; see
:mod:`labelbench.data.raw.layout`).

Two images are duplicates when the sha256 of their file bytes is equal. In each group the image
whose id sorts first (:func:`~labelbench.data.files.image_id_sort_key`) is kept; ``removed`` names,
for every other one, the kept one. Only images listed in ``labels.csv`` take part: a listed image
missing from ``images/`` is a DataError naming it; an unlisted one is ignored (not hashed, not
written) and returned in :attr:`DedupeResult.unlisted` for the stage to report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from labelbench.data.files import check_images_present, file_hash, image_id_sort_key, read_labels_csv


@dataclass
class DedupeResult:
    """``labels``: input rows minus removed ones, input order and columns. ``removed``: columns
    image_id, duplicate_of, in ImageFolder order. ``unlisted``: image ids not in labels.csv."""

    labels: pd.DataFrame
    removed: pd.DataFrame
    unlisted: list[str]


def find_duplicates(*, image_dir: os.PathLike | str, image_ids: Sequence[str], listed_in=None) -> pd.DataFrame:
    """Exact duplicates among ``image_dir/<image_id>``: columns ``image_id, duplicate_of`` (one row per
    removed image, ImageFolder order). DataError naming the missing files (and ``listed_in``, the
    file that lists them) if any listed image does not exist."""
    image_dir = Path(image_dir)
    check_images_present(image_dir, image_ids, listed_in=listed_in)
    kept_by_hash: dict[str, str] = {}
    removed: list[tuple[str, str]] = []
    for image_id in sorted(image_ids, key=image_id_sort_key):
        first = kept_by_hash.setdefault(file_hash(image_dir / image_id, "sha256"), image_id)
        if first != image_id:
            removed.append((image_id, first))
    return pd.DataFrame(removed, columns=["image_id", "duplicate_of"], dtype=str)


def list_images(image_dir: os.PathLike | str) -> list[str]:
    """Every file under ``image_dir`` as a relative POSIX path (hidden files and folders skipped), sorted."""
    found = (p.relative_to(image_dir) for p in Path(image_dir).rglob("*") if p.is_file())
    return sorted((p.as_posix() for p in found if not any(part.startswith(".") for part in p.parts)),
                  key=image_id_sort_key)


def dedupe(*, raw_dir: os.PathLike | str) -> DedupeResult:
    """Remove exact duplicates from the raw dataset folder ``raw_dir`` (module docstring)."""
    labels_path = Path(raw_dir) / "labels.csv"
    labels = read_labels_csv(labels_path)
    ids = labels["image_id"].tolist()
    removed = find_duplicates(image_dir=Path(raw_dir) / "images", image_ids=ids, listed_in=labels_path)
    listed = set(ids)
    unlisted = [i for i in list_images(Path(raw_dir) / "images") if i not in listed]
    keep = ~labels["image_id"].isin(set(removed["image_id"]))
    return DedupeResult(labels=labels[keep].reset_index(drop=True), removed=removed, unlisted=unlisted)

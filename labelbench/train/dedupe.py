"""Exact-duplicate removal, and the validated reader of a raw ``labels.csv``.

Raw layout read here (one dataset)::

    <raw>/<dataset>/
      images/<image_id>   PNG files; image_id is a relative path, e.g. ``train/airplane/0001.png``
      labels.csv          image_id, given_label, true_label (int or empty), label_error (0/1 or empty)
      classes.txt         one class name per line (not read here)

Two images are duplicates when the sha256 of their file bytes is equal. In each group of
duplicates the image whose id sorts first (see :func:`image_id_sort_key`) is kept and the
others are removed; ``removed.csv`` names, for every removed image, the kept one.

Only images listed in ``labels.csv`` take part. An image listed there but missing from
``images/`` is an error (:class:`~labelbench.data.io.DataError` naming it); an image present in
``images/`` but not listed is ignored: it is not hashed and not written, and is returned in
:attr:`DedupeResult.unlisted` so the stage can report the count.

>>> image_id_sort_key("train/cat/0002.png") < image_id_sort_key("train/cat-x/0001.png")
True
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

import numpy as np
import pandas as pd

from labelbench.data.io import DataError, read_csv_strings

LABEL_COLUMNS = ("image_id", "given_label", "true_label", "label_error")
REMOVED_COLUMNS = ("image_id", "duplicate_of")
_SHOWN = 5  # how many offending ids an error message names


def image_id_sort_key(image_id: str) -> tuple[tuple[str, ...], str]:
    """Sort key of torchvision's ``ImageFolder`` order: by folder components, then file name.

    Plain string sorting differs when a folder name is a prefix of another one followed by a
    character below ``/`` (``cat`` vs ``cat-x``); ImageFolder sorts the class names themselves.
    """
    parts = PurePosixPath(image_id).parts
    return tuple(parts[:-1]), parts[-1]


def sorted_order(image_ids: Sequence[str]) -> np.ndarray:
    """Permutation (N,) int64 that puts ``image_ids`` in ImageFolder order (stable)."""
    keys = [image_id_sort_key(i) for i in image_ids]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


# --- reading labels.csv ---------------------------------------------------------------------


def read_labels_csv(path: os.PathLike | str) -> pd.DataFrame:
    """Read and validate a ``labels.csv``; every failure is a DataError naming the file.

    Returns a frame of N rows, in file order, with the columns in file order:
    ``image_id`` str (unique, relative, non-empty), ``given_label`` int64 >= 0,
    ``true_label`` nullable Int64 >= 0, ``label_error`` nullable Int64 in {0, 1}; any extra
    column is kept as str. Where both ``true_label`` and ``label_error`` are present,
    ``label_error`` must equal ``given_label != true_label``.
    """
    path = Path(path)
    raw = read_csv_strings(path)
    missing = [c for c in LABEL_COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; has {list(raw.columns)}")
    if len(raw) == 0:
        raise DataError(path, "has a header but no rows")

    ids = raw["image_id"].str.strip()
    blank = ids == ""
    if blank.any():
        raise DataError(path, f"{int(blank.sum())} row(s) with an empty image_id (first at row {_row(blank)})")
    bad_ids = [i for i in ids if not _is_relative_id(i)]
    if bad_ids:
        raise DataError(path, f"image_id must be a relative path inside images/, got {bad_ids[:_SHOWN]}")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise DataError(path, f"{len(dup)} repeated image_id(s), e.g. {list(dup.iloc[:_SHOWN])}")

    frame = raw.copy()
    frame["image_id"] = ids
    frame["given_label"] = _int_column(raw["given_label"], path, "given_label", allow_empty=False).astype(
        np.int64
    )
    frame["true_label"] = _int_column(raw["true_label"], path, "true_label", allow_empty=True)
    errors = _int_column(raw["label_error"], path, "label_error", allow_empty=True)
    if ((errors != 0) & (errors != 1)).fillna(False).any():
        raise DataError(path, f"label_error must be 0, 1 or empty; found {sorted(set(errors.dropna()) - {0, 1})}")
    frame["label_error"] = errors
    both = frame["true_label"].notna() & errors.notna()
    expected = (frame["given_label"] != frame["true_label"]).astype("Int64")
    wrong = both & (expected != errors).fillna(False)
    if wrong.any():
        raise DataError(
            path, f"label_error disagrees with given_label != true_label on {int(wrong.sum())} row(s) "
            f"(first at row {_row(wrong)}, image_id {frame['image_id'][wrong].iloc[0]!r})"
        )
    return frame


def _row(mask: pd.Series) -> int:
    """1-based data row (the header is not counted) of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


def _is_relative_id(image_id: str) -> bool:
    p = PurePosixPath(image_id)
    return not p.is_absolute() and "\\" not in image_id and ".." not in p.parts and p.name != ""


def _int_column(values: pd.Series, path, name: str, *, allow_empty: bool) -> pd.Series:
    """Parse decimal non-negative integers; empty strings become <NA> where allowed."""
    text = values.str.strip()
    empty = text == ""
    if empty.any() and not allow_empty:
        raise DataError(path, f"{name} is empty on {int(empty.sum())} row(s) (first at row {_row(empty)})")
    bad = ~empty & ~text.str.fullmatch(r"\+?\d+")
    if bad.any():
        raise DataError(
            path, f"{name} must be integers >= 0; found {list(text[bad].unique()[:_SHOWN])} "
            f"(first at row {_row(bad)})"
        )
    return pd.to_numeric(text.mask(empty, None), errors="raise").astype("Int64")


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

"""A folder of images of your own (``python -m labelbench add-dataset NAME --images DIR``): read, checked, and
the raw stage's copy of it.

``add-dataset`` checks the user's folder and writes it in the raw layout (:mod:`labelbench.data.raw.layout`;
the image files keep their bytes and format) to ``data/added/<name>/``, which DVC tracks; the raw stage's
``imagefolder`` source copies that folder to ``data/raw/<name>/``, from where dedupe, noise, folds and crossval
train it like any other dataset.
"""

from __future__ import annotations

import collections
import csv
import os
from pathlib import Path

import numpy as np

from labelbench.data.files import check_images_present, read_lines
from labelbench.data.raw.layout import (
    _SHOWN, DataError, RawTable, check_image_file, check_image_id, read_classes, read_raw, write_imagefolder,
)


def _class_folders(images: Path) -> list[str]:
    """torchvision's ImageFolder classes: the sorted names of the subfolders of ``images``."""
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(str(images))[0]
    except FileNotFoundError as exc:  # no class folder at all
        raise DataError(images, f"{exc}; give class subfolders, or --labels (a CSV of path,label)") from None


def _listed(labels: Path) -> list[tuple[str, str]]:
    """(image path, class name) rows of a ``path,label`` CSV."""
    try:
        with open(labels, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(labels, f"not a readable CSV ({exc})") from None
    if not rows or rows[0] != ["path", "label"]:
        raise DataError(labels, f"the header must be exactly path,label, got {rows[0] if rows else 'nothing'}")
    bad = [n for n, row in enumerate(rows[1:], start=2) if len(row) != 2 or not row[0] or not row[1].strip()]
    if bad:
        raise DataError(labels, f"line(s) {bad[:_SHOWN]}: each row must be path,label with both filled")
    return [(path, label.strip()) for path, label in rows[1:]]


def read_imagefolder(*, images: os.PathLike | str, labels: os.PathLike | str | None = None,
                     classes: os.PathLike | str | None = None, errors: os.PathLike | str | None = None,
                     min_per_class: int = 1) -> RawTable:
    """The user's images as a checked, folder-sorted :class:`RawTable` (image ids relative to ``images``).

    Without ``labels``, the ImageFolder layout: one subfolder per class (sorted names, torchvision's
    ``find_classes``), every file under it an image of that class. With ``labels``, a CSV ``path,label`` (path
    relative to ``images``, label a class name); the classes are the lines of ``classes`` or else the sorted
    labels. ``errors``: the images known to be mislabeled, one path per line (label_error 1; the rest 0).
    DataError naming the file for an unreadable image, a class with fewer than ``min_per_class`` images (an empty
    class), a label that is no class, a path that is not an image of the folder."""
    images = Path(images)
    if not images.is_dir():
        raise DataError(images, "not a folder")
    if labels is None:
        names = _class_folders(images)
        rows = [(path.relative_to(images).as_posix(), name) for name in names
                for path in sorted((images / name).rglob("*")) if path.is_file()]
    else:
        rows = _listed(Path(labels))
        names = sorted({label for _, label in rows})
    if classes is not None:
        names = read_classes(classes)
    where = labels if labels is not None else images
    if len(names) < 2:
        raise DataError(classes or where, f"needs at least 2 classes, has {names}")
    unknown = sorted({label for _, label in rows} - set(names))
    if unknown:
        raise DataError(where, f"label(s) {unknown[:_SHOWN]} are no class; the classes are {names[:10]}")
    counts = collections.Counter(label for _, label in rows)
    few = [name for name in names if counts[name] < min_per_class]
    if few:
        raise DataError(images / few[0] if labels is None else where,
                        f"class(es) {few[:_SHOWN]} have fewer than {min_per_class} image(s) "
                        f"({', '.join(str(counts[n]) for n in few[:_SHOWN])}); every class needs at least "
                        f"{min_per_class} (one per cross-validation fold)")
    for image_id, _ in rows:
        check_image_id(image_id, where)
        check_image_file(images / image_id)
    ids = [image_id for image_id, _ in rows]
    mask = None  # no known error mask
    if errors is not None:
        listed = [line.strip() for line in read_lines(errors)]
        strangers = sorted(set(listed) - set(ids))
        if strangers:
            raise DataError(errors, f"{len(strangers)} path(s) that are no image of {images}, "
                                    f"e.g. {strangers[:_SHOWN]}")
        mask = np.isin(np.array(ids, dtype=object), listed)
    index = {name: k for k, name in enumerate(names)}
    return RawTable(image_ids=ids, given_labels=np.array([index[label] for _, label in rows], dtype=np.int64),
                    classes=list(names), label_errors=mask).check(where).folder_sorted()


def convert_imagefolder(*, out: os.PathLike | str, added: os.PathLike | str) -> RawTable:
    """The raw stage's ``imagefolder`` source: ``added`` (``data/added/<name>``, as add-dataset wrote it) checked
    again and copied to ``out``."""
    table = read_raw(added)
    check_images_present(Path(added) / "images", table.image_ids, listed_in=Path(added) / "labels.csv",
                         restore=f"; restore them: dvc checkout {Path(added).as_posix()}")
    write_imagefolder(table, images=Path(added) / "images", out=out)
    return table

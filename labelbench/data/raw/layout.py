"""The common raw layout every converter writes, and its reader. One dataset, in ``<out>/``::

    images/<image_id>   image files (PNG); image_id a relative POSIX path, e.g. ``train/i/<uuid>.png``
    labels.csv          image_id, given_label (int), true_label (int or empty), label_error (0/1 or empty)
    classes.txt         class names, one per line: line i names class i

A column of ``labels.csv`` is either filled on every row or empty on every row (unknown for the
whole dataset). The folder is built beside ``<out>`` and renamed into place when complete.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from labelbench.data.files import (  # noqa: F401 - atomic_dir and LABEL_COLUMNS are part of the layout
    _SHOWN, LABEL_COLUMNS, DataError, atomic_dir, check_image_ids, check_labels, existing_file, is_safe_image_id,
    open_image, read_classes, read_labels_csv, rgb_image, sorted_order, write_csv,
)

MAX_IMAGE_BYTES = 64 * 2**20  # refuse larger archive members before decoding them
# PNG can hold these modes as they are; anything else (CMYK, YCbCr, F, ...) is stored as RGB.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def check_image_id(image_id: str, source) -> str:
    if not is_safe_image_id(image_id):
        raise DataError(source, f"unsafe or malformed image path {image_id!r}")
    return image_id


@dataclass
class RawTable:
    """The label table of one raw dataset (row i describes ``image_ids[i]``).

    ``given_labels`` (N,) int64 in ``[0, len(classes))``; ``true_labels`` (N,) int64 or None
    (unknown); ``label_errors`` (N,) bool or None (unknown).
    """

    image_ids: list[str]
    given_labels: np.ndarray
    classes: list[str]
    true_labels: np.ndarray | None = None
    label_errors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def check(self, source) -> "RawTable":
        """Validate ids, classes, label ranges and consistency; DataError naming ``source``."""
        if not self.image_ids:
            raise DataError(source, "no examples")
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise DataError(source, f"class names must be non-empty and unique, got {self.classes[:10]}")
        if any(not c or "\n" in c or "\r" in c for c in self.classes):
            raise DataError(source, "class names must be non-empty single-line strings")
        check_image_ids(self.image_ids, source)
        self.given_labels = check_labels(self.given_labels, source, num_classes=len(self.classes), size=len(self),
                                         what="given labels")
        if self.true_labels is not None:
            self.true_labels = check_labels(self.true_labels, source, num_classes=len(self.classes), size=len(self),
                                            what="true labels")
        if self.true_labels is not None and self.label_errors is not None:
            wrong = (self.given_labels != self.true_labels) != self.label_errors
            if wrong.any():
                raise DataError(source, f"label_error disagrees with given != true on {int(wrong.sum())} row(s), "
                                        f"first {self.image_ids[int(np.flatnonzero(wrong)[0])]!r}")
        return self

    def folder_sorted(self) -> "RawTable":
        """This table in ImageFolder order of image_id (see :func:`labelbench.data.files.image_id_sort_key`)."""
        order = sorted_order(self.image_ids)
        return RawTable(
            image_ids=[self.image_ids[i] for i in order],
            given_labels=self.given_labels[order],
            classes=list(self.classes),
            true_labels=None if self.true_labels is None else self.true_labels[order],
            label_errors=None if self.label_errors is None else self.label_errors[order],
        )

    def labels_frame(self) -> pd.DataFrame:
        """The ``labels.csv`` table of this table (an unknown column is empty)."""
        unknown = [""] * len(self)
        return pd.DataFrame({
            "image_id": self.image_ids,
            "given_label": self.given_labels,
            "true_label": unknown if self.true_labels is None else self.true_labels,
            "label_error": unknown if self.label_errors is None else self.label_errors.astype(np.int64),
        })


# --- writing ------------------------------------------------------------------------------


def save_png(path: Path, image: Image.Image) -> None:
    """Encode ``image`` as PNG at ``path`` (modes PNG cannot hold are converted to RGB)."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA") if "A" in image.getbands() else rgb_image(image)
    image.save(path, format="PNG")


def write_raw(out: os.PathLike | str, table: RawTable, put: Callable[[Path, str], None]) -> None:
    """The raw folder ``out`` of ``table``, built beside it: ``put(path, image_id)`` writes each image to its path
    ``images/<image_id>`` (in the table's order; its folder exists), then ``labels.csv`` and ``classes.txt``."""
    with atomic_dir(out) as tmp:
        for image_id in table.image_ids:
            path = tmp / "images" / check_image_id(image_id, tmp / "images")
            path.parent.mkdir(parents=True, exist_ok=True)
            put(path, image_id)
        write_csv(tmp / "labels.csv", table.labels_frame())
        (tmp / "classes.txt").write_text("".join(c + "\n" for c in table.classes), encoding="utf-8")


def write_imagefolder(table: RawTable, *, images: os.PathLike | str, out: os.PathLike | str) -> None:
    """``table`` in the raw layout at ``out``, each image the bytes of ``<images>/<image_id>``; DataError naming a
    missing file."""
    def put(target: Path, image_id: str) -> None:
        path = Path(images) / image_id
        if not path.is_file():
            raise DataError(path, "image file not found")
        shutil.copyfile(path, target)
    write_raw(out, table, put)


def decode_image(data: bytes, source, *, expect: str | None = None) -> Image.Image:
    """Decode image bytes fully with Pillow (of format ``expect``, e.g. ``"PNG"``, when given);
    DataError naming ``source`` when unreadable."""
    with open_image(io.BytesIO(data), source=source) as image:
        image.load()
    if expect is not None and image.format != expect:
        raise DataError(source, f"expected a {expect} image, got {image.format}")
    return image


def check_image_file(path: Path) -> None:
    """DataError naming ``path`` unless it is a file of at most :data:`MAX_IMAGE_BYTES` that decodes as an image."""
    if not path.is_file():
        raise DataError(path, "listed but not a file")
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise DataError(path, f"larger than {MAX_IMAGE_BYTES} bytes")
    decode_image(path.read_bytes(), path)


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open a zip archive; DataError naming it when missing, corrupt or truncated."""
    try:
        return zipfile.ZipFile(existing_file(archive))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise DataError(archive, f"corrupt or truncated zip archive ({exc})") from None


def read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive, *, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """Bytes of one member, at most ``limit`` of them; DataError naming ``archive::member``."""
    where = f"{archive}::{info.filename}"
    if info.file_size > limit:
        raise DataError(where, f"{info.file_size} bytes exceeds the limit of {limit}")
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise DataError(where, f"unreadable zip member ({exc})") from None
    if len(data) > limit:
        raise DataError(where, f"inflates beyond the limit of {limit} bytes")
    return data


# --- reading ------------------------------------------------------------------------------


def read_raw(root: os.PathLike | str) -> RawTable:
    """Read ``labels.csv`` and ``classes.txt`` of a raw folder (images are not opened)."""
    root = Path(root)
    classes = read_classes(root / "classes.txt")
    frame = read_labels_csv(root / "labels.csv")
    optional = {}
    for column, dtype in (("true_label", np.int64), ("label_error", bool)):
        values = frame[column]
        if values.notna().any() and values.isna().any():
            raise DataError(root / "labels.csv", f"{column} is empty on {int(values.isna().sum())} row(s) "
                                                 "(empty must mean: empty on every row)")
        optional[column] = values.to_numpy(dtype) if values.notna().all() else None
    return RawTable(
        image_ids=frame["image_id"].tolist(), given_labels=frame["given_label"].to_numpy(np.int64), classes=classes,
        true_labels=optional["true_label"], label_errors=optional["label_error"],
    ).check(root / "labels.csv")

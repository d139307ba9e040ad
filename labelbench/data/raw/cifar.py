"""CIFAR-10 and the label sets built on it: CIFAR-10N (aggregate / worst) and CIFAR-10S.

Sources:

* ``cifar-10-binary.tar.gz``: ``cifar-10-batches-bin/data_batch_1..5.bin``, fixed-length records (a label
  byte, then the R, G and B planes of a 32x32 image: 3073 bytes), and ``batches.meta.txt``, the class names one
  per line. The binary batches hold the images and labels of the Python version's pickled batches in the same
  order, so nothing is unpickled.
* CIFAR-10N, an ``.npz`` of int arrays (50000,) ``clean_label``, ``aggre_label``, ``worse_label``,
  ...; entry i labels training image i (torchvision order: data_batch_1 rows first).
* CIFAR-10S, a CSV ``image,label``: ``image`` a path ending in ``train/<class name>/<NNNN>.png``
  (the ``cifar2png`` layout: a class's images numbered from 0001 in training order).
"""

from __future__ import annotations

import csv
import os
import re
import tarfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from labelbench.data.classes import CIFAR10_CLASSES
from labelbench.data.files import _SHOWN, DataError, existing_file
from labelbench.data.raw.layout import RawTable, save_png, write_raw

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
TRAIN_BATCHES = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
META = "cifar-10-batches-bin/batches.meta.txt"
RECORD = 1 + 3 * 32 * 32  # a label byte, then the R, G and B planes
CIFAR10N_VARIANTS = {"agg": "aggre_label", "worst": "worse_label"}
_PREFIX_10S = re.compile(r"(?:^|.*/)(train/([A-Za-z0-9_]+)/([0-9]{4,})\.png)$")


def cifar10n_image_id(index: int) -> str:
    return f"train/image_id_{index}.png"


# --- CIFAR-10 -----------------------------------------------------------------------------


def load_cifar10_train(archive: os.PathLike | str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The training set of ``cifar-10-binary.tar.gz``, read without extracting it: ``images`` uint8
    (50000, 32, 32, 3) RGB, ``labels`` int64 (50000,) and the class names, in torchvision order.
    Corrupt or unexpected content raises DataError naming the archive (and member)."""
    archive = existing_file(archive)
    records = []
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            try:
                classes = [line.strip() for line in _member(tar, archive, META).decode("utf-8").splitlines()]
            except UnicodeDecodeError:
                raise DataError(f"{archive}::{META}", "not UTF-8 text (the class names, one per line)") from None
            for member in TRAIN_BATCHES:
                data = _member(tar, archive, member)
                if not data or len(data) % RECORD:
                    raise DataError(f"{archive}::{member}", f"{len(data)} bytes is no whole number of {RECORD}-byte "
                                                            "records (a label byte, then 3072 pixel bytes)")
                records.append(np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(archive, f"corrupt or truncated tar.gz archive ({type(exc).__name__}: {exc})") from None
    classes = [name for name in classes if name]  # the file ends in blank lines
    records = np.concatenate(records)
    labels = records[:, 0].astype(np.int64)
    if len(classes) < 2 or labels.max() >= len(classes):
        raise DataError(f"{archive}::{META}", f"{len(classes)} class name(s) for labels up to {labels.max()}")
    return records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, classes


def _member(tar: tarfile.TarFile, archive: Path, name: str) -> bytes:
    try:
        file = tar.extractfile(name)  # None for a folder or a link to nothing
    except KeyError:
        raise DataError(archive, f"member {name} missing") from None
    if file is None:
        raise DataError(f"{archive}::{name}", "not a regular file")
    return file.read()


def convert_cifar10(*, archive: os.PathLike | str, out: os.PathLike | str) -> RawTable:
    """``cifar-10-binary.tar.gz`` -> raw layout: image i (torchvision order) becomes
    ``images/train/image_id_<i>.png``, given = true = its label, label_error 0; rows in index order."""
    images, labels, classes = load_cifar10_train(archive)
    table = RawTable(
        image_ids=[cifar10n_image_id(i) for i in range(len(labels))],
        given_labels=labels, classes=classes, true_labels=labels.copy(),
        label_errors=np.zeros(len(labels), dtype=bool),
    ).check(archive)
    _write_pngs(out, table, images, dict(zip(table.image_ids, range(len(labels)))))
    return table


def _write_pngs(out: os.PathLike | str, table: RawTable, images: np.ndarray, index_of: dict[str, int]) -> None:
    """``table`` in the raw layout at ``out``, image ``image_id`` the PNG of ``images[index_of[image_id]]``."""
    write_raw(out, table, lambda path, image_id: save_png(
        path, Image.fromarray(np.ascontiguousarray(images[index_of[image_id]]))))


def _cifar10_images(archive: os.PathLike | str, labels_file: os.PathLike | str,
                    count: int) -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 training images and labels of ``archive`` (:func:`load_cifar10_train`) for a labels file of
    ``count`` rows (one per CIFAR-10 training image), checked to be the CIFAR-10 classes and images."""
    images, labels, classes = load_cifar10_train(archive)
    if classes != CIFAR10_CLASSES:
        raise DataError(f"{archive}::{META}", f"expected the CIFAR-10 classes {CIFAR10_CLASSES}, got {classes}")
    if count != len(labels):
        raise DataError(labels_file, f"has {count} labels but {archive} has {len(labels)} images")
    return images, labels


# --- CIFAR-10N ----------------------------------------------------------------------------


def load_cifar10n(human_labels: os.PathLike | str, *, extra: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The CIFAR-10N ``.npz``: the clean label, the label variants and the ``extra`` arrays (e.g. the
    annotator slots), each int64 (N,) in [0, 10) with equal N; pickles refused."""
    path = existing_file(human_labels)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # pickled arrays (ValueError), zipfile/zlib/OS errors
        raise DataError(path, f"not a readable .npz without pickles ({type(exc).__name__}: {exc})") from None
    needed = ["clean_label", *CIFAR10N_VARIANTS.values(), *extra]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise DataError(path, f"missing array(s) {missing}; has {sorted(arrays)}")
    n = arrays["clean_label"].shape
    for key in needed:
        a = arrays[key]
        if a.ndim != 1 or a.shape != n or not np.issubdtype(a.dtype, np.integer):
            raise DataError(path, f"{key} must be an int (N,) array like clean_label {n}, got {a.dtype} {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= len(CIFAR10_CLASSES)):
            raise DataError(path, f"{key} outside [0, {len(CIFAR10_CLASSES)})")
        arrays[key] = a.astype(np.int64)
    return arrays


def cifar10n_labels(*, human_labels: os.PathLike | str, variant: str) -> RawTable:
    """Label table of CIFAR-10N ``variant`` (a key of :data:`CIFAR10N_VARIANTS`), no images needed:
    row i is ``train/image_id_<i>.png``, given = that variant's label, true = ``clean_label``."""
    arrays = load_cifar10n(human_labels)
    given, true = arrays[CIFAR10N_VARIANTS[variant]], arrays["clean_label"]
    return RawTable(
        image_ids=[cifar10n_image_id(i) for i in range(len(given))],
        given_labels=given, classes=list(CIFAR10_CLASSES), true_labels=true, label_errors=given != true,
    ).check(human_labels)


def convert_cifar10n(
    *, archive: os.PathLike | str, human_labels: os.PathLike | str, variant: str, out: os.PathLike | str
) -> RawTable:
    """CIFAR-10N ``variant``: the images of ``cifar-10-binary.tar.gz`` (as :func:`convert_cifar10` writes them),
    relabelled by :func:`cifar10n_labels`. The npz must have one entry per CIFAR-10 image and its clean_label
    must equal the CIFAR-10 labels."""
    table = cifar10n_labels(human_labels=human_labels, variant=variant)
    images, labels = _cifar10_images(archive, human_labels, len(table))
    wrong = table.true_labels != labels
    if wrong.any():
        raise DataError(human_labels, f"clean_label disagrees with the CIFAR-10 labels on {int(wrong.sum())} images")
    _write_pngs(out, table, images, dict(zip(table.image_ids, range(len(labels)))))
    return table


# --- CIFAR-10S ----------------------------------------------------------------------------


def cifar10s_labels(*, noisy_csv: os.PathLike | str) -> RawTable:
    """Label table of CIFAR-10S from the authors' CSV alone, in ImageFolder order (the CSV's own).

    image_id = the path's ``train/<class>/<NNNN>.png`` tail, given_label = ``label``, true_label =
    the class folder (cifar2png puts every image in its true class).
    """
    path = existing_file(noisy_csv)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a readable CSV file ({exc})") from None
    if header is None or [h.strip() for h in header][:2] != ["image", "label"]:
        raise DataError(path, f"header must start with image,label; got {header}")
    ids, given, true = [], [], []
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        match = _PREFIX_10S.match(row[0].strip().replace("\\", "/"))
        if not match or match.group(2) not in CIFAR10_CLASSES:
            raise DataError(path, f"line {line}: image {row[0]!r} is not .../train/<CIFAR-10 class>/<NNNN>.png")
        if len(row) < 2 or not re.fullmatch(r"[0-9]+", row[1].strip()):  # int() takes "1_0" and any Unicode digit
            raise DataError(path, f"line {line}: expected image,label with an integer label, got {row}")
        given.append(int(row[1]))
        ids.append(match.group(1))
        true.append(CIFAR10_CLASSES.index(match.group(2)))
    given, true = np.array(given, dtype=np.int64), np.array(true, dtype=np.int64)
    return RawTable(
        image_ids=ids, given_labels=given, classes=list(CIFAR10_CLASSES), true_labels=true,
        label_errors=given != true,
    ).check(path).folder_sorted()


def cifar2png_ids(labels: np.ndarray, classes: list[str]) -> list[str]:
    """``cifar2png`` file names of training images in order: ``train/<class>/<k:04d>.png``,
    k counting the images of that class from 1.

    >>> cifar2png_ids(np.array([1, 0, 1]), ["a", "b"])
    ['train/b/0001.png', 'train/a/0001.png', 'train/b/0002.png']
    """
    number = pd.Series(labels).groupby(labels).cumcount() + 1
    return [f"train/{classes[label]}/{k:04d}.png" for label, k in zip(labels, number)]


def convert_cifar10s(
    *, archive: os.PathLike | str, noisy_csv: os.PathLike | str, out: os.PathLike | str
) -> RawTable:
    """CIFAR-10S: :func:`cifar10s_labels` with the images of ``cifar-10-binary.tar.gz`` (as
    :func:`convert_cifar10` writes them), training image i being ``cifar2png_ids(labels)[i]``. The CSV must name
    every training image exactly once."""
    table = cifar10s_labels(noisy_csv=noisy_csv)
    images, labels = _cifar10_images(archive, noisy_csv, len(table))
    index_of = {name: i for i, name in enumerate(cifar2png_ids(labels, CIFAR10_CLASSES))}
    unknown = [i for i in table.image_ids if i not in index_of]
    if unknown:
        raise DataError(noisy_csv, f"{len(unknown)} image(s) not in CIFAR-10's training set, e.g. {unknown[:_SHOWN]}")
    _write_pngs(out, table, images, index_of)
    return table

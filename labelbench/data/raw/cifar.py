"""CIFAR-10 and the label sets built on it: CIFAR-10N (aggregate / worst) and CIFAR-10S.

Sources:

* ``cifar-10-python.tar.gz``: ``cifar-10-batches-py/data_batch_1..5`` and ``batches.meta``,
  Python-2 pickles of dicts (``data`` uint8 (10000, 3072): the R, G, then B planes of 32x32
  images; ``labels``; meta ``label_names``), read by :class:`RestrictedUnpickler`, which builds
  nothing but plain containers and numpy arrays.
* CIFAR-10N, an ``.npz`` of int arrays (50000,) ``clean_label``, ``aggre_label``, ``worse_label``,
  ...; entry i labels training image i (torchvision order: data_batch_1 rows first).
* CIFAR-10S, a CSV ``image,label``: ``image`` a path ending in ``train/<class name>/<NNNN>.png``
  (the ``cifar2png`` layout: a class's images numbered from 0001 in training order).
"""

from __future__ import annotations

import csv
import io
import os
import pickle
import re
import tarfile
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from labelbench.data.classes import CIFAR10_CLASSES
from labelbench.data.files import DataError, existing_file
from labelbench.data.raw.layout import RawTable, read_raw, save_png, write_imagefolder, write_raw

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
TRAIN_BATCHES = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
META = "cifar-10-batches-py/batches.meta"
CIFAR10N_VARIANTS = {"agg": "aggre_label", "worst": "worse_label"}
_PREFIX_10S = re.compile(r"(?:^|.*/)(train/([A-Za-z0-9_]+)/(\d{4,})\.png)$")


def cifar10n_image_id(index: int) -> str:
    return f"train/image_id_{index}.png"


# --- restricted unpickling ------------------------------------------------------------------

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {
    ("builtins", "dict"): dict, ("builtins", "list"): list, ("builtins", "str"): str,
    ("builtins", "bytes"): bytes, ("builtins", "int"): int, ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype, ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of :data:`_ALLOWED`; any other raises :class:`pickle.UnpicklingError`."""

    def find_class(self, module: str, name: str):
        key = ("builtins" if module == "__builtin__" else module, name)  # Python-2 pickles say __builtin__
        if key not in _ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return _ALLOWED[key]


def restricted_loads(data: bytes, source) -> dict:
    """Unpickle a dict with :class:`RestrictedUnpickler` (bytes keys decoded); DataError naming ``source``."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # a forbidden global is an UnpicklingError; malformed pickles raise many types
        raise DataError(source, f"not a readable or allowed pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(source, f"expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


# --- CIFAR-10 -----------------------------------------------------------------------------


def load_cifar10_train(archive: os.PathLike | str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The training set of ``cifar-10-python.tar.gz``, read without extracting it: ``images`` uint8
    (50000, 32, 32, 3) RGB, ``labels`` int64 (50000,) and the class names, in torchvision order.
    Corrupt or unexpected content raises DataError naming the archive (and member)."""
    archive = existing_file(archive)
    images, labels = [], []
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            meta = restricted_loads(_member(tar, archive, META), f"{archive}::{META}")
            names = meta.get("label_names")
            if not isinstance(names, list) or not names:
                raise DataError(f"{archive}::{META}", "no label_names list")
            classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
            for member in TRAIN_BATCHES:
                where = f"{archive}::{member}"
                batch = restricted_loads(_member(tar, archive, member), where)
                data, lab = batch.get("data"), np.asarray(batch.get("labels"))
                if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (3072,):
                    raise DataError(where, f"'data' must be a uint8 (n, 3072) array, got {type(data).__name__}")
                if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
                    raise DataError(where, "'labels' must be a list of ints")
                if len(lab) != data.shape[0]:
                    raise DataError(where, f"has {data.shape[0]} images but {len(lab)} labels")
                images.append(data)
                labels.append(lab.astype(np.int64))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(archive, f"corrupt or truncated tar.gz archive ({type(exc).__name__}: {exc})") from None
    labels = np.concatenate(labels)
    if labels.min() < 0 or labels.max() >= len(classes):
        raise DataError(archive, f"labels outside [0, {len(classes)})")
    return np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, classes


def _member(tar: tarfile.TarFile, archive: Path, name: str) -> bytes:
    try:
        return tar.extractfile(name).read()
    except KeyError:
        raise DataError(archive, f"member {name} missing") from None


def convert_cifar10(*, archive: os.PathLike | str, out: os.PathLike | str) -> RawTable:
    """``cifar-10-python.tar.gz`` -> raw layout: image i (torchvision order) becomes
    ``images/train/image_id_<i>.png``, given = true = its label, label_error 0; rows in index order."""
    images, labels, classes = load_cifar10_train(archive)
    table = RawTable(
        image_ids=[cifar10n_image_id(i) for i in range(len(labels))],
        given_labels=labels, classes=classes, true_labels=labels.copy(),
        label_errors=np.zeros(len(labels), dtype=bool),
    ).check(archive)
    pixels = dict(zip(table.image_ids, images))
    write_raw(out, table,
              lambda path, image_id: save_png(path, Image.fromarray(np.ascontiguousarray(pixels[image_id]))))
    return table


def _cifar10_raw(cifar10_raw) -> RawTable:
    """The table of a converted CIFAR-10 folder, checked to be in image_id_<i> order."""
    if not Path(cifar10_raw).is_dir():
        raise DataError(cifar10_raw, "raw cifar-10 folder not found; build it first (dataset cifar-10)")
    table = read_raw(cifar10_raw)
    if table.image_ids != [cifar10n_image_id(i) for i in range(len(table))]:
        raise DataError(Path(cifar10_raw) / "labels.csv",
                        "is not a CIFAR-10 raw table (ids must be train/image_id_<i>.png in order)")
    if table.classes != CIFAR10_CLASSES:
        raise DataError(Path(cifar10_raw) / "classes.txt", f"expected the CIFAR-10 classes {CIFAR10_CLASSES}")
    return table


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
    *, cifar10_raw: os.PathLike | str, human_labels: os.PathLike | str, variant: str, out: os.PathLike | str
) -> RawTable:
    """CIFAR-10N ``variant``: the raw CIFAR-10 folder's images, relabelled by :func:`cifar10n_labels`.
    The npz must have one entry per CIFAR-10 image and its clean_label must equal the CIFAR-10 labels."""
    base = _cifar10_raw(cifar10_raw)
    table = cifar10n_labels(human_labels=human_labels, variant=variant)
    if len(table) != len(base):
        raise DataError(human_labels, f"has {len(table)} labels but {cifar10_raw} has {len(base)} images")
    wrong = table.true_labels != base.given_labels
    if wrong.any():
        raise DataError(human_labels, f"clean_label disagrees with the CIFAR-10 labels on {int(wrong.sum())} images")
    write_imagefolder(table, images=Path(cifar10_raw) / "images", out=out)
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
        try:
            given.append(int(row[1]))
        except (IndexError, ValueError):
            raise DataError(path, f"line {line}: expected image,label with an integer label, got {row}") from None
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
    *, cifar10_raw: os.PathLike | str, noisy_csv: os.PathLike | str, out: os.PathLike | str
) -> RawTable:
    """CIFAR-10S: :func:`cifar10s_labels` with images copied from the raw CIFAR-10 folder, training
    image i being ``cifar2png_ids(labels)[i]``. The CSV must name every training image exactly once."""
    base = _cifar10_raw(cifar10_raw)
    table = cifar10s_labels(noisy_csv=noisy_csv)
    if len(table) != len(base):
        raise DataError(noisy_csv, f"has {len(table)} labels but {cifar10_raw} has {len(base)} images")
    source_of = dict(zip(cifar2png_ids(base.given_labels, base.classes), base.image_ids))
    unknown = [i for i in table.image_ids if i not in source_of]
    if unknown:
        raise DataError(noisy_csv, f"{len(unknown)} image(s) not in CIFAR-10's training set, e.g. {unknown[:5]}")
    write_imagefolder(table, images=Path(cifar10_raw) / "images", out=out, source_of=source_of)
    return table

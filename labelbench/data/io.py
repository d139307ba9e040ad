"""Validated reading of the pred_probs data contract.

Layout read here (one dataset; see DESIGN.md)::

    <root>/<dataset>/
      given_labels.npy        int   (N,)     labels the models were trained on
      true_labels.npy         int   (N,)     optional (CIFAR, synthetic noise)
      label_errors.npy        bool  (N,)     ground truth: is the given label wrong (optional for
                                             datasets added without a known error mask)
      image_ids.txt           N lines        relative image path of row i (unique)
      pred_probs/<model>.npy  float (N, K)   out-of-sample predicted probabilities

Every reader raises :class:`~labelbench.data.files.DataError` with the file's path and the problem; nothing
is loaded with pickles enabled. Atomic writers and the labels table: :mod:`labelbench.data.files`.
"""

from __future__ import annotations

import math
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from labelbench.data.checksums import checksums_path, read_checksums, verify_checksum  # noqa: F401
from labelbench.data.verify import verify as verify_recorded

# The file helpers, re-exported: the evaluation half imports its files from here.
from labelbench.data.files import (  # noqa: F401
    _SHOWN, DataError, atomic_dir, atomic_outputs, atomic_path, check_image_ids, check_labels, existing_file,
    image_id_sort_key, open_image, read_classes, read_csv_strings, read_labels_csv, read_lines, read_text, write_csv,
    write_json, write_npy, write_text,
)

ROW_SUM_TOLERANCE = 1e-4


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def load_npy(path: os.PathLike | str) -> np.ndarray:
    """Load a ``.npy`` file without ever unpickling; name the file in every failure. The header is read first,
    so a file that is no .npy array, an unreadable header, an object dtype or a shape that disagrees with the
    file's size is refused before any memory is allocated."""
    path = existing_file(path)
    with path.open("rb") as file:
        start = file.read(len(np.lib.format.MAGIC_PREFIX))
        if not start:
            raise DataError(path, "not a readable .npy array (empty file)")
        if start[:4] in (b"PK\x03\x04", b"PK\x05\x06"):  # as np.load tells an .npz archive
            raise DataError(path, "is an .npz archive, expected a single .npy array")
        if start[:1] == b"\x80":  # pickle protocol 2 and later
            raise DataError(path, "holds pickled Python objects; refusing to load it")
        if start != np.lib.format.MAGIC_PREFIX:
            raise DataError(path, f"not an .npy file: it starts with {start!r}, not {np.lib.format.MAGIC_PREFIX!r}")
        file.seek(0)
        try:
            version = np.lib.format.read_magic(file)
            if version not in _NPY_HEADERS:
                raise ValueError(f"format version {version}, expected (1, 0) or (2, 0)")
            shape, _, dtype = _NPY_HEADERS[version](file)
        except (ValueError, SyntaxError, TypeError, tokenize.TokenError, EOFError) as exc:
            raise DataError(path, f"not a readable .npy array: unreadable header ({exc})") from None
        offset = file.tell()
    if dtype.hasobject:
        raise DataError(path, "holds pickled Python objects; refusing to load it")
    expected, actual = math.prod(shape) * dtype.itemsize, path.stat().st_size - offset
    if expected != actual:
        raise DataError(path, f"not a readable .npy array: its header says shape {shape} of {dtype} "
                              f"({expected} bytes of data) but the file holds {actual} bytes after the header")
    try:  # the header checks above leave no archive and no pickle for np.load to meet
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"not a readable .npy array ({exc})") from None


def check_pred_probs(pred_probs: np.ndarray, path) -> np.ndarray:
    """pred_probs must be a finite (N, K) float array, entries in [0, 1], rows summing to 1."""
    if pred_probs.ndim != 2:
        raise DataError(path, f"expected a 2-D (N, K) array, got shape {pred_probs.shape}")
    if pred_probs.shape[0] == 0 or pred_probs.shape[1] < 2:
        raise DataError(path, f"empty or fewer than 2 classes: shape {pred_probs.shape}")
    if not np.issubdtype(pred_probs.dtype, np.floating):
        raise DataError(path, f"probabilities must be floats, got dtype {pred_probs.dtype}")
    if not np.isfinite(pred_probs).all():
        bad = int((~np.isfinite(pred_probs)).any(axis=1).sum())
        raise DataError(path, f"{bad} rows hold NaN or inf")
    if pred_probs.min() < 0 or pred_probs.max() > 1:
        raise DataError(path, f"probabilities outside [0, 1]: min {pred_probs.min()}, max {pred_probs.max()}")
    deviation = np.abs(pred_probs.sum(axis=1) - 1)
    if deviation.max() > ROW_SUM_TOLERANCE:
        row = int(deviation.argmax())
        raise DataError(path, f"{int((deviation > ROW_SUM_TOLERANCE).sum())} rows do not sum to 1 within "
                              f"{ROW_SUM_TOLERANCE} (row {row} sums to {float(pred_probs[row].sum())!r})")
    return pred_probs.astype(np.float64, copy=False)


@dataclass
class Dataset:
    """One dataset of the contract, validated.

    Attributes: ``given_labels`` (N,) int64, ``label_errors`` (N,) bool or None (no known error
    mask), ``true_labels`` (N,) int64 or None, ``image_ids`` N strings, ``pred_probs`` model name -> (N, K) float64.
    """

    name: str
    given_labels: np.ndarray
    label_errors: np.ndarray | None
    image_ids: list[str]
    true_labels: np.ndarray | None = None
    pred_probs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return next(iter(self.pred_probs.values())).shape[1]

    @property
    def num_errors(self) -> int:
        return int(self.label_errors.sum())


def load_dataset(root: os.PathLike | str, name: str, models: list[str] | None = None, *,
                 label_errors: bool = True, verify: bool = True) -> Dataset:
    """Load and cross-check one dataset; ``models`` defaults to every ``pred_probs/*.npy``. ``label_errors=False``:
    no known error mask (``label_errors`` None; the file is not read). Where the root has a checksum list
    (:func:`checksums_path`; the authors' artifacts do), every file read must match it, so a changed byte is one
    clear error; elsewhere, with ``verify``, the folder must hold the bytes DVC recorded for it
    (:func:`labelbench.data.verify.verify`)."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise DataError(folder, "dataset folder not found (`dvc pull` brings the published and trained ones, "
                                "`dvc repro` writes the trained ones)")
    listing = checksums_path(root)
    if listing is not None:
        sums = read_checksums(listing)
        wanted = lambda path: models is None or path.parent.name != "pred_probs" or path.stem in models  # noqa: E731
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and wanted(p)):
            verify_checksum(path, Path(root), sums, listing)
        for rel in sorted(sums):  # a listed file deleted is as wrong as one changed
            path = Path(root) / rel
            if rel.startswith(f"{name}/") and wanted(path) and not path.is_file():
                raise DataError(path, f"missing, though {listing} lists it (restore it with `dvc checkout --force "
                                      f"{root}`)")
    elif verify:
        verify_recorded(folder)
    present = sorted(p.stem for p in (folder / "pred_probs").glob("*.npy"))
    models = present if models is None else list(models)
    if not models:
        raise DataError(folder / "pred_probs", "no pred_probs/<model>.npy files")
    if absent := [m for m in models if m not in present]:  # a model params.yaml lists for the dataset
        raise DataError(folder / "pred_probs" / f"{absent[0]}.npy", f"file not found; pred_probs/ holds "
                        f"{', '.join(present[:_SHOWN]) or 'no .npy file'}: the models params.yaml lists for "
                        f"{name} must be among them")
    arrays = check_files(
        given_labels=folder / "given_labels.npy",
        pred_probs={m: folder / "pred_probs" / f"{m}.npy" for m in models},
        label_errors=folder / "label_errors.npy" if label_errors else None,
        true_labels=folder / "true_labels.npy" if (folder / "true_labels.npy").exists() else None,
        image_ids=folder / "image_ids.txt",
    )
    return Dataset(name=name, **arrays)


def check_files(*, given_labels: Path, pred_probs: dict[str, Path], label_errors: Path | None,
                true_labels: Path | None, image_ids: Path | None) -> dict:
    """Read and cross-check the files of one dataset of the contract, wherever they are (also add-dataset's
    inputs); each problem is one DataError naming the file. Optional files are None.

    Returns ``given_labels`` (N,) int64, ``pred_probs`` model -> (N, K) float64, ``label_errors``
    (N,) bool or None, ``true_labels`` (N,) int64 or None, ``image_ids`` N strings or None.
    """
    given = load_npy(given_labels)
    check_labels(given, given_labels)
    n = given.shape[0]

    errors = None
    if label_errors is not None:
        errors = load_npy(label_errors)
        if errors.dtype != np.bool_:
            raise DataError(label_errors, f"expected dtype bool, got {errors.dtype}")
        _check_length(errors, n, label_errors, given_labels)
        check_both_kinds(errors, label_errors)

    ids = None
    if image_ids is not None:
        ids = read_lines(image_ids)
        if len(ids) != n:
            raise DataError(image_ids, f"has {len(ids)} lines but {given_labels.name} has {n} labels")
        check_image_ids(ids, image_ids)

    probs = {}
    for model, path in pred_probs.items():
        array = check_pred_probs(load_npy(path), path)
        _check_length(array, n, path, given_labels)
        probs[model] = array
    k = {p.shape[1] for p in probs.values()}
    if len(k) != 1:
        folder = Path(os.path.commonpath([str(p.parent) for p in pred_probs.values()]))
        raise DataError(folder, f"models disagree on the number of classes: {sorted(k)}")
    num_classes = k.pop()
    check_labels(given, given_labels, num_classes=num_classes)

    true = None
    if true_labels is not None:
        true = check_labels(load_npy(true_labels), true_labels, num_classes=num_classes)
        _check_length(true, n, true_labels, given_labels)
        if errors is not None and not np.array_equal(true != given, errors):
            raise DataError(label_errors, "disagrees with given_labels != true_labels")
    return dict(given_labels=given.astype(np.int64, copy=False), label_errors=errors, image_ids=ids,
                true_labels=true, pred_probs=probs)


def check_both_kinds(mask: np.ndarray, path, marked: str = "examples as label errors") -> None:
    """DataError naming ``path`` unless the error mask ``mask`` (N,) bool holds both errors and correct labels (the
    ranking metrics need both)."""
    if mask.all() or not mask.any():
        raise DataError(path, f"marks {int(mask.sum())} of {len(mask)} {marked}; a benchmark needs both errors and "
                              "correct labels")


def read_class_names(path: os.PathLike | str, *, num_classes: int) -> list[str]:
    """:func:`read_classes`, which must name exactly the ``num_classes`` classes of the pred_probs."""
    names = read_classes(path)
    if len(names) != num_classes:
        raise DataError(path, f"names {len(names)} classes but the pred_probs have {num_classes}")
    return names


def _check_length(array: np.ndarray, n: int, path, reference) -> None:
    if array.ndim < 1 or array.shape[0] != n:
        raise DataError(path, f"has {array.shape[0] if array.ndim else 0} rows but {Path(reference).name} has {n}")


"""Validated reading of the pred_probs data contract, and atomic writing of outputs.

Layout read here (one dataset; see DESIGN.md)::

    <root>/<dataset>/
      given_labels.npy        int   (N,)     labels the models were trained on
      true_labels.npy         int   (N,)     optional (CIFAR, synthetic noise)
      label_errors.npy        bool  (N,)     ground truth: is the given label wrong (optional for
                                             datasets added without a known error mask)
      image_ids.txt           N lines        relative image path of row i
      pred_probs/<model>.npy  float (N, K)   out-of-sample predicted probabilities

Every reader raises :class:`DataError` with the file's path and the problem; nothing is
loaded with pickles enabled.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

ROW_SUM_TOLERANCE = 1e-4


class DataError(ValueError):
    """A file on disk does not satisfy the data contract."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def load_npy(path: os.PathLike | str) -> np.ndarray:
    """Load a ``.npy`` file without ever unpickling; name the file in every failure."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        array = np.load(path, allow_pickle=False, mmap_mode=None)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise DataError(path, "holds pickled Python objects; refusing to load it") from None
        raise DataError(path, f"not a readable .npy array ({exc})") from None
    except (OSError, EOFError) as exc:
        raise DataError(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DataError(path, "is an .npz archive, expected a single .npy array")
    return array


def check_labels(labels: np.ndarray, path, *, num_classes: int | None = None) -> np.ndarray:
    """Labels must be a non-empty 1-D integer array in ``[0, num_classes)``."""
    if labels.ndim != 1:
        raise DataError(path, f"expected a 1-D label array, got shape {labels.shape}")
    if labels.size == 0:
        raise DataError(path, "is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(path, f"labels must be integers, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = f"[0, {num_classes})" if num_classes is not None else "[0, K)"
        raise DataError(path, f"labels outside {bound}: min {low}, max {high}")
    return labels.astype(np.int64, copy=False)


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
        raise DataError(
            path, f"probabilities outside [0, 1]: min {pred_probs.min()}, max {pred_probs.max()}"
        )
    deviation = np.abs(pred_probs.sum(axis=1) - 1)
    if deviation.max() > ROW_SUM_TOLERANCE:
        row = int(deviation.argmax())
        raise DataError(
            path,
            f"{int((deviation > ROW_SUM_TOLERANCE).sum())} rows do not sum to 1 within "
            f"{ROW_SUM_TOLERANCE} (row {row} sums to {pred_probs[row].sum()!r})",
        )
    return pred_probs.astype(np.float64, copy=False)


def read_image_ids(path: os.PathLike | str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc})") from None
    ids = text.splitlines()
    if not ids:
        raise DataError(path, "is empty")
    if any(not i.strip() for i in ids):
        raise DataError(path, "contains blank lines")
    return ids


@dataclass
class Dataset:
    """One dataset of the contract, validated.

    Attributes: ``given_labels`` (N,) int64, ``label_errors`` (N,) bool or None (no known error
    mask), ``true_labels`` (N,) int64 or None, ``image_ids`` N strings, ``pred_probs`` model name -> (N, K) float64.
    """

    name: str
    root: Path
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


def list_models(root: os.PathLike | str, dataset: str) -> list[str]:
    folder = Path(root) / dataset / "pred_probs"
    return sorted(p.stem for p in folder.glob("*.npy"))


def checksums_path(root: os.PathLike | str) -> Path | None:
    """The ``sha256sum`` list of a data root: ``<root>.SHA256SUMS`` beside it (kept in git, so that it
    pins the files even if the folder is damaged), else ``<root>/SHA256SUMS``; None when neither."""
    for path in (Path(f"{root}.SHA256SUMS"), Path(root) / "SHA256SUMS"):
        if path.is_file():
            return path
    return None


def read_checksums(path: Path) -> dict[str, str]:
    """A ``sha256sum`` file as relative path -> digest."""
    sums = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataError(path, f"line {number} is not '<sha256>  <path>'")
        sums[name] = digest
    return sums


def verify_checksum(path: Path, root: Path, sums: dict[str, str], listing: Path) -> None:
    """DataError unless ``path`` has the digest that ``listing`` records for it (relative to ``root``)."""
    name = path.relative_to(root).as_posix()
    if name not in sums:
        raise DataError(path, f"not listed in {listing}")
    if hashlib.sha256(path.read_bytes()).hexdigest() != sums[name]:
        raise DataError(path, f"differs from {listing}: these are not the recorded bytes "
                              f"(restore them with `dvc checkout --force {root}`)")


def load_dataset(root: os.PathLike | str, name: str, models: list[str] | None = None, *,
                 label_errors: bool = True, verify: bool = True) -> Dataset:
    """Load and cross-check one dataset; ``models`` defaults to every ``pred_probs/*.npy``.
    ``label_errors=False``: a dataset without a known error mask (``label_errors`` None; the
    file is not read).

    Elsewhere, ``verify`` (the default): the folder must hold the bytes DVC recorded for it
    (:func:`labelbench.data.verify.verify`). Where the root has a checksum list (:func:`checksums_path`; the authors' artifacts do), every
    file read must match it, so a changed byte is one clear error, not a silently different result."""
    folder = Path(root) / name
    if not folder.is_dir():
        raise DataError(folder, "dataset folder not found")
    listing = checksums_path(root)
    if listing is not None:
        sums = read_checksums(listing)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if models is None or path.parent.name != "pred_probs" or path.stem in models:
                verify_checksum(path, Path(root), sums, listing)
    elif verify:
        from labelbench.data.verify import verify as verify_recorded
        verify_recorded(folder)
    models = list_models(root, name) if models is None else list(models)
    if not models:
        raise DataError(folder / "pred_probs", "no pred_probs/<model>.npy files")
    true_path = folder / "true_labels.npy"
    arrays = check_files(
        given_labels=folder / "given_labels.npy",
        pred_probs={m: folder / "pred_probs" / f"{m}.npy" for m in models},
        label_errors=folder / "label_errors.npy" if label_errors else None,
        true_labels=true_path if true_path.exists() else None,
        image_ids=folder / "image_ids.txt",
    )
    return Dataset(name=name, root=Path(root), **arrays)


def check_files(*, given_labels: Path, pred_probs: dict[str, Path], label_errors: Path | None,
                true_labels: Path | None, image_ids: Path | None) -> dict:
    """Read and cross-check the files of one dataset of the contract, wherever they are (the
    checks of every dataset, and of ``python -m labelbench add-dataset``'s inputs); each problem
    is one DataError naming the file. Optional files are None.

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

    ids = None
    if image_ids is not None:
        ids = read_image_ids(image_ids)
        if len(ids) != n:
            raise DataError(image_ids, f"has {len(ids)} lines but {given_labels.name} has {n} labels")

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


def read_class_names(path: os.PathLike | str, *, num_classes: int) -> list[str]:
    """:func:`read_classes`, which must name exactly the ``num_classes`` classes of the pred_probs."""
    names = read_classes(path)
    if len(names) != num_classes:
        raise DataError(path, f"names {len(names)} classes but the pred_probs have {num_classes}")
    return names


def _check_length(array: np.ndarray, n: int, path, reference) -> None:
    if array.ndim < 1 or array.shape[0] != n:
        raise DataError(
            path, f"has {array.shape[0] if array.ndim else 0} rows but {Path(reference).name} has {n}"
        )


# --- atomic writing -------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished folder ``tmp`` (a sibling of ``out_dir``) into place, replacing an older
    ``out_dir``: readers see the old folder or the new one, never a half-written one."""
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
    old = None
    if out_dir.exists() or out_dir.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
        os.replace(out_dir, old / out_dir.name)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only if the block
    succeeds (so no stale files survive from an earlier run, and a failure leaves the old folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_csv_strings(path: os.PathLike | str):
    """A CSV file as a DataFrame of strings (no NA guessing); DataError when missing, empty or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise DataError(path, "is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV file ({exc})") from None


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def write_csv(path, frame) -> None:
    """``frame`` as CSV, as pandas writes it but several times faster: floats in Python's shortest
    round-trip form (exact), missing values as empty cells."""
    def cells(column):
        values = frame[column]
        missing = values.isna().to_numpy()
        return ["" if gone else (repr(v) if isinstance(v, float) else str(v))
                for v, gone in zip(values.astype(object).tolist(), missing)]

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(frame.columns)
        writer.writerows(zip(*(cells(c) for c in frame.columns)))


# --- the raw layout's label files (images/, labels.csv, classes.txt) -------------------------

LABEL_COLUMNS = ("image_id", "given_label", "true_label", "label_error")
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


def read_classes(path: os.PathLike | str) -> list[str]:
    """Class names (K,) from a ``classes.txt``: one per line, non-empty, unique, K >= 2."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        names = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc})") from None
    if not names:
        raise DataError(path, "is empty")
    if any(not n.strip() for n in names):
        raise DataError(path, "contains blank lines")
    if len(set(names)) != len(names):
        raise DataError(path, "repeats a class name")
    if len(names) < 2:
        raise DataError(path, f"needs at least 2 classes, has {len(names)}")
    return names

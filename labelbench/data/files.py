"""Files every stage reads and writes: one error type naming the file, atomic writers, the labels table.

The small, stable base of the training half (the crossval stages import nothing else of ``labelbench.data``):
:class:`DataError` (every reader raises it with the file's path and the problem), outputs written to a temporary
file or folder and renamed into place with the usual permissions, and the ``labels.csv`` / ``classes.txt`` /
CSV-of-strings readers. The pred_probs data contract is :mod:`labelbench.data.io`.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class DataError(ValueError):
    """A file on disk does not satisfy the data contract."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class StageError(RuntimeError):
    """A failure that is no bad input (a download, pretrained weights out of reach): one ``error:`` line too."""


def file_hash(path: os.PathLike | str, name: str = "md5") -> str:
    """Hex digest of a file's bytes by ``hashlib.new(name)`` (read in chunks; md5 as DVC records files)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.new(name, usedforsecurity=False)).hexdigest()


def existing_file(path: os.PathLike | str) -> Path:
    """``path`` as a Path; DataError ("file not found", or "a folder, not a file") unless it is a file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "is a folder, not a file" if path.is_dir() else "file not found")
    return path


def stage_main(main):
    """A stage script's ``main(argv) -> int``, with any bad input or failed read or write that it raises (DataError,
    ParamsError or another ValueError, OSError, MemoryError, StageError) turned into one ``error:`` line and exit code
    1, not a traceback. Outputs are written atomically, so what failed to be written keeps its previous content (run by
    DVC, whose `dvc repro` removes a stage's outputs before running it: `dvc checkout` brings back the cached ones,
    `git checkout` those kept in git, ``cache: false``). SIGTERM (``kill``, a scheduler preempting the job) ends it as
    Ctrl-C does, with exit code 143: the temporary outputs are removed and the previous ones kept, where the default
    action would leave the temporary files behind."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        main_thread = threading.current_thread() is threading.main_thread()  # the only one that may set handlers
        previous = signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum)) if main_thread else None
        try:
            return main(argv)
        except (OSError, ValueError, MemoryError, StageError) as exc:  # DataError and ParamsError are ValueErrors
            print(f"error: {exc or type(exc).__name__}", file=sys.stderr)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        return 1

    return run


# --- atomic writing -------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_outputs(*, files: Sequence[os.PathLike | str] = (),
                   dirs: Sequence[os.PathLike | str] = ()) -> Iterator[dict[Path, Path]]:
    """Several outputs written as one: yield {output: its temporary path beside it} (an empty file for each of
    ``files``, an empty folder for each of ``dirs``). When the block succeeds they are moved into place together
    (with the usual permissions), the old ones kept aside until every move is done; if the block or any move
    fails, the moved ones are put back, so the outputs are all new or all as they were, and nothing temporary is
    left. An existing file where a folder is to be written, or the reverse, is refused before anything is moved (a
    mistyped path would otherwise replace it). An OSError of writing an output (its folder, its temporary path, a
    move; a full disk or a file-size limit: every output named) is a DataError naming the output, not the temporary
    name; other errors (a read in the block) pass through. A writer killed outright
    (SIGKILL, the out-of-memory killer: nothing runs) leaves its temporary copies, named after its host and pid;
    the next write of the same output removes them once that process is gone."""
    outputs = [(Path(p), False) for p in files] + [(Path(p), True) for p in dirs]
    temps: dict[Path, Path] = {}
    moved: list[tuple[Path, Path | None]] = []  # (output, its old copy aside) once the new one is in place
    current = None
    try:
        for current, is_dir in outputs:
            if current.exists() and current.is_dir() != is_dir:
                raise DataError(current, f"is a {'folder' if current.is_dir() else 'file'}, but the output written "
                                         f"here is a {'folder' if is_dir else 'file'}: is the path right? Nothing "
                                         "was changed (move it away to replace it)")
            current.parent.mkdir(parents=True, exist_ok=True)
            _remove_killed_writers_copies(current)
            prefix = f".{current.name}.{socket.gethostname()}-{os.getpid()}."
            if is_dir:
                temps[current] = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=current.parent))
            else:
                fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=current.parent)
                os.close(fd)
                temps[current] = Path(tmp)
        current = None
        yield dict(temps)
        os.umask(umask := os.umask(0))  # reads the umask, setting it back at once
        for current, is_dir in outputs:
            os.chmod(temps[current], (0o777 if is_dir else 0o666) & ~umask)  # mkdtemp/mkstemp: 0700/0600
            old = None
            if current.exists() or current.is_symlink():
                old = temps[current].with_suffix(".old")  # .<name>.<host>-<pid>.<random>.old
                os.replace(current, old)
            try:
                os.replace(temps[current], current)
            except OSError:
                if old is not None:
                    os.replace(old, current)
                raise
            moved.append((current, old))
        current = None
    except BaseException as exc:
        for output, old in reversed(moved):  # the outputs as they were
            _remove(output)
            if old is not None:
                os.replace(old, output)
        moved.clear()
        if isinstance(exc, OSError):
            failed = current or next((output for output, tmp in temps.items() if exc.filename is not None and (
                Path(exc.filename) == tmp or tmp in Path(exc.filename).parents)), None)
            if failed is not None:
                raise DataError(failed, f"cannot be written ({exc.strerror or exc}); no output was changed") from None
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):  # a write of the block, no file named
                raise DataError(", ".join(str(output) for output, _ in outputs),
                                f"cannot be written ({exc.strerror}); no output was changed") from None
        raise
    finally:
        for path in [*temps.values(), *(old for _, old in moved if old is not None)]:
            _remove(path)


def _remove_killed_writers_copies(output: Path) -> None:
    """Remove the temporary copies of ``output`` (``.<name>.<host>-<pid>.<random>.tmp`` or ``.old``) that a process
    of this host left and that no longer runs."""
    import psutil  # here: only a writer imports it

    prefix = f".{output.name}.{socket.gethostname()}-"
    for stale in output.parent.glob(glob.escape(prefix) + "*"):
        pid = stale.name[len(prefix):].partition(".")[0]
        if stale.suffix in (".tmp", ".old") and pid.isdigit() and not psutil.pid_exists(int(pid)):
            _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds
    (:func:`atomic_outputs` of one file)."""
    with atomic_outputs(files=[path]) as temps:
        yield temps[Path(path)]


@contextlib.contextmanager
def atomic_dir(path: os.PathLike | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; it replaces ``path`` only if the block succeeds, so no
    stale files survive from an earlier run and a failure leaves the old folder (:func:`atomic_outputs`)."""
    with atomic_outputs(dirs=[path]) as temps:
        yield temps[Path(path)]


def read_text(path: os.PathLike | str) -> str:
    """The UTF-8 text of the file ``path`` (without a byte order mark, as Windows editors write it); DataError naming
    it when it is missing, unreadable or not UTF-8."""
    path = existing_file(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:  # the line, as an editor shows it: the byte offset alone finds nothing
        line = exc.object[:exc.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (line {line}: byte {exc.object[exc.start]:#04x} {exc.reason}); "
                              "save it as UTF-8") from None
    except OSError as exc:
        raise DataError(path, f"not readable ({exc.strerror or exc})") from None


def load_yaml(path: os.PathLike | str):
    return parse_yaml(read_text(path), path)


def parse_yaml(text: str, source: os.PathLike | str):
    """YAML ``text`` read as DVC reads params.yaml and dvc.lock (ruamel's YAML 1.2 safe loader: ``1e-3`` is a
    number, ``yes`` a string), so a stage sees the values that ``dvc params diff`` shows; DataError naming
    ``source`` when it is not YAML or a mapping repeats a key (DVC refuses such a file too)."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.constructor import DuplicateKeyError

    try:
        return YAML(typ="safe").load(text)
    except DuplicateKeyError as exc:  # its own message shows a list's or mapping's values as [] or {}
        key = re.match(r'found duplicate key "(.*)" with value', exc.problem)
        raise DataError(source, f"line {exc.problem_mark.line + 1}: "
                                + (f'duplicate key "{key.group(1)}"' if key else exc.problem)
                                + "; each key may appear once in a mapping") from None
    except YAMLError as exc:
        raise DataError(source, f"not valid YAML ({exc})") from None


@contextlib.contextmanager
def open_image(file, *, source: os.PathLike | str | None = None):
    """``PIL.Image.open(file)`` (a path or a binary file object); DataError naming ``source`` (default ``file``)
    when it is missing or not a readable image, also while it is read in the block."""
    from PIL import Image

    source = file if source is None else source
    try:
        with Image.open(file) as image:
            yield image
    except FileNotFoundError:
        raise DataError(source, "image file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(source, f"not a readable image ({type(exc).__name__}: {exc})") from None


def rgb_image(image):
    """``image`` as 8-bit RGB (grayscale replicated). Integer grayscale of 16 or 32 bits (modes ``I;16*``, ``I``) is
    read as 16-bit, clipped to [0, 65535], and keeps its top 8 bits: Pillow's own conversion clips it at 255."""
    from PIL import Image

    if image.mode == "I" or image.mode.startswith("I;16"):
        image = Image.fromarray((np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8), "L")
    return image.convert("RGB")


def read_csv_strings(path: os.PathLike | str, *, columns: Sequence[str] = ()):
    """A CSV file as a DataFrame of strings (no NA guessing) with at least ``columns``; DataError when missing,
    empty, unreadable or without one of them."""
    import pandas as pd  # here, not at the top: the YAML and image readers above serve processes without pandas

    path = existing_file(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")  # Excel's BOM
    except pd.errors.EmptyDataError:
        raise DataError(path, "is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV file ({str(exc).strip()})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; has {list(frame.columns)}")
    return frame


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
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


def check_labels(labels, path, *, num_classes: int | None = None, size: int | None = None,
                 what: str = "labels") -> np.ndarray:
    """``labels`` as int64 (N,) if they are a non-empty 1-D integer array (of ``size`` entries when given) in
    ``[0, num_classes)``; else DataError naming ``path`` and ``what`` they are."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or size not in (None, labels.size):
        raise DataError(path, f"{what} must be a non-empty 1-D array" + ("" if size is None else f" of {size}")
                        + f", got shape {labels.shape}")
    if labels.dtype.kind not in "iu":  # not np.integer: numpy counts timedelta64 as one
        raise DataError(path, f"{what} must be integers, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        raise DataError(path, f"{what} outside [0, {num_classes or 'K'}): min {low}, max {high}")
    return labels.astype(np.int64, copy=False)


def check_images_present(images: os.PathLike | str, image_ids: Sequence[str], *, listed_in=None,
                          restore: str = "") -> None:
    """DataError naming the folder ``images`` unless it holds a file for each of ``image_ids``: how many have none,
    the first few, ``listed_in`` (the file that lists them) and ``restore`` (how to bring them back)."""
    missing = [i for i in image_ids if not (Path(images) / i).is_file()]
    if missing:
        where = f" listed in {listed_in}" if listed_in is not None else ""
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise DataError(images, f"no file for {len(missing)} image id(s){where}: "
                                f"{', '.join(map(repr, missing[:_SHOWN]))}{more}{restore}")


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
    raw = read_csv_strings(path, columns=LABEL_COLUMNS)
    if len(raw) == 0:
        raise DataError(path, "has a header but no rows")

    ids = raw["image_id"].str.strip()
    blank = ids == ""
    if blank.any():
        raise DataError(path, f"{int(blank.sum())} row(s) with an empty image_id (first at row {_row(blank)})")
    check_image_ids(ids.tolist(), path)

    frame = raw.copy()
    frame["image_id"] = ids
    frame["given_label"] = int_column(raw["given_label"], path, "given_label", allow_empty=False).astype(np.int64)
    frame["true_label"] = int_column(raw["true_label"], path, "true_label", allow_empty=True)
    errors = int_column(raw["label_error"], path, "label_error", allow_empty=True)
    if ((errors != 0) & (errors != 1)).fillna(False).any():
        raise DataError(path, f"label_error must be 0, 1 or empty; found {sorted(set(errors.dropna()) - {0, 1})}")
    frame["label_error"] = errors
    both = frame["true_label"].notna() & errors.notna()
    expected = (frame["given_label"] != frame["true_label"]).astype("Int64")
    wrong = both & (expected != errors).fillna(False)
    if wrong.any():
        raise DataError(path, f"label_error disagrees with given_label != true_label on {int(wrong.sum())} row(s) "
                              f"(first at row {_row(wrong)}, image_id {frame['image_id'][wrong].iloc[0]!r})")
    return frame


def _row(mask: pd.Series) -> int:
    """1-based data row (the header is not counted) of the first True in ``mask``."""
    return int(np.flatnonzero(mask.to_numpy())[0]) + 1


_ID_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


def is_safe_image_id(image_id: str) -> bool:
    """An image id names a file under ``images/``: a relative POSIX path of plain components (no ``..``, no hidden
    files, no spaces, no backslashes)."""
    return bool(image_id) and all(_ID_COMPONENT.fullmatch(part) for part in image_id.split("/"))


def check_image_ids(ids: Sequence[str], path, *, inside: str = "images/") -> None:
    """DataError naming ``path`` unless each of ``ids`` names a file inside ``inside`` (:func:`is_safe_image_id`),
    and only once (a repeated id is ambiguous in every list)."""
    if bad := [i for i in ids if not is_safe_image_id(i)]:
        raise DataError(path, f"image ids must be relative paths of plain names inside {inside}, got {bad[:_SHOWN]}")
    if repeated := [i for i, count in collections.Counter(ids).items() if count > 1]:
        raise DataError(path, f"{len(repeated)} repeated image id(s), e.g. {repeated[:_SHOWN]}")


def int_column(values: pd.Series, path, name: str, *, allow_empty: bool) -> pd.Series:
    """Parse decimal non-negative integers; empty strings become <NA> where allowed."""
    text = values.str.strip()
    empty = text == ""
    if empty.any() and not allow_empty:
        raise DataError(path, f"{name} is empty on {int(empty.sum())} row(s) (first at row {_row(empty)})")
    bad = ~empty & ~text.str.fullmatch(r"\+?0*[0-9]{1,18}")  # [0-9], not \d (any Unicode digit); 18 digits fit an int64
    if bad.any():
        raise DataError(path, f"{name} must be integers in [0, 10**18); found {list(text[bad].unique()[:_SHOWN])} "
                              f"(first at row {_row(bad)})")
    import pandas as pd

    return pd.to_numeric(text.mask(empty, None), errors="raise").astype("Int64")


def read_lines(path: os.PathLike | str) -> list[str]:
    """The lines of a UTF-8 text file of one name per line; DataError when missing, not UTF-8, empty or with a
    blank line."""
    lines = read_text(path).splitlines()
    if not lines:
        raise DataError(path, "is empty")
    if any(not line.strip() for line in lines):
        raise DataError(path, "contains blank lines")
    return lines


def read_classes(path: os.PathLike | str) -> list[str]:
    """Class names (K,) from a ``classes.txt``: one per line, non-empty, unique, K >= 2."""
    names = read_lines(path)
    if len(set(names)) != len(names):
        raise DataError(path, "repeats a class name")
    if len(names) < 2:
        raise DataError(path, f"needs at least 2 classes, has {len(names)}")
    return names

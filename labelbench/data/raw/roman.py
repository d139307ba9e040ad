"""Roman numerals: the Data-Centric AI competition bundle joined with the manual review sheet.

* The competition bundle (CodaLab :data:`ROMAN_BUNDLE_URL`; no checksum is published, so it is
  placed by hand) as a zip of PNGs ``train|val/<numeral>/<name>.png``, under at most one folder.
* The review workbook (``.xlsx``): a sheet whose header has ``file_path`` (``train/i/<uuid>.png``),
  ``given_label`` (the numeral, e.g. ``iv``) and ``label_error`` (bool); other columns are ignored.

The raw folder holds every reviewed image (exact duplicates are removed by a later stage) in
ImageFolder order; class index = position in :data:`ROMAN_CLASSES`, true_label unknown.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np

from labelbench.data.classes import ROMAN_CLASSES
from labelbench.data.files import _SHOWN, DataError, existing_file
from labelbench.data.raw.layout import RawTable, decode_image, open_zip, read_zip_member, write_raw

ROMAN_BUNDLE_URL = "https://worksheets.codalab.org/bundles/0x497f5d7096724783aa1eb78b85aa321f"
REQUIRED_COLUMNS = ("file_path", "given_label", "label_error")
_ID = re.compile(r"(?:^|(.*)/)((?:train|val)/(" + "|".join(ROMAN_CLASSES) + r")/[^/]+\.png)$")


def _bool(value, path, row: int) -> bool:
    if isinstance(value, (bool, int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise DataError(path, f"row {row}: label_error {value!r} is not a boolean")


def read_review(review: os.PathLike | str) -> list[dict]:
    """Rows of the review sheet as dicts of the header's column names (empty rows skipped)."""
    import openpyxl  # imported here: only this converter needs it

    path = existing_file(review)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile/XML errors of a broken workbook
        raise DataError(path, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        for ws in wb.worksheets:
            rows = ws.iter_rows(values_only=True)
            header = next(rows, None)
            names = [str(h).strip().lower() if h is not None else "" for h in header or ()]
            if not all(c in names for c in REQUIRED_COLUMNS):
                continue
            return [dict(zip(names, values)) for values in rows if any(v is not None for v in values)]
    finally:
        wb.close()
    raise DataError(path, f"no sheet has a header with columns {list(REQUIRED_COLUMNS)}")


def roman_review_labels(*, review: os.PathLike | str) -> RawTable:
    """Label table of every reviewed image (no images needed); given_label must match the class folder."""
    path = Path(review)
    ids, given, errors = [], [], []
    for row_no, row in enumerate(read_review(path), start=2):
        file_path = str(row.get("file_path") or "").strip()
        match = _ID.match(file_path)
        if not match or match.group(1):
            raise DataError(path, f"row {row_no}: file_path {file_path!r} is not train|val/<numeral>/<name>.png")
        label = str(row.get("given_label") or "").strip().lower()
        if label not in ROMAN_CLASSES:
            raise DataError(path, f"row {row_no}: given_label {row.get('given_label')!r} is not one of {ROMAN_CLASSES}")
        if label != match.group(3):
            raise DataError(path, f"row {row_no}: given_label {label!r} but the file is in folder {match.group(3)!r}")
        ids.append(file_path)
        given.append(ROMAN_CLASSES.index(label))
        errors.append(_bool(row.get("label_error"), path, row_no))
    return RawTable(
        image_ids=ids, given_labels=np.array(given, dtype=np.int64), classes=list(ROMAN_CLASSES),
        label_errors=np.array(errors, dtype=bool),
    ).check(path).folder_sorted()


def convert_roman(*, bundle: os.PathLike | str, review: os.PathLike | str, out: os.PathLike | str) -> RawTable:
    """Competition zip + review sheet -> raw layout. Every PNG under ``train|val/<numeral>/`` must have
    a sheet row and every row an image; each image must decode as PNG and is stored byte for byte."""
    table = roman_review_labels(review=review)
    bundle = Path(bundle)
    with open_zip(bundle) as zf:
        found: dict[str, zipfile.ZipInfo] = {}
        prefixes = set()
        for info in zf.infolist():
            name = info.filename
            if info.is_dir() or name.startswith("__MACOSX/") or "/." in "/" + name:
                continue
            match = _ID.match(name)
            if match:
                prefixes.add(match.group(1) or "")
                found[match.group(2)] = info
        if len(prefixes) > 1:
            raise DataError(bundle, f"images under several top folders: {sorted(prefixes)}")
        extra = sorted(set(found) - set(table.image_ids))
        missing = [i for i in table.image_ids if i not in found]
        if missing:
            raise DataError(bundle, f"{len(missing)} reviewed image(s) missing from the zip, e.g. {missing[:_SHOWN]}")
        if extra:
            raise DataError(bundle, f"{len(extra)} image(s) have no row in {review}, e.g. {extra[:_SHOWN]}")

        def put(path, image_id: str) -> None:
            data = read_zip_member(zf, found[image_id], bundle)
            decode_image(data, f"{bundle}::{found[image_id].filename}", expect="PNG")
            path.write_bytes(data)  # the verified PNG byte for byte
        write_raw(out, table, put)
    return table

"""Food-101N: only its human-verified examples.

Source: ``Food-101N_release.zip`` (:data:`FOOD101N_URL`; no checksum is published) holding
``Food-101N_release/images/<class_name>/<key>.jpg``, ``meta/classes.txt`` (a header line, then
the 101 class names) and ``meta/verified_train.tsv`` / ``verified_val.tsv`` (a header line, then
``<class_name>/<key>.jpg <TAB> verification_label``, 1 = the folder's label is correct).

Output: image_id ``train|val/<class_name>/<key stem>.png`` (the JPEG stored as PNG),
given_label = the folder's class, label_error = ``verification_label == 0``, true_label unknown,
rows in ImageFolder order. An example listed in both files is an error.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from labelbench.data.files import DataError
from labelbench.data.raw.layout import (
    RawTable, check_image_id, decode_image, open_zip, read_zip_member, save_png, write_raw,
)

FOOD101N_URL = "https://iudata.blob.core.windows.net/food101/Food-101N_release.zip"
VERIFIED = {"train": "meta/verified_train.tsv", "val": "meta/verified_val.tsv"}
_TEXT_LIMIT = 256 * 2**20


def _text(zf: zipfile.ZipFile, archive: Path, name: str) -> str:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise DataError(archive, f"member {name} missing") from None
    data = read_zip_member(zf, info, archive, limit=_TEXT_LIMIT)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{archive}::{name}", f"not UTF-8 text ({exc})") from None


def _root(zf: zipfile.ZipFile, archive: Path) -> str:
    """The folder prefix (e.g. ``Food-101N_release/``) that holds ``meta/classes.txt``."""
    roots = {n[: -len("meta/classes.txt")] for n in zf.namelist() if n.endswith("meta/classes.txt")}
    roots = {r for r in roots if r == "" or r.endswith("/")}
    if len(roots) != 1:
        raise DataError(archive, f"expected exactly one meta/classes.txt, found {len(roots)}")
    return roots.pop()


def _verified(text: str, where: str, classes: list[str]) -> list[tuple[str, str, bool]]:
    """(class name, file name, label is wrong) for each row of a verified_*.tsv."""
    lines = text.splitlines()
    if not lines:
        raise DataError(where, "is empty")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(where, f"line {line_no}: expected 2 tab-separated fields, got {len(fields)}")
        key, flag = fields[0].strip(), fields[1].strip()
        parts = key.split("/")
        if len(parts) != 2 or parts[0] not in classes or not parts[1].lower().endswith((".jpg", ".jpeg")):
            raise DataError(where, f"line {line_no}: key {key!r} is not <class_name>/<file>.jpg of a known class")
        if flag not in ("0", "1"):
            raise DataError(where, f"line {line_no}: verification_label {flag!r} is not 0 or 1")
        rows.append((parts[0], parts[1], flag == "0"))
    return rows


def convert_food101n(*, archive: os.PathLike | str, out: os.PathLike | str) -> RawTable:
    """``Food-101N_release.zip`` -> raw layout of its verified examples (module docstring)."""
    archive = Path(archive)
    with open_zip(archive) as zf:
        root = _root(zf, archive)
        classes_text = _text(zf, archive, root + "meta/classes.txt")
        classes = [c.strip() for c in classes_text.splitlines()[1:] if c.strip()]
        entries = []  # (image_id, member, class index, is error)
        seen: dict[str, str] = {}
        for split, rel in VERIFIED.items():
            where = f"{archive}::{root}{rel}"
            for cls, name, wrong in _verified(_text(zf, archive, root + rel), where, classes):
                key = f"{cls}/{name}"
                if key in seen:
                    raise DataError(where, f"{key} is listed twice (also in {seen[key]})")
                seen[key] = rel
                image_id = check_image_id(f"{split}/{cls}/{PurePosixPath(name).stem}.png", where)
                entries.append((image_id, f"{root}images/{key}", classes.index(cls), wrong))
        table = RawTable(
            image_ids=[e[0] for e in entries], given_labels=np.array([e[2] for e in entries], dtype=np.int64),
            classes=classes, label_errors=np.array([e[3] for e in entries], dtype=bool),
        ).check(archive).folder_sorted()
        member_of = {e[0]: e[1] for e in entries}

        def put(path, image_id: str) -> None:
            member = member_of[image_id]
            try:
                info = zf.getinfo(member)
            except KeyError:
                raise DataError(archive, f"verified image {member} missing") from None
            save_png(path, decode_image(read_zip_member(zf, info, archive), f"{archive}::{member}"))
        write_raw(out, table, put)
    return table

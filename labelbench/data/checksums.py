"""The authors' artifacts are pinned by a ``sha256sum`` list (their ``SHA256SUMS``, kept in git beside the
folder as ``data/published.SHA256SUMS``): every file read, and every copy made, is checked against it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labelbench.data.files import DataError, atomic_dir, file_hash, read_text


def checksums_path(root: os.PathLike | str) -> Path | None:
    """The ``sha256sum`` list of a data root: ``<root>.SHA256SUMS`` beside it (kept in git, so that it
    pins the files even if the folder is damaged), else ``<root>/SHA256SUMS``; None when neither."""
    return next((p for p in (Path(f"{root}.SHA256SUMS"), Path(root) / "SHA256SUMS") if p.is_file()), None)


def read_checksums(path: Path) -> dict[str, str]:
    """A ``sha256sum`` file as relative path -> digest."""
    sums = {}
    for number, line in enumerate(read_text(path).splitlines(), 1):
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
    if file_hash(path, "sha256") != sums[name]:
        raise DataError(path, f"differs from {listing}: these are not the recorded bytes "
                              f"(restore them with `dvc checkout --force {root}`)")


def copy_verified(source: Path, out: Path, listing: Path) -> int:
    """Copy the data root ``source`` to ``out``, every file checked against the ``sha256sum`` list
    ``listing`` first: ``source`` must hold exactly the listed files and a ``SHA256SUMS`` equal to
    ``listing``. Nothing is written unless all match (``out`` is replaced whole). Returns the number
    of files copied (``SHA256SUMS`` included)."""
    if not source.is_dir():
        raise DataError(source, "folder not found: the authors' artifacts are copied from here; without it, "
                                f"`dvc pull {out}` (or `dvc checkout --force {out}`) restores them")
    sums = read_checksums(listing)
    found = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    extra, missing = sorted(found - set(sums) - {"SHA256SUMS"}), sorted(set(sums) - found)
    if extra or missing:
        raise DataError(source, f"holds other files than {listing} lists (not listed: {extra[:3]}, "
                                f"missing: {missing[:3]})")
    if not (source / "SHA256SUMS").is_file() or (source / "SHA256SUMS").read_bytes() != listing.read_bytes():
        raise DataError(source / "SHA256SUMS", f"differs from {listing}")
    for name in sorted(sums):
        verify_checksum(source / name, source, sums, listing)
    with atomic_dir(out) as tmp:
        for name in [*sorted(sums), "SHA256SUMS"]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, tmp / name)
    return len(sums) + 1

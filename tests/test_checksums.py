"""copy_verified (the `published` stage): the authors' folder is copied only when every file matches the git-tracked
checksum list; otherwise one DataError naming the file, and nothing written."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from labelbench.data.checksums import copy_verified
from labelbench.data.files import DataError


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "authors"
    (root / "toy" / "pred_probs").mkdir(parents=True)
    files = {"toy/given_labels.npy": b"labels", "toy/pred_probs/m.npy": b"probs"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    listing = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items()))
    (root / "SHA256SUMS").write_text(listing)
    (tmp_path / "published.SHA256SUMS").write_text(listing)
    return root


def test_copies_every_listed_file_and_the_list(source, tmp_path):
    out = tmp_path / "data" / "published"
    assert copy_verified(source, out, tmp_path / "published.SHA256SUMS") == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "SHA256SUMS", "toy/given_labels.npy", "toy/pred_probs/m.npy"]
    assert (out / "toy/pred_probs/m.npy").read_bytes() == b"probs"


@pytest.mark.parametrize("damage, named", [
    (lambda root: (root / "toy/pred_probs/m.npy").write_bytes(b"probz"), "toy/pred_probs/m.npy"),
    (lambda root: (root / "toy/extra.npy").write_bytes(b"x"), "not listed: ['toy/extra.npy']"),
    (lambda root: (root / "toy/given_labels.npy").unlink(), "missing: ['toy/given_labels.npy']"),
    (lambda root: (root / "SHA256SUMS").write_text("other\n"), "SHA256SUMS: differs from"),
    (lambda root: shutil.rmtree(root), "folder not found"),
    (lambda root: (root / "SHA256SUMS").unlink(), "SHA256SUMS: differs from"),
    (lambda root: (root.parent / "published.SHA256SUMS").write_bytes(b"\xff\xfe"),
     "published.SHA256SUMS: not UTF-8 text"),
    (lambda root: (root.parent / "published.SHA256SUMS").write_text("0" * 64 + " one-space.npy\n"),
     "published.SHA256SUMS: line 1 is not '<sha256>  <path>'"),
])
def test_anything_else_is_refused_and_nothing_is_written(source, tmp_path, damage, named):
    out = tmp_path / "data" / "published"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("the last good copy")  # left as it was
    damage(source)
    with pytest.raises(DataError) as caught:
        copy_verified(source, out, tmp_path / "published.SHA256SUMS")
    assert named in str(caught.value)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in out.parent.iterdir()] == ["published"]  # no temporary folder left


def test_a_listed_file_deleted_from_a_published_dataset_is_refused_on_load(source):
    from labelbench.data.io import load_dataset

    (source / "toy" / "given_labels.npy").unlink()
    with pytest.raises(DataError, match=r"toy/given_labels.npy: missing, though .*SHA256SUMS lists it"):
        load_dataset(source, "toy", verify=False)


def test_a_file_that_the_list_does_not_name_is_refused_on_its_own(source, tmp_path):
    from labelbench.data.checksums import read_checksums, verify_checksum

    (source / "toy" / "extra.npy").write_bytes(b"x")
    listing = tmp_path / "published.SHA256SUMS"
    with pytest.raises(DataError, match=f"extra.npy: not listed in {listing}$"):
        verify_checksum(source / "toy" / "extra.npy", source, read_checksums(listing), listing)
    verify_checksum(source / "toy" / "given_labels.npy", source, read_checksums(listing), listing)

"""labelbench.data.verify: every stage input is checked against the md5 DVC recorded for it.

Unit tests on a toy repository layout (dvc.yaml, dvc.lock with a folder and a file output, a .dvc file,
the cache's .dir listing), then real dvc in temporary clones (slow): a row-permuted cache object and a
damaged workspace file are refused with the command that restores them, and the authors' published
bytes are never re-recorded by a command that runs the pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import SHARED, roman_numeral_clone, run, small_clone
from labelbench.data.files import file_hash
from labelbench.data.io import DataError, load_dataset, write_npy
from labelbench.data.verify import dir_listing, listing_md5, verify


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _flip(path: Path, offset: int = -1) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _cache_put(repo: Path, md5: str, data: bytes) -> Path:
    path = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def toy(tmp_path) -> Path:
    """dvc.yaml + dvc.lock recording a folder output data/trained/toy (a dataset of the data contract,
    listing in the cache, each file's object too) and a file output data/folds/toy.csv; data/added/extra
    tracked by data/added/extra.dvc."""
    repo = tmp_path / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    folder = repo / "data" / "trained" / "toy"
    write_npy(folder / "given_labels.npy", np.array([0, 1, 1, 0]))
    write_npy(folder / "label_errors.npy", np.array([False, True, False, False]))
    (folder / "image_ids.txt").write_text("a\nb\nc\nd\n")
    write_npy(folder / "pred_probs" / "m.npy", np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]))
    entries = dir_listing(folder)
    for entry in entries:
        _cache_put(repo, entry["md5"], (folder / entry["relpath"]).read_bytes())
    dir_md5 = listing_md5(entries)
    _cache_put(repo, dir_md5, json.dumps(entries).encode())
    csv = repo / "data" / "folds" / "toy.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("image_id,fold\na,0\n")
    added = repo / "data" / "added" / "extra"
    shutil.copytree(folder, added)
    lock = {"schema": "2.0", "stages": {
        "assemble@toy": {"cmd": "x", "deps": [{"path": "data/folds/toy.csv", "hash": "md5", "md5": "0" * 32}],
                         "outs": [{"path": "data/trained/toy", "hash": "md5", "md5": dir_md5, "nfiles": 4}]},
        "folds@toy": {"cmd": "y", "outs": [{"path": "data/folds/toy.csv", "hash": "md5",
                                            "md5": file_hash(csv), "size": csv.stat().st_size}]},
    }}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    (repo / "data" / "added" / "extra.dvc").write_text(yaml.safe_dump(
        {"outs": [{"md5": dir_md5, "hash": "md5", "path": "extra", "nfiles": 4}]}))
    return repo


def test_listing_md5_is_dvcs_own_directory_hash(toy):
    from dvc_data.hashfile.tree import Tree

    entries = dir_listing(toy / "data" / "trained" / "toy")
    tree = Tree.from_list([dict(e) for e in entries], hash_name="md5")
    tree.digest()
    assert listing_md5(entries) == tree.hash_info.value


def test_untouched_outputs_pass_and_unrecorded_paths_are_not_checked(toy, tmp_path, monkeypatch):
    monkeypatch.chdir(toy)
    verify(toy / "data" / "trained" / "toy" / "pred_probs" / "m.npy")
    verify("data/folds/toy.csv")
    verify(toy / "data" / "added" / "extra")
    assert load_dataset(toy / "data" / "trained", "toy").num_errors == 1
    assert load_dataset(toy / "data" / "added", "extra").num_errors == 1
    (toy / "data" / "loose.txt").write_text("not an output")
    verify(toy / "data" / "loose.txt")
    (tmp_path / "elsewhere.txt").write_text("no dvc.yaml above")
    verify(tmp_path / "elsewhere.txt")


@pytest.mark.parametrize("stages", [[1], {"folds@toy": {"outs": [{"md5": "0" * 32}]}}, {"folds@toy": "text"}])
def test_a_dvc_lock_not_in_dvcs_format_is_one_error(toy, monkeypatch, stages):
    monkeypatch.chdir(toy)
    (toy / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    with pytest.raises(DataError, match=r"dvc.lock: not in DVC's dvc.lock format .*`git checkout -- dvc.lock`"):
        verify("data/folds/toy.csv")


@pytest.mark.parametrize("content", [{"outs": [{"pathx": "extra"}]}, {"outs": "extra"}, ["extra"], None])
def test_a_dvc_file_not_in_dvcs_format_is_one_error(toy, monkeypatch, content):
    monkeypatch.chdir(toy)
    (toy / "data" / "added" / "extra.dvc").write_text(yaml.safe_dump(content))
    with pytest.raises(DataError, match=r"data/added/extra.dvc: not in DVC's .dvc format .*`git checkout -- "
                                        r"data/added/extra.dvc`"):
        verify("data/added/extra/given_labels.npy")


def test_a_damaged_file_of_a_folder_output_is_named_with_its_restore_command(toy, monkeypatch):
    monkeypatch.chdir(toy)
    _flip(toy / "data" / "trained" / "toy" / "label_errors.npy")
    with pytest.raises(DataError) as caught:
        load_dataset(toy / "data" / "trained", "toy")
    assert caught.value.path == "data/trained/toy/label_errors.npy"
    assert "dvc.lock (outs of stage 'assemble@toy')" in caught.value.problem
    assert "`dvc checkout --force data/trained/toy`" in caught.value.problem
    assert "`dvc repro -f assemble@toy`" in caught.value.problem


def test_a_damaged_cache_object_is_told_apart_from_a_damaged_workspace_file(toy, monkeypatch):
    """The row-permuted cache object checked out into the workspace: the object must go first."""
    monkeypatch.chdir(toy)
    path = toy / "data" / "trained" / "toy" / "pred_probs" / "m.npy"
    good = file_hash(path)
    permuted = np.load(path)[[3, 2, 1, 0]]
    write_npy(path, permuted)
    obj = _cache_put(toy, good, path.read_bytes())
    with pytest.raises(DataError) as caught:
        verify(path)
    assert caught.value.path == "data/trained/toy/pred_probs/m.npy"
    problem = caught.value.problem
    assert "cache object .dvc/cache/files/md5/" in problem and "is damaged" in problem
    assert f"`rm -f {obj.relative_to(toy).as_posix()}`, then `dvc repro -f assemble@toy`, then " \
           "`dvc checkout --force data/trained/toy`" in problem


def test_missing_extra_and_unlisted_files(toy, monkeypatch):
    monkeypatch.chdir(toy)
    folder = toy / "data" / "trained" / "toy"
    (folder / "pred_probs" / "other.npy").write_bytes((folder / "pred_probs" / "m.npy").read_bytes())
    with pytest.raises(DataError, match="not in the listing") as caught:
        verify(folder)
    assert caught.value.path == "data/trained/toy/pred_probs/other.npy"
    (folder / "pred_probs" / "other.npy").unlink()
    (folder / "image_ids.txt").unlink()
    with pytest.raises(DataError, match="missing, though dvc.lock") as caught:
        verify(folder)
    assert caught.value.path == "data/trained/toy/image_ids.txt"


def test_without_the_listing_in_the_cache_the_folder_is_named(toy, monkeypatch):
    monkeypatch.chdir(toy)
    shutil.rmtree(toy / ".dvc" / "cache")
    verify(toy / "data" / "trained" / "toy")  # matches: no cache needed at all
    _flip(toy / "data" / "trained" / "toy" / "image_ids.txt", 0)
    with pytest.raises(DataError, match=r"`dvc fetch` brings it") as caught:
        verify(toy / "data" / "trained" / "toy" / "image_ids.txt")
    assert caught.value.path == "data/trained/toy"


@pytest.mark.parametrize("listing", ['[{"relpath": "image_ids.txt"}]', '[{"md5": "0"}]', '{"relpath": "x"}', "[1]"])
def test_a_damaged_listing_in_the_cache_is_treated_as_missing(toy, monkeypatch, listing):
    """A .dir object that is JSON but not DVC's listing (entries without relpath or md5): one error naming the
    folder, as without the listing (it was a KeyError traceback)."""
    monkeypatch.chdir(toy)
    dir_md5 = yaml.safe_load((toy / "dvc.lock").read_text())["stages"]["assemble@toy"]["outs"][0]["md5"]
    obj = toy / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    obj.write_text(listing)
    _flip(toy / "data" / "trained" / "toy" / "image_ids.txt", 0)
    with pytest.raises(DataError, match=r"`dvc fetch` brings it") as caught:
        verify(toy / "data" / "trained" / "toy" / "image_ids.txt")
    assert caught.value.path == "data/trained/toy"


def test_file_outputs_and_dvc_files(toy, monkeypatch):
    monkeypatch.chdir(toy)
    (toy / "data" / "folds" / "toy.csv").write_text("image_id,fold\na,1\n")
    with pytest.raises(DataError, match=r"outs of stage 'folds@toy'.*dvc checkout --force data/folds/toy.csv"):
        verify(toy / "data" / "folds" / "toy.csv")
    _flip(toy / "data" / "added" / "extra" / "given_labels.npy")
    with pytest.raises(DataError, match=r"data/added/extra.dvc records.*`dvc fetch data/added/extra.dvc` and "
                                        r"`dvc checkout --force data/added/extra`"):
        load_dataset(toy / "data" / "added", "extra")


def test_the_running_stage_does_not_check_its_own_outputs(toy, monkeypatch):
    """dvc.lock records a stage's outputs when it finishes; until then they are the old ones."""
    monkeypatch.chdir(toy)
    write_npy(toy / "data" / "trained" / "toy" / "given_labels.npy", np.array([1, 1, 1, 0]))
    monkeypatch.setenv("DVC_STAGE", "assemble@toy")
    verify(toy / "data" / "trained" / "toy")
    monkeypatch.setenv("DVC_STAGE", "evaluate")
    with pytest.raises(DataError):
        verify(toy / "data" / "trained" / "toy")


# --- real dvc -------------------------------------------------------------------------------------------


def _cache_object(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


@pytest.mark.slow
def test_damaged_cache_object_and_workspace_file_are_refused_by_the_pipeline(tmp_path):
    root = small_clone(tmp_path, published=["roman-numeral"])
    run(["dvc", "pull", "-q", "data/published"], root)
    run(["dvc", "repro"], root)
    headline = (root / "metrics" / "headline.json").read_bytes()
    run(["dvc", "repro", "-f", "-s", "evaluate"], root)  # untouched: passes
    assert (root / "metrics" / "headline.json").read_bytes() == headline

    # the row-permuted cache object of test_resnet.npy (read-only, as DVC leaves it), checked out
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    listing = json.loads(_cache_object(root, lock["stages"]["assemble@digits"]["outs"][0]["md5"]).read_text())
    good = next(e["md5"] for e in listing if e["relpath"] == "pred_probs/test_resnet.npy")
    obj = _cache_object(root, good)
    probs = np.load(obj)
    os.chmod(obj, 0o644)
    with open(obj, "wb") as fh:
        np.save(fh, probs[np.random.default_rng(0).permutation(len(probs))])
    os.chmod(obj, 0o444)
    shutil.rmtree(root / "data" / "trained" / "digits")
    run(["dvc", "checkout", "--force", "data/trained/digits"], root)
    assert run(["dvc", "status"], root).stdout.strip() == "Data and pipelines are up to date."  # DVC sees nothing

    result = run(["dvc", "repro", "-f", "-s", "evaluate"], root, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "data/trained/digits/pred_probs/test_resnet.npy" in errors[0]
    rm = f"`rm -f .dvc/cache/files/md5/{good[:2]}/{good[2:]}`"
    assert f"{rm}, then `dvc repro -f assemble@digits`, then `dvc checkout --force data/trained/digits`" in errors[0]
    assert not (root / "metrics" / "headline.json").exists()  # a failed stage leaves no outputs: no metrics written

    # what the message says restores it
    obj.unlink()
    run(["dvc", "repro", "-f", "-s", "assemble@digits"], root)
    run(["dvc", "checkout", "--force", "data/trained/digits"], root)
    assert file_hash(obj) == good
    run(["dvc", "repro", "-f", "-s", "evaluate"], root)
    assert (root / "metrics" / "headline.json").read_bytes() == headline

    # a byte flipped in the workspace: refused, and `dvc checkout --force` restores it
    _flip(root / "data" / "trained" / "digits" / "label_errors.npy")
    result = run(["dvc", "repro", "-f", "-s", "evaluate"], root, check=False)
    assert result.returncode != 0
    assert "data/trained/digits/label_errors.npy" in result.stderr
    assert "`dvc checkout --force data/trained/digits`" in result.stderr
    run(["dvc", "checkout", "--force", "data/trained/digits"], root)
    run(["dvc", "repro", "-f", "-s", "evaluate"], root)
    assert (root / "metrics" / "headline.json").read_bytes() == headline

    # the training half's inputs: a fold folder read by assemble
    _flip(root / "data" / "crossval" / "digits" / "test_resnet" / "fold_1" / "heldout_pred_probs.npy")
    result = run(["dvc", "repro", "-f", "-s", "assemble@digits"], root, check=False)
    assert result.returncode != 0
    assert "data/crossval/digits/test_resnet/fold_1/heldout_pred_probs.npy" in result.stderr
    assert "`dvc checkout --force data/crossval/digits/test_resnet/fold_1`" in result.stderr
    run(["dvc", "checkout", "--force", "data/crossval/digits/test_resnet/fold_1"], root)

    # a table in git that the report reads, cut mid-row; an image of the raw digits that dedupe reads
    benchmark = root / "metrics" / "benchmark.csv"
    benchmark.write_bytes(benchmark.read_bytes()[:5000])
    result = run(["dvc", "repro", "-f", "-s", "report"], root, check=False)
    assert result.returncode != 0 and "metrics/benchmark.csv: not the bytes DVC recorded" in result.stderr, result.stderr
    assert "`dvc repro -f benchmark`" in result.stderr
    image = sorted((root / "data" / "raw" / "digits" / "images").rglob("*.png"))[7]
    _flip(image, offset=len(image.read_bytes()) // 2)
    result = run(["dvc", "repro", "-f", "-s", "dedupe@digits"], root, check=False)
    assert result.returncode != 0 and image.relative_to(root).as_posix() in result.stderr, result.stderr


def _published_record(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]["published"]


def _damage_published(root: Path) -> tuple[dict, Path]:
    """One byte of a published file flipped: the lock entry that pins the authors' bytes, and the cache object the
    damaged file would have if some command cached it."""
    path = root / "data" / "published" / "roman-numeral" / "pred_probs" / "resnet18.npy"
    _flip(path)
    return _published_record(root), _cache_object(root, file_hash(path))


@pytest.mark.slow
def test_repro_never_records_damaged_published_bytes(tmp_path):
    root = roman_numeral_clone(tmp_path / "repo")
    (tmp_path / "shared").unlink()  # a clone elsewhere first: no authors' copy beside it
    resnet18 = root / "data" / "published" / "roman-numeral" / "pred_probs" / "resnet18.npy"
    authors = resnet18.read_bytes()
    # a stage that reads the folder (it does not depend on it): refused, naming the file
    record, damaged_object = _damage_published(root)
    for command in (["dvc", "repro", "evaluate"], ["dvc", "repro", "-f", "-s", "evaluate"]):
        result = run(command, root, check=False)
        assert result.returncode != 0 and "differs from" in result.stderr, command
        assert _published_record(root) == record, command
        assert not damaged_object.exists(), command
    # the whole pipeline: the `published` stage's output changed, and DVC restores it from its cache (the lock entry
    # names the authors' bytes)
    result = run(["dvc", "repro"], root)
    assert "Stage 'published' is cached - skipping run" in result.stdout
    assert resnet18.read_bytes() == authors
    assert _published_record(root) == record and not damaged_object.exists()
    # with the cache emptied, DVC reruns the stage; with no authors' copy to rebuild from (a clone elsewhere), it
    # fails: nothing recorded, and it says how to get the folder back
    shutil.rmtree(root / ".dvc" / "cache")
    _damage_published(root)
    result = run(["dvc", "repro"], root, check=False)
    assert result.returncode != 0
    assert "`dvc pull data/published`" in result.stderr
    assert _published_record(root) == record and not damaged_object.exists()
    # beside ../shared (as a checkout is): rebuilt from the authors' copy, each file checked
    (tmp_path / "shared").symlink_to(SHARED)
    result = run(["dvc", "repro"], root)
    assert "Running stage 'published'" in result.stdout
    assert resnet18.read_bytes() == authors
    assert _published_record(root) == record and not damaged_object.exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", [["dvc", "exp", "run", "-S", "score=margin"],
                                     ["dvc", "exp", "run", "--queue", "-S", "score=margin"]], ids=["run", "queue"])
def test_exp_run_never_records_damaged_published_bytes(tmp_path, command):
    """`dvc exp run` commits every `.dvc` data source before it runs (DVC's `_stash_commit_deps`): data/published is a
    stage output instead, so the damage is never recorded (a workspace run rebuilds the folder, as `dvc repro`)."""
    root = roman_numeral_clone(tmp_path / "repo")
    record, damaged_object = _damage_published(root)
    run(command, root, check=False)
    try:
        assert _published_record(root) == record
        assert not damaged_object.exists()
    finally:
        run(["dvc", "queue", "remove", "--all"], root, check=False)

"""Golden bytes: one digits fold trained on CPU gives the same bytes on any x86-64 host.

The stage script trains fold 0 of digits with the committed params in a fresh interpreter (as `dvc repro`
runs it), on inputs pulled from the public remote, and every file it writes is compared with the hashes
below, which are the bytes of `crossval@digits-test_resnet-0` in the committed dvc.lock: a maintainer's
`make reproduce` then gives outputs that `make publish` may push, on any machine. On a mismatch the test
names each file that differs. Host dependence it guards against: ATen's, MKL's and oneDNN's kernel choice by
instruction set, vendor and cache sizes, and thread count (labelbench/train/host.py).
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from conftest import DVC_REMOTE, clone_repo, run

pytestmark = pytest.mark.slow

STAGE = "crossval@digits-test_resnet-0"
OUT = "data/crossval/digits/test_resnet/fold_0"
#: md5 of every file of the fold folder (relative path -> md5), as trained on CPU with the committed params.
GOLDEN = {
    "config.yaml": "f439e1a3366e6b9c81e5d364f1840056",
    "dvclive/metrics.json": "d1b01ec4856738880ad9ee2cdf5f1bbf",
    "dvclive/params.yaml": "4f4caf994f3cdf97a2337e7554b57109",
    "dvclive/plots/metrics/lr.tsv": "f2c128e57e3273922a83d3e127a6a0e4",
    "dvclive/plots/metrics/train/accuracy.tsv": "d1de5886399484d042381d7ecd319dbf",
    "dvclive/plots/metrics/train/loss.tsv": "9c0c2fe2b2d054ddefb893c923af92d7",
    "heldout_indices.npy": "0d044a109588358a760ab10b12c811fa",
    "heldout_pred_probs.npy": "fecab15d319698bee0879aec32d020d8",
    "model.safetensors": "73a61fc2d631fa82649618e764ea1e90",
    "records/embeddings.npy": "180b54e293036e8c64398e85fc5786fa",
    "records/heldout_logits.npy": "2e421dd623f1296816e00a3a60080eb7",
    "records/train_indices.npy": "847370e516a00bf0cd050b55b5b8e8f1",
    "records/train_logits.npy": "dbc7e79a511265082b05cac79d0bb91b",
}


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained_fold(tmp_path_factory):
    """A clone with the fold's inputs pulled from the public remote and fold 0 trained by the stage's own
    command line from the committed dvc.lock, in a fresh interpreter."""
    if not (DVC_REMOTE / "files").is_dir():
        pytest.fail(f"the public DVC remote is missing at {DVC_REMOTE}: the golden test needs its digits inputs")
    repo = clone_repo(tmp_path_factory.mktemp("golden") / "clone")
    run(["dvc", "pull", "-q", "raw@digits", "noise@digits", "folds@digits"], repo)
    run(yaml.safe_load((repo / "dvc.lock").read_text())["stages"][STAGE]["cmd"], repo)
    return repo


def test_fold_bytes_are_the_golden_ones(trained_fold):
    repo = trained_fold
    folder = repo / OUT
    written = {p.relative_to(folder).as_posix(): md5(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    differ = [f"{name}: {written.get(name, '(missing)')} != golden {GOLDEN.get(name, '(not golden)')}"
              for name in sorted(set(written) | set(GOLDEN)) if written.get(name) != GOLDEN.get(name)]
    assert not differ, "fold 0 of digits trained to other bytes on this host:\n" + "\n".join(differ)


def test_committed_dvc_lock_names_these_bytes(trained_fold):
    """DVC itself compares the trained folder with the committed dvc.lock entry: no dependency changed, and the
    output is the one recorded ("not in cache" only: the fold was trained by its command line, outside `dvc repro`,
    so this clone's cache has not stored it; other bytes would be "modified")."""
    repo = trained_fold
    status = json.loads(run(["dvc", "status", "--json", STAGE], repo).stdout or "{}")
    assert status.get(STAGE, []) in ([], [{"changed outs": {OUT: "not in cache"}}]), status

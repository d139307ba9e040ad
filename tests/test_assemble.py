"""labelbench.train.assemble and stages/assemble.py: fold outputs -> the pred_probs data contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import load_stage
from labelbench.data.io import DataError, load_dataset, write_npy
from labelbench.train.assemble import assemble
from test_train import make_dataset, write_params

N, K, FOLDS = 30, 3, 3


def make_labels(path: Path, *, known=True) -> pd.DataFrame:
    true = np.arange(N) % K
    given = true.copy()
    given[[1, 7, 20]] = (true[[1, 7, 20]] + 1) % K
    table = pd.DataFrame({
        "image_id": [f"train/{t}/{i:04d}.png" for i, t in enumerate(true)],
        "given_label": given,
        "true_label": true if known else [""] * N,
        "label_error": (given != true).astype(int),
    })
    table.to_csv(path, index=False)
    return table


def make_folds(root: Path, model: str, *, assignment=None, k=K) -> list[Path]:
    """Fold dirs like train_fold writes (only the two arrays assemble reads)."""
    assignment = np.arange(N) % FOLDS if assignment is None else assignment
    rng = np.random.default_rng(sum(map(ord, model)))
    dirs = []
    for f in range(FOLDS):
        d = root / model / f"fold_{f}"
        idx = np.flatnonzero(assignment == f).astype(np.int64)
        probs = rng.dirichlet(np.ones(k), size=len(idx))
        write_npy(d / "heldout_indices.npy", idx)
        write_npy(d / "heldout_pred_probs.npy", probs)
        dirs.append(d)
    return dirs


def test_assemble_writes_a_valid_contract(tmp_path):
    table = make_labels(tmp_path / "labels.csv")
    fold_dirs = {m: make_folds(tmp_path / "cv", m) for m in ("m1", "m2")}
    ds = assemble(labels_csv=tmp_path / "labels.csv", fold_dirs=fold_dirs, out_root=tmp_path / "trained", dataset="tiny")
    folder = tmp_path / "trained" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "given_labels.npy", "image_ids.txt", "label_errors.npy", "pred_probs", "true_labels.npy"
    ]
    again = load_dataset(tmp_path / "trained", "tiny")
    assert sorted(again.pred_probs) == ["m1", "m2"] and ds.num_errors == 3
    assert again.given_labels.dtype == np.int64 and again.label_errors.dtype == np.bool_
    assert again.image_ids == table["image_id"].tolist()
    for m, dirs in fold_dirs.items():
        probs = np.load(folder / "pred_probs" / f"{m}.npy")
        assert probs.dtype == np.float64 and probs.shape == (N, K)
        for d in dirs:  # every held-out row landed at its labels.csv row
            idx = np.load(d / "heldout_indices.npy")
            np.testing.assert_array_equal(probs[idx], np.load(d / "heldout_pred_probs.npy"))
    assert not [p for p in (tmp_path / "trained").iterdir() if p.name.startswith(".")]


def test_unknown_true_labels(tmp_path):
    make_labels(tmp_path / "labels.csv", known=False)
    ds = assemble(labels_csv=tmp_path / "labels.csv", fold_dirs={"m": make_folds(tmp_path, "m")},
                  out_root=tmp_path / "out", dataset="d")
    assert ds.true_labels is None and not (tmp_path / "out" / "d" / "true_labels.npy").exists()
    assert ds.num_errors == 3


def test_row_in_two_folds_names_the_fold_dir(tmp_path):
    make_labels(tmp_path / "labels.csv")
    dirs = make_folds(tmp_path, "m")
    idx = np.load(dirs[2] / "heldout_indices.npy")
    write_npy(dirs[2] / "heldout_indices.npy", np.r_[idx[:-1], 0])  # row 0 also in fold_0
    with pytest.raises(DataError, match=r"also held out in .*fold_0.*exactly one fold") as info:
        assemble(labels_csv=tmp_path / "labels.csv", fold_dirs={"m": dirs}, out_root=tmp_path / "out", dataset="d")
    assert info.value.path == str(dirs[2])
    assert not (tmp_path / "out" / "d").exists()


def test_row_repeated_within_a_fold_is_refused_naming_it(tmp_path):
    """A fold listing a row twice (with a probability row for each) would give that row the later one's
    probabilities and still cover every row once overall: refused, naming the fold's heldout_indices.npy."""
    make_labels(tmp_path / "labels.csv")
    dirs = make_folds(tmp_path, "m")
    idx, probs = np.load(dirs[1] / "heldout_indices.npy"), np.load(dirs[1] / "heldout_pred_probs.npy")
    write_npy(dirs[1] / "heldout_indices.npy", np.r_[idx, idx[0]])
    write_npy(dirs[1] / "heldout_pred_probs.npy", np.r_[probs, probs[-1:]])
    with pytest.raises(DataError, match=rf"1 row\(s\) repeated within the fold: \[{idx[0]}\]") as info:
        assemble(labels_csv=tmp_path / "labels.csv", fold_dirs={"m": dirs}, out_root=tmp_path / "out", dataset="d")
    assert info.value.path == str(dirs[1] / "heldout_indices.npy")
    assert not (tmp_path / "out" / "d").exists()


def test_missing_rows_and_missing_fold(tmp_path):
    make_labels(tmp_path / "labels.csv")
    dirs = make_folds(tmp_path, "m")
    kwargs = dict(labels_csv=tmp_path / "labels.csv", out_root=tmp_path / "out", dataset="d")
    with pytest.raises(DataError, match=r"10 of 30 row\(s\) appear in none of the fold folders"):
        assemble(fold_dirs={"m": dirs[:2]}, **kwargs)
    with pytest.raises(DataError, match="fold folder not found") as info:
        assemble(fold_dirs={"m": [*dirs, tmp_path / "m" / "fold_3"]}, **kwargs)
    assert info.value.path.endswith("fold_3")
    idx = np.load(dirs[1] / "heldout_indices.npy")
    write_npy(dirs[1] / "heldout_indices.npy", np.r_[idx, idx[0]])
    with pytest.raises(DataError, match="has 10 rows but heldout_indices.npy has 11"):
        assemble(fold_dirs={"m": dirs}, **kwargs)
    write_npy(dirs[1] / "heldout_indices.npy", np.r_[idx, N])
    with pytest.raises(DataError, match=r"outside \[0, 30\)"):
        assemble(fold_dirs={"m": dirs}, **kwargs)


def test_fold_disagreement_on_classes_and_bad_probs(tmp_path):
    make_labels(tmp_path / "labels.csv")
    dirs = make_folds(tmp_path, "m")
    kwargs = dict(labels_csv=tmp_path / "labels.csv", out_root=tmp_path / "out", dataset="d")
    n1 = len(np.load(dirs[1] / "heldout_indices.npy"))
    write_npy(dirs[1] / "heldout_pred_probs.npy", np.full((n1, 4), 0.25))
    with pytest.raises(DataError, match="has 4 classes but"):
        assemble(fold_dirs={"m": dirs}, **kwargs)
    write_npy(dirs[1] / "heldout_pred_probs.npy", np.full((n1, 3), 0.5))
    with pytest.raises(DataError, match="do not sum to 1"):
        assemble(fold_dirs={"m": dirs}, **kwargs)


def test_failed_assemble_keeps_previous_output(tmp_path):
    make_labels(tmp_path / "labels.csv")
    dirs = make_folds(tmp_path, "m")
    kwargs = dict(labels_csv=tmp_path / "labels.csv", out_root=tmp_path / "out", dataset="d")
    assemble(fold_dirs={"m": dirs}, **kwargs)
    before = (tmp_path / "out" / "d" / "pred_probs" / "m.npy").read_bytes()
    with pytest.raises(DataError):
        assemble(fold_dirs={"m": dirs[:2]}, **kwargs)
    assert (tmp_path / "out" / "d" / "pred_probs" / "m.npy").read_bytes() == before


def test_end_to_end_crossval_then_assemble(tmp_path, capsys, monkeypatch):
    """Real training (test_resnet, 1 epoch, 16 px) of 3 folds through both stage CLIs."""
    data = make_dataset(tmp_path / "raw" / "tiny")
    write_params(tmp_path, {"train.epochs": 1, "train.batch_size": 16, "train.image_size": 16, "train.device": "cpu",
                            "crossval.folds": [0, 1, 2], "crossval.models": ["test_resnet"]})
    monkeypatch.chdir(tmp_path)
    crossval = load_stage("crossval")
    for f in range(3):
        assert crossval.main([
            "--dataset", "tiny", "--model", "test_resnet", "--fold", str(f),
            "--images", str(data["images_root"]), "--labels", str(data["labels_csv"]),
            "--folds", str(data["folds_csv"]), "--out", str(tmp_path / "crossval" / "tiny" / "test_resnet" / f"fold_{f}"),
        ]) == 0
    argv = ["--dataset", "tiny", "--labels", str(data["labels_csv"]), "--crossval-root", str(tmp_path / "crossval"),
            "--out", str(tmp_path / "trained")]
    assert load_stage("assemble").main(argv) == 0
    assert "tiny/test_resnet: 60 rows x 3 classes" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "trained", "tiny")
    assert ds.pred_probs["test_resnet"].shape == (60, 3) and ds.num_errors == 3
    write_params(tmp_path, {"crossval.folds": [0, 1, 2, 3], "crossval.models": ["test_resnet"]})
    assert load_stage("assemble").main(argv) == 1  # crossval.folds names a fold that was not trained
    assert "fold_3" in capsys.readouterr().err
    write_params(tmp_path, {"crossval.folds": [1, 2, 3]})
    assert load_stage("assemble").main(argv) == 1
    assert "crossval.folds" in capsys.readouterr().err

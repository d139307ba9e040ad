"""Stratified k-fold assignment: coverage, stratification, determinism, small classes."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from conftest import load_stage
from labelbench.train.folds import assign_folds, folds_table
from test_train import write_params


LABELS = np.random.default_rng(0).choice(4, size=1000, p=[0.4, 0.3, 0.2, 0.1])


@pytest.mark.parametrize("seed", [None, 0, 7])
@pytest.mark.parametrize("k", [2, 5])
def test_every_row_in_exactly_one_fold_and_stratified(k, seed):
    folds = assign_folds(labels=LABELS, k=k, seed=seed)
    assert folds.shape == LABELS.shape and folds.dtype == np.int64
    assert set(folds.tolist()) == set(range(k))
    sizes = np.bincount(folds, minlength=k)
    assert sizes.max() - sizes.min() <= 4  # at most one extra per class
    for c in range(4):
        per_fold = np.bincount(folds[LABELS == c], minlength=k)
        assert per_fold.max() - per_fold.min() <= 1, (c, per_fold)


def test_deterministic_and_seed_matters():
    a = assign_folds(labels=LABELS, k=5, seed=3)
    np.testing.assert_array_equal(a, assign_folds(labels=LABELS, k=5, seed=3))
    assert not np.array_equal(a, assign_folds(labels=LABELS, k=5, seed=4))
    np.testing.assert_array_equal(assign_folds(labels=LABELS, k=5, seed=None), assign_folds(labels=LABELS, k=5, seed=None))


def test_seed_none_is_unshuffled():
    labels = np.array([0] * 6 + [1] * 3)
    assert assign_folds(labels=labels, k=3, seed=None).tolist() == [0, 0, 1, 1, 2, 2, 0, 1, 2]


def test_small_class_names_class_and_count():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 2)
    with pytest.raises(ValueError, match=r"missing from a fold: class 2 has 2$"):
        assign_folds(labels=labels, k=3, seed=0)


@pytest.mark.parametrize("k", [1, 0, 2.5, True])
def test_bad_k(k):
    with pytest.raises(ValueError, match="n_splits=2 or more|number of folds must be of Integral type"):
        assign_folds(labels=LABELS, k=k, seed=0)


def run_stage(folder, labels, out, *, k: int = 5, seed: int | None = 0) -> int:
    write_params(folder, {"crossval.folds": list(range(k)), "crossval.fold_seed": seed})
    return load_stage("folds").main(["--in", str(labels), "--out", str(out)])


def test_stage_writes_image_id_fold_in_input_order(tmp_path, monkeypatch):
    ids = [f"img/{i:04d}.png" for i in range(len(LABELS))][::-1]
    path = tmp_path / "labels.csv"
    pd.DataFrame({"image_id": ids, "given_label": LABELS, "true_label": "", "label_error": ""}).to_csv(path, index=False)
    out = tmp_path / "folds" / "folds.csv"
    monkeypatch.chdir(tmp_path)
    assert run_stage(tmp_path, path, out) == 0
    written = pd.read_csv(out)
    assert list(written.columns) == ["image_id", "fold"]
    assert written["image_id"].tolist() == ids
    np.testing.assert_array_equal(written["fold"].to_numpy(), assign_folds(labels=LABELS, k=5, seed=0))
    assert run_stage(tmp_path, path, out, seed=None) == 0
    np.testing.assert_array_equal(pd.read_csv(out)["fold"].to_numpy(), assign_folds(labels=LABELS, k=5, seed=None))


def test_stage_small_class_is_data_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error\n" + "".join(
        f"{i}.png,{int(i >= 8)},,\n" for i in range(10)))
    monkeypatch.chdir(tmp_path)
    assert run_stage(tmp_path, path, tmp_path / "f.csv", k=3, seed=None) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "class 1 has 2" in err and "missing from a fold" in err
    assert not (tmp_path / "f.csv").exists()


def test_folds_table_columns():
    labels = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "given_label": [0, 1, 0, 1]})
    table = folds_table(labels=labels, k=2, seed=None)
    assert table.to_dict("list") == {"image_id": ["a", "b", "c", "d"], "fold": [0, 0, 1, 1]}


@pytest.mark.parametrize("changes, message", [
    ({"crossval.fold_seed": "abc"}, "crossval.fold_seed = 'abc'"),
    ({"crossval.fold_seed": -1}, "crossval.fold_seed = -1"),
    ({"crossval.folds": [0]}, "crossval.folds = [0]"),
    ({"crossval.folds": [0, 2]}, "crossval.folds = [0, 2]"),
])
def test_stage_rejects_bad_params(tmp_path, capsys, monkeypatch, changes, message):
    write_params(tmp_path, changes)
    monkeypatch.chdir(tmp_path)
    assert load_stage("folds").main(["--in", "missing.csv", "--out", "f.csv"]) == 1  # before reading anything
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f.csv").exists()

"""Synthetic label noise: the published CIFAR-10S labels, rates, determinism, validation; instance-dependent noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic
import pytest

from conftest import load_stage
from labelbench.config import RAW_SOURCES, TrainedDataset
from labelbench.data.io import DataError
from labelbench.data.io import read_classes, read_labels_csv
from labelbench.data.raw.registry import DATASETS
from PIL import Image

from labelbench.train.noise import (
    WEAK_MODEL_SIDE, add_noise, class_mean_distances, instance_noise, make_noise_matrix, noisy_labels_table,
    weak_model_pixels,
)
from test_train import write_params

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "published"


def cifar_10s():
    folder = PUBLISHED / "cifar-10s"
    needed = [folder / n for n in ("true_labels.npy", "given_labels.npy", "image_ids.txt")]
    if not all(p.is_file() for p in needed):  # the exactness tests need the authors' files: fail, never skip
        pytest.fail(f"published reference data not found under {folder}: the tests need ../shared/published",
                    pytrace=False)
    return (
        np.load(needed[0], allow_pickle=False),
        np.load(needed[1], allow_pickle=False),
        needed[2].read_text().splitlines(),
    )


UNIFORM = {"source": "digits", "noise": "uniform"}


def run_stage(folder: Path, dataset: str, noise: dict, classes: list[str], labels: Path, out: Path,
              images: Path | None = None) -> int:
    """stages/noise.py on ``labels`` with ``crossval.datasets = {dataset: noise}`` (uniform unless ``noise`` says
    otherwise), cwd ``folder``."""
    write_params(folder, {"crossval.datasets": {dataset: {**UNIFORM, **noise}}})
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    return load_stage("noise").main([dataset, "--in", str(labels), "--classes", str(folder / "classes.txt"),
                                     "--images", str(images or folder / "images"), "--out", str(out)])


def test_reproduces_published_cifar_10s(tmp_path, monkeypatch):
    """The stage, fed the true labels, returns the published given labels on all 50,000 rows.

    The published arrays are NOT in sorted-path order; the stage sorts by image_id
    (ImageFolder order) before drawing the noise, as the authors' torchvision loader did.
    """
    true, given, ids = cifar_10s()
    assert len(ids) == true.shape[0] == given.shape[0] == 50_000
    path = tmp_path / "labels.csv"
    pd.DataFrame({"image_id": ids, "given_label": true, "true_label": true, "label_error": 0}).to_csv(
        path, index=False
    )
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    noise = {"noise_amount": 0.2, "sparsity": 0.4, "noise_seed": 0}
    assert run_stage(tmp_path, "cifar-10s", noise, [str(c) for c in range(10)], path, out) == 0
    written = read_labels_csv(out / "labels.csv")
    assert written["image_id"].tolist() == ids
    np.testing.assert_array_equal(written["given_label"].to_numpy(), given)
    np.testing.assert_array_equal(written["true_label"].to_numpy(dtype=np.int64), true)
    np.testing.assert_array_equal(written["label_error"].to_numpy(dtype=np.int64), (given != true).astype(int))
    errors_path = PUBLISHED / "cifar-10s" / "label_errors.npy"
    if errors_path.is_file():
        np.testing.assert_array_equal(written["label_error"].to_numpy(dtype=bool), np.load(errors_path))
    record = json.loads((out / "noise.json").read_text())
    assert record["noise_amount"] == 0.2 and record["sparsity"] == 0.4 and record["seed"] == 0
    assert record["num_changed"] == int((given != true).sum())
    assert record["realised_noise_rate"] == pytest.approx((given != true).mean())
    matrix = np.array(record["noise_matrix"])
    assert matrix.shape == (10, 10)
    np.testing.assert_allclose(matrix.sum(axis=0), 1)
    assert np.trace(matrix) == pytest.approx(8)


def test_library_in_sorted_order_matches_published():
    true, given, ids = cifar_10s()
    order = sorted(range(len(ids)), key=lambda i: tuple(ids[i].split("/")))
    noisy, _ = add_noise(true_labels=true[order], noise_amount=0.2, sparsity=0.4, seed=0)
    np.testing.assert_array_equal(noisy, given[order])


def test_realised_rate_close_to_amount():
    true = np.repeat(np.arange(10), 10_000)
    for amount in (0.1, 0.2, 0.3, 0.5):
        noisy, matrix = add_noise(true_labels=true, noise_amount=amount, sparsity=0.4, seed=1)
        assert abs((noisy != true).mean() - amount) < 0.01, amount
        assert matrix.shape == (10, 10)
        np.testing.assert_allclose(matrix.sum(axis=0), 1)


def test_same_seed_identical_other_seed_differs():
    true = np.repeat(np.arange(5), 400)
    a, ma = add_noise(true_labels=true, noise_amount=0.3, sparsity=0.2, seed=7)
    b, mb = add_noise(true_labels=true, noise_amount=0.3, sparsity=0.2, seed=7)
    c, _ = add_noise(true_labels=true, noise_amount=0.3, sparsity=0.2, seed=8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)
    assert not np.array_equal(a, c)


def test_global_rng_state_untouched():
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    add_noise(true_labels=np.repeat(np.arange(3), 50), noise_amount=0.4, sparsity=0.0, seed=0)
    make_noise_matrix(num_classes=4, noise_amount=0.5, sparsity=0.5, seed=3)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_zero_amount_is_identity():
    true = np.array([0, 1, 2, 1])
    noisy, matrix = add_noise(true_labels=true, noise_amount=0, sparsity=0.4, seed=0)
    np.testing.assert_array_equal(noisy, true)
    np.testing.assert_array_equal(matrix, np.eye(3))


@pytest.mark.parametrize("amount, sparsity", [(-0.1, 0.4), (1.0, 0.4), (float("nan"), 0.4), (0.2, 1.5), (0.2, -0.1)])
def test_params_refuse_out_of_range_noise(amount, sparsity):
    with pytest.raises(pydantic.ValidationError):
        TrainedDataset(**UNIFORM, noise_amount=amount, sparsity=sparsity, noise_seed=0)


def test_params_refuse_a_noise_seed_that_numpy_cannot_take():
    """cleanlab seeds numpy's legacy generator, which takes seeds below 2**32 (it was an error blaming labels.csv)."""
    TrainedDataset(**UNIFORM, noise_amount=0.2, sparsity=0.4, noise_seed=2**32 - 1)
    with pytest.raises(pydantic.ValidationError, match="noise_seed\n  Input should be less than 4294967296"):
        TrainedDataset(**UNIFORM, noise_amount=0.2, sparsity=0.4, noise_seed=2**32)


def test_params_sparsity_only_with_uniform_noise_and_sources_of_the_registry():
    assert set(RAW_SOURCES) == set(DATASETS)
    TrainedDataset(source="digits", noise="instance", noise_amount=0.2, noise_seed=0)
    for bad in [{"noise": "instance", "sparsity": 0.4}, {"noise": "uniform"}, {"noise": "pairwise", "sparsity": 0.4},
                {"noise": "uniform", "sparsity": 0.4, "source": "mnist"}]:
        with pytest.raises(pydantic.ValidationError):
            TrainedDataset(**{"source": "digits", "noise_amount": 0.2, "noise_seed": 0, **bad})


def test_noise_amount_too_high_for_k():
    # the ranges of noise_amount and sparsity are params.yaml's (labelbench.config.Noise, see
    # test_stage_rejects_bad_input); the trace bound depends on K, so the library checks it
    with pytest.raises(ValueError, match=r"int\(K \* \(1 - noise_amount\)\) >= 1"):
        add_noise(true_labels=np.repeat(np.arange(10), 3), noise_amount=0.95, sparsity=0.4, seed=0)


def test_invalid_labels():
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        add_noise(true_labels=np.array([0, 2, 2]), noise_amount=0.2, sparsity=0.0)
    with pytest.raises(ValueError, match="integers"):
        add_noise(true_labels=np.array([0.0, 1.0]), noise_amount=0.2, sparsity=0.0)
    with pytest.raises(ValueError, match=r"integers, got dtype timedelta64"):  # a subtype of np.integer in numpy
        add_noise(true_labels=np.array([0, 1, 1], dtype="m8[D]"), noise_amount=0.2, sparsity=0.0)
    with pytest.raises(ValueError, match="< num_classes=2"):
        add_noise(true_labels=np.array([0, 1, 2]), noise_amount=0.2, sparsity=0.0, num_classes=2)


def test_instance_noise_refuses_labels_beyond_the_classes():
    """As the uniform path (cleanlab's check) does; it was an IndexError traceback."""
    with pytest.raises(ValueError, match="< num_classes=2, got max 2"):
        instance_noise(pixels=np.array([[0], [1], [2]]), true_labels=np.array([0, 1, 2]), noise_amount=0.3, seed=0,
                       num_classes=2)


def test_known_errors_without_true_labels_get_no_noise_and_pass_through_without(tmp_path, capsys, monkeypatch):
    """A source whose errors are verified but whose true labels are unknown (roman-numeral, food-101n): noise would
    be drawn from the wrong labels and mark those errors correct, so it is refused; with noise_amount 0 the labels
    and their error mask pass through (the stage counts label_error, as assemble does)."""
    text = ("image_id,given_label,true_label,label_error\n"
            "a/1.png,1,,1\na/2.png,0,,0\nb/1.png,1,,0\nb/2.png,0,0,0\nb/3.png,1,,\n")
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"1 row\(s\) are label errors without a true_label \(first 'a/1.png'\)"):
        noisy_labels_table(labels=read_labels_csv(path), noise_amount=0.5, sparsity=0.0, seed=0, num_classes=2)
    monkeypatch.chdir(tmp_path)
    uniform = {"noise_amount": 0.5, "sparsity": 0, "noise_seed": 0}
    assert run_stage(tmp_path, "verified", uniform, ["a", "b"], path, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"error: {path}: 1 row(s) are label errors without a true_label" in err
    assert "use noise_amount 0 (params.yaml: crossval.datasets.verified: noise uniform, noise_amount 0.5)" in err
    assert not (tmp_path / "out").exists()
    assert run_stage(tmp_path, "verified", {**uniform, "noise_amount": 0}, ["a", "b"], path, tmp_path / "out") == 0
    assert (tmp_path / "out" / "labels.csv").read_text() == text


def write_labels(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_table_uses_true_label_then_given_and_keeps_input_order(tmp_path):
    ids = [f"c{k}/{i:03d}.png" for k in range(4) for i in range(200)][::-1]  # reverse order
    true = np.array([int(i[1]) for i in ids])
    known = np.arange(len(ids)) % 2 == 1
    true_col = pd.array([t if k else None for k, t in zip(known, true)], dtype="Int64")
    given = np.where(known, (true + 1) % 4, true)  # where true_label is given, given_label is another (wrong) one
    labels = read_labels_csv(write_labels(tmp_path / "l.csv", pd.DataFrame({
        "image_id": ids, "given_label": given, "true_label": true_col,
        "label_error": pd.array([None] * len(ids), dtype="Int64"),
    })))
    out, record = noisy_labels_table(labels=labels, noise_amount=0.5, sparsity=0.0, seed=0)
    assert out["image_id"].tolist() == ids
    np.testing.assert_array_equal(out["true_label"].to_numpy(dtype=np.int64), true)
    np.testing.assert_array_equal(out["label_error"].to_numpy(dtype=np.int64), out["given_label"].to_numpy() != true)
    # noise drawn in sorted order: same as the library on the sorted labels
    order = np.argsort(ids, kind="stable")
    expected, _ = add_noise(true_labels=true[order], noise_amount=0.5, sparsity=0.0, seed=0)
    np.testing.assert_array_equal(out["given_label"].to_numpy()[order], expected)
    assert record["realised_noise_rate"] == pytest.approx((out["given_label"].to_numpy() != true).mean())
    assert 0.45 < record["realised_noise_rate"] <= 0.5


def test_stage_zero_amount_passes_through(tmp_path, monkeypatch):
    text = "image_id,given_label,true_label,label_error\na/1.png,1,0,1\na/2.png,0,,\nb/1.png,1,1,0\n"
    path = tmp_path / "labels.csv"
    path.write_text(text)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert run_stage(tmp_path, "human", {"noise_amount": 0, "sparsity": 0, "noise_seed": 0}, ["a", "b"], path, out) == 0
    assert (out / "labels.csv").read_text() == text
    record = json.loads((out / "noise.json").read_text())
    assert record["realised_noise_rate"] == 0 and record["noise_matrix"] is None


def test_stage_refuses_labels_left_without_errors_before_any_training(tmp_path, capsys, monkeypatch):
    """noise_amount 0 on a source without label errors of its own: nothing to benchmark, refused at the first stage
    that knows it (evaluation would refuse the error mask, after every fold had trained)."""
    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error\na/1.png,0,0,0\na/2.png,0,,\nb/1.png,1,1,0\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert run_stage(tmp_path, "clean", {"noise_amount": 0, "sparsity": 0, "noise_seed": 0}, ["a", "b"], path, out) == 1
    assert ("error: crossval.datasets.clean: noise_amount 0.0 leaves 0 of 3 labels wrong; the benchmark needs both "
            "errors and correct labels") in capsys.readouterr().err
    assert not out.exists()


def test_stage_rejects_bad_input(tmp_path, capsys, monkeypatch):
    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error\na/1.png,0,,\nb/1.png,3,,\n")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    noise = {"noise_amount": 0.2, "sparsity": 0, "noise_seed": 0}
    assert run_stage(tmp_path, "d", noise, ["a", "b", "c"], path, out) == 1
    assert capsys.readouterr().err == (f"error: {path}: true_labels must be < num_classes=3, got max 3 (params.yaml: "
                                       "crossval.datasets.d: noise uniform, noise_amount 0.2)\n")
    assert run_stage(tmp_path, "d", {**noise, "noise_amount": 1.2}, ["a", "b", "c"], path, out) == 1
    assert "crossval.datasets.d.noise_amount = 1.2" in capsys.readouterr().err
    assert run_stage(tmp_path, "d", {**noise, "noise_amount": 0.8}, ["a", "b", "c"], path, out) == 1  # trace 0
    assert "int(K * (1 - noise_amount)) >= 1" in capsys.readouterr().err
    write_params(tmp_path, {"crossval.datasets": {"d": {**UNIFORM, **noise}}})
    assert load_stage("noise").main(["other", "--in", str(path), "--classes", "classes.txt", "--images", "images",
                                     "--out", str(out)]) == 1
    assert "crossval.datasets has no 'other'" in capsys.readouterr().err
    assert not out.exists()


def test_read_classes(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("cat\ndog\n")
    assert read_classes(path) == ["cat", "dog"]
    for text, match in [("", "empty"), ("cat\n\ndog\n", "blank"), ("cat\ncat\n", "repeats"), ("cat\n", "at least 2")]:
        path.write_text(text)
        with pytest.raises(DataError, match=match):
            read_classes(path)


# --- instance-dependent noise --------------------------------------------------------------------------------


def test_class_mean_distances_by_hand():
    pixels = np.array([[0, 0], [2, 0], [10, 10]])
    labels = np.array([0, 0, 1])
    # means: class 0 (1, 0), class 1 (10, 10)
    expected = np.array([[1, 200], [1, 164], [181, 0]], dtype=np.float64)
    np.testing.assert_array_equal(class_mean_distances(pixels, labels, 2), expected)


def test_instance_noise_by_hand():
    """Class means 2 and 10. Row 2 (pixel 6) is 16 from both: weight (16/16)^2 = 1. Rows 0 and 1 (pixel 0): 4 from
    their mean, 100 from the other: weight 0.0016 each. Rows 3 and 4 sit on their mean: weight 0. One flip
    (noise_amount 1/5) is row 2 with probability 1 / 1.0032, and it gets the other class."""
    pixels = np.array([[0], [0], [6], [10], [10]])
    true = np.array([0, 0, 0, 1, 1])
    noisy, record = instance_noise(pixels=pixels, true_labels=true, noise_amount=0.2, seed=0, num_classes=2)
    assert noisy.tolist() == [0, 0, 1, 1, 1]
    assert record["num_changed"] == 1 and record["weak_model_accuracy"] == 1.0  # a tie counts for the true class
    assert (instance_noise(pixels=pixels, true_labels=true, noise_amount=0.0, seed=0, num_classes=2)[0] == true).all()


def test_instance_noise_prefers_the_confusable_and_flips_to_the_confused_class():
    """Three clusters, 1 and 2 overlapping, 0 apart: the flips land on 1 <-> 2 and go to the other of the two."""
    rng = np.random.default_rng(5)
    centres = np.array([[0, 0], [100, 100], [110, 110]])
    true = np.repeat(np.arange(3), 400)
    pixels = np.rint(centres[true] + rng.normal(0, 12, (len(true), 2))).astype(np.int64)
    noisy, record = instance_noise(pixels=pixels, true_labels=true, noise_amount=0.2, seed=0, num_classes=3)
    flipped = noisy != true
    assert record["num_changed"] == flipped.sum() == round(0.2 * len(true))
    assert (true[flipped] != 0).mean() > 0.95
    assert set(zip(true[flipped].tolist(), noisy[flipped].tolist())) <= {(1, 2), (2, 1), (0, 1), (0, 2)}
    same, _ = instance_noise(pixels=pixels, true_labels=true, noise_amount=0.2, seed=0, num_classes=3)
    other, _ = instance_noise(pixels=pixels, true_labels=true, noise_amount=0.2, seed=1, num_classes=3)
    np.testing.assert_array_equal(noisy, same)
    assert not np.array_equal(noisy, other)
    with pytest.raises(ValueError, match=r"class\(es\) \[3\]"):
        instance_noise(pixels=pixels, true_labels=true, noise_amount=0.2, seed=0, num_classes=4)


def write_images(folder: Path, ids: list[str], values: list[int]) -> None:
    for image_id, value in zip(ids, values):
        path = folder / "images" / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_stage_instance_noise_reads_the_images(tmp_path, monkeypatch):
    ids = [f"{c}/{i}.png" for c in "ab" for i in range(10)]
    values = [10 * i for i in range(10)] + [150 + 10 * i for i in range(10)]
    write_images(tmp_path, ids, values)
    pixels = weak_model_pixels(tmp_path / "images", ids)
    assert pixels.shape == (20, 3 * WEAK_MODEL_SIDE ** 2) and (pixels[:, 0] == values).all()
    path = write_labels(tmp_path / "labels.csv", pd.DataFrame(
        {"image_id": ids, "given_label": [0] * 10 + [1] * 10, "true_label": "", "label_error": ""}))
    monkeypatch.chdir(tmp_path)
    instance = {"noise": "instance", "noise_amount": 0.1, "noise_seed": 0}
    assert run_stage(tmp_path, "d", instance, ["a", "b"], path, tmp_path / "out") == 0
    out = read_labels_csv(tmp_path / "out" / "labels.csv")
    changed = out["given_label"].to_numpy() != np.repeat([0, 1], 10)
    assert changed.sum() == 2 and (out["label_error"].to_numpy(dtype=bool) == changed).all()
    record = json.loads((tmp_path / "out" / "noise.json").read_text())
    assert record["noise"] == "instance" and record["num_changed"] == 2 and "sparsity" not in record
    # an unreadable image is one error naming it, and nothing is written
    (tmp_path / "images" / "b" / "3.png").write_bytes(b"not a png")
    assert run_stage(tmp_path, "d", instance, ["a", "b"], path, tmp_path / "out2") == 1
    assert not (tmp_path / "out2").exists()

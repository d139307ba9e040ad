"""Bad input is refused on load with one error naming the file and the problem."""

import pickle
import re

import numpy as np
import pytest

from labelbench.data.io import DataError, atomic_path, load_dataset, load_npy, write_csv, write_json

N, K = 12, 3


def make_dataset(root, name="toy", *, n=N, k=K, models=("m1", "m2"), true_labels=True):
    rng = np.random.default_rng(0)
    folder = root / name
    (folder / "pred_probs").mkdir(parents=True)
    true = np.arange(n) % k
    given = true.copy()
    given[:3] = (given[:3] + 1) % k
    np.save(folder / "given_labels.npy", given.astype(np.int64))
    if true_labels:
        np.save(folder / "true_labels.npy", true.astype(np.int64))
    np.save(folder / "label_errors.npy", given != true)
    (folder / "image_ids.txt").write_text("".join(f"img/{i}.png\n" for i in range(n)))
    for model in models:
        p = rng.random((n, k))
        np.save(folder / "pred_probs" / f"{model}.npy", p / p.sum(axis=1, keepdims=True))
    return folder


def test_valid_dataset_loads(tmp_path):
    make_dataset(tmp_path)
    data = load_dataset(tmp_path, "toy")
    assert data.num_classes == K and data.num_errors == 3
    assert sorted(data.pred_probs) == ["m1", "m2"]
    assert data.given_labels.dtype == np.int64


def expect_error(tmp_path, match, path_part):
    with pytest.raises(DataError, match=match) as info:
        load_dataset(tmp_path, "toy")
    assert path_part in str(info.value), str(info.value)
    return info.value


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda p: p.__setitem__((0, 0), np.nan), "NaN or inf"),
        (lambda p: p.__setitem__((1, 2), np.inf), "NaN or inf"),
        (lambda p: p.__setitem__((0, 0), 1.5), r"outside \[0, 1\]"),
        (lambda p: p.__setitem__((0, 0), -0.1), r"outside \[0, 1\]"),
        (lambda p: p.__setitem__((0, slice(None)), [0.5, 0.2, 0.2]), "do not sum to 1"),
        (lambda p: p[:, 0], r"expected a 2-D \(N, K\) array, got shape \(12,\)"),
        (lambda p: p[:, :1] / p[:, :1], r"empty or fewer than 2 classes: shape \(12, 1\)"),
        (lambda p: (p > 0.5).astype(np.int64), "probabilities must be floats, got dtype int64"),
    ],
)
def test_bad_pred_probs_values(tmp_path, corrupt, match):
    folder = make_dataset(tmp_path)
    path = folder / "pred_probs" / "m2.npy"
    p = np.load(path)
    changed = corrupt(p)  # in place (None), or a new array
    np.save(path, p if changed is None else changed)
    expect_error(tmp_path, match, "m2.npy")


def test_labels_of_more_than_one_dimension_are_refused(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "given_labels.npy", np.load(folder / "given_labels.npy").reshape(-1, 1))
    expect_error(tmp_path, r"labels must be a non-empty 1-D array, got shape \(12, 1\)", "given_labels.npy")


def test_row_sums_within_1e_4_accepted_and_beyond_it_refused(tmp_path):
    """Rows deviate from 1 by up to 2.4e-7 in the published float32 pred_probs (accepted, values kept); 2e-4 is
    refused, naming the row and its sum."""
    folder = make_dataset(tmp_path)
    path = folder / "pred_probs" / "m1.npy"
    p = np.load(path)
    p[0, 0] += 2.4e-7  # published rows deviate this much
    p[1, 0] += 0.99e-4
    np.save(path, p)
    np.testing.assert_array_equal(load_dataset(tmp_path, "toy").pred_probs["m1"], p)
    p[3, 1] += 2e-4
    np.save(path, p)
    expect_error(tmp_path, rf"1 rows do not sum to 1 within 0.0001 \(row 3 sums to {float(p[3].sum())!r}\)", "m1.npy")


def test_shapes_that_disagree(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "pred_probs" / "m1.npy", np.full((N - 1, K), 1 / K))
    expect_error(tmp_path, f"has {N - 1} rows but given_labels.npy has {N}", "m1.npy")


def test_image_ids_count_disagrees(tmp_path):
    folder = make_dataset(tmp_path)
    (folder / "image_ids.txt").write_text("a.png\n")
    expect_error(tmp_path, "has 1 lines", "image_ids.txt")


def test_models_disagree_on_classes(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "pred_probs" / "m2.npy", np.full((N, K + 1), 1 / (K + 1)))
    expect_error(tmp_path, "disagree on the number of classes", "pred_probs")


def test_label_outside_range(tmp_path):
    folder = make_dataset(tmp_path, true_labels=False)
    given = np.load(folder / "given_labels.npy")
    given[4] = K
    np.save(folder / "given_labels.npy", given)
    expect_error(tmp_path, rf"labels outside \[0, {K}\)", "given_labels.npy")


def test_negative_label(tmp_path):
    folder = make_dataset(tmp_path, true_labels=False)
    given = np.load(folder / "given_labels.npy")
    given[0] = -1
    np.save(folder / "given_labels.npy", given)
    expect_error(tmp_path, "labels outside", "given_labels.npy")


def test_float_labels_refused(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "given_labels.npy", np.load(folder / "given_labels.npy").astype(float))
    expect_error(tmp_path, "must be integers", "given_labels.npy")


def test_empty_arrays(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "given_labels.npy", np.array([], dtype=np.int64))
    expect_error(tmp_path, r"labels must be a non-empty 1-D array, got shape \(0,\)", "given_labels.npy")


def test_pickled_npy_refused(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "pred_probs" / "m1.npy", np.array([{"a": 1}] * N, dtype=object), allow_pickle=True)
    expect_error(tmp_path, "pickled", "m1.npy")


def test_raw_pickle_file_refused(tmp_path):
    folder = make_dataset(tmp_path)
    (folder / "label_errors.npy").write_bytes(pickle.dumps(np.zeros(N, bool)))
    expect_error(tmp_path, "pickle", "label_errors.npy")


def test_truncated_file(tmp_path):
    folder = make_dataset(tmp_path)
    path = folder / "pred_probs" / "m1.npy"
    path.write_bytes(path.read_bytes()[:-40])
    expect_error(tmp_path, "not a readable .npy", "m1.npy")


def npy_header(header: str) -> bytes:
    """A version 1.0 .npy header holding ``header`` (padded as np.save pads it)."""
    text = header.encode("latin1") + b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize("content, match", [
    # 24 TB announced: refused from the header, before numpy tries to allocate it (MemoryError)
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 3), }") + bytes(48),
     r"header says shape \(1000000000000, 3\) of float64 \(24000000000000 bytes of data\) but the file holds 48"),
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 'x\"\"\"") + bytes(24),
     r"not a readable \.npy array: unreadable header"),
    (npy_header("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)\x00((") + bytes(24), "unreadable header"),
    (npy_header("{'descr': 'zz', 'fortran_order': False, 'shape': (12, 3), }"), "unreadable header"),
    (b"0.1 0.2 0.7\n" * N, r"not an \.npy file: it starts with b'0\.1 0\.', not b'\\x93NUMPY'"),
    (b"", r"not a readable \.npy array \(empty file\)"),
], ids=["huge-shape", "token-error", "garbage-bytes", "bad-dtype", "text-file", "empty-file"])
def test_malformed_npy_is_refused_from_its_header(tmp_path, content, match):
    folder = make_dataset(tmp_path)
    (folder / "pred_probs" / "m1.npy").write_bytes(content)
    error = expect_error(tmp_path, match, "m1.npy")
    assert "pickle" not in str(error)


def test_npz_archive_refused(tmp_path):
    folder = make_dataset(tmp_path)
    np.savez(folder / "archive.npz", a=np.zeros(N))
    (folder / "archive.npz").replace(folder / "label_errors.npy")
    expect_error(tmp_path, "is an .npz archive", "label_errors.npy")


def test_error_mask_must_match_true_labels(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "label_errors.npy", np.arange(N) % 4 == 3)  # errors and correct labels, but not those
    expect_error(tmp_path, "disagrees with given_labels != true_labels", "label_errors.npy")


@pytest.mark.parametrize("errors", [0, N])
def test_error_mask_needs_errors_and_correct_labels(tmp_path, errors):
    """AUROC and AUPRC need both: refused on load, naming the file (not a ranking metric's error later)."""
    folder = make_dataset(tmp_path, true_labels=False)
    np.save(folder / "label_errors.npy", np.arange(N) < errors)
    expect_error(tmp_path, f"marks {errors} of {N} examples as label errors; a benchmark needs both", "label_errors.npy")


def test_error_mask_dtype(tmp_path):
    folder = make_dataset(tmp_path)
    np.save(folder / "label_errors.npy", np.zeros(N, np.int64))
    expect_error(tmp_path, "expected dtype bool", "label_errors.npy")


def test_missing_files(tmp_path):
    folder = make_dataset(tmp_path)
    (folder / "image_ids.txt").unlink()
    expect_error(tmp_path, "file not found", "image_ids.txt")
    with pytest.raises(DataError, match=r"nope: dataset folder not found \(`dvc pull` brings"):
        load_dataset(tmp_path, "nope")
    with pytest.raises(DataError, match=re.escape(f"{folder / 'pred_probs' / 'resnet.npy'}: file not found; "
                                                  "pred_probs/ holds m1, m2: the models params.yaml lists for")):
        load_dataset(tmp_path, folder.name, models=["m1", "resnet"])
    with pytest.raises(DataError, match="file not found"):
        load_npy(tmp_path / "absent.npy")


def test_atomic_write_leaves_nothing_on_crash(tmp_path):
    target = tmp_path / "out" / "table.json"
    write_json(target, {"a": 1})
    before = target.read_text()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.json"]


def test_write_csv_round_trips_floats_exactly(tmp_path):
    import pandas as pd

    values = np.random.default_rng(1).random(1000)
    write_csv(tmp_path / "x.csv", pd.DataFrame({"v": values}))
    assert np.array_equal(pd.read_csv(tmp_path / "x.csv", float_precision="round_trip")["v"].to_numpy(), values)


def test_a_byte_order_mark_is_no_part_of_the_first_line_and_a_folder_is_no_file(tmp_path):
    """Text files saved by Windows editors start with a UTF-8 BOM: the first image id is read without it. A folder
    where a file belongs is named as such, not "file not found"."""
    folder = make_dataset(tmp_path)
    ids = (folder / "image_ids.txt").read_text()
    (folder / "image_ids.txt").write_text("\ufeff" + ids, encoding="utf-8")
    assert load_dataset(tmp_path, "toy").image_ids == ids.splitlines()
    (folder / "pred_probs" / "m2.npy").unlink()
    (folder / "pred_probs" / "m2.npy").mkdir()
    expect_error(tmp_path, "m2.npy: is a folder, not a file", "m2.npy")


def test_an_image_id_listed_twice_or_outside_images_is_refused_by_the_loader(tmp_path):
    """Every dataset loaded (published, trained, added by hand without add-dataset): a repeated id would make
    two rows of every ranked list the same example, and an id outside images/ would have the issues stage draw a
    file from elsewhere."""
    folder = make_dataset(tmp_path)
    ids = (folder / "image_ids.txt").read_text().splitlines()
    (folder / "image_ids.txt").write_text("\n".join([*ids[:-1], ids[0]]) + "\n")
    expect_error(tmp_path, rf"1 repeated image id\(s\), e.g. \['{ids[0]}'\]", "image_ids.txt")
    (folder / "image_ids.txt").write_text("\n".join(["../../etc/passwd", *ids[1:]]) + "\n")
    expect_error(tmp_path, r"image ids must be relative paths of plain names inside images/, got \['../../etc/passwd'\]",
                 "image_ids.txt")

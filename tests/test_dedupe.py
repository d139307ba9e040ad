"""Exact-duplicate removal on generated image folders, and the labels.csv reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from labelbench.train.dedupe import dedupe, find_duplicates
from labelbench.data.io import image_id_sort_key, read_labels_csv
from labelbench.data.io import DataError
from conftest import load_stage


def write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_raw(root: Path, images: dict[str, int], labels: pd.DataFrame | None = None) -> Path:
    """images: image_id -> pixel seed (equal seeds -> identical bytes)."""
    for image_id, seed in images.items():
        write_png(root / "images" / image_id, seed)
    if labels is None:
        ids = list(images)
        labels = pd.DataFrame({
            "image_id": ids,
            "given_label": [0 if "/a/" in i else 1 for i in ids],
            "true_label": [""] * len(ids),
            "label_error": [""] * len(ids),
        })
    labels.to_csv(root / "labels.csv", index=False)
    (root / "classes.txt").write_text("a\nb\n")
    return root


# Listed deliberately out of sorted order; seeds 1 and 2 each appear three/two times.
IMAGES = {
    "train/b/0003.png": 1,
    "train/a/0002.png": 1,
    "train/a/0001.png": 3,
    "train/b/0001.png": 2,
    "train/a/0003.png": 1,
    "train/b/0002.png": 2,
    "train/b/0004.png": 4,
}


def test_removes_all_but_first_by_sorted_path(tmp_path):
    raw = make_raw(tmp_path / "raw", IMAGES)
    result = dedupe(raw_dir=raw)
    assert result.removed.to_dict("records") == [
        {"image_id": "train/a/0003.png", "duplicate_of": "train/a/0002.png"},
        {"image_id": "train/b/0002.png", "duplicate_of": "train/b/0001.png"},
        {"image_id": "train/b/0003.png", "duplicate_of": "train/a/0002.png"},
    ]
    # input order kept, minus removed rows
    assert result.labels["image_id"].tolist() == [
        "train/a/0002.png", "train/a/0001.png", "train/b/0001.png", "train/b/0004.png"
    ]
    assert result.unlisted == []


def test_stage_writes_same_columns_and_values(tmp_path):
    labels = pd.DataFrame({
        "image_id": ["x/1.png", "x/2.png", "y/1.png"],
        "given_label": [0, 1, 1],
        "true_label": ["0", "", "0"],
        "label_error": ["0", "", "1"],
    })
    raw = make_raw(tmp_path / "raw", {"x/1.png": 5, "x/2.png": 6, "y/1.png": 6}, labels)
    out = tmp_path / "out"
    assert load_stage("dedupe").main(["--in", str(raw), "--out", str(out)]) == 0
    written = (out / "labels.csv").read_text().splitlines()
    original = (raw / "labels.csv").read_text().splitlines()
    assert written == original[:3]  # header + rows 1, 2; y/1.png duplicates x/2.png
    assert (out / "removed.csv").read_text().splitlines() == ["image_id,duplicate_of", "y/1.png,x/2.png"]
    assert not (out / "images").exists()
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "removed.csv"]


def test_no_duplicates_gives_empty_removed_with_header(tmp_path):
    raw = make_raw(tmp_path / "raw", {"a/1.png": 1, "a/2.png": 2})
    out = tmp_path / "out"
    assert load_stage("dedupe").main(["--in", str(raw), "--out", str(out)]) == 0
    assert (out / "removed.csv").read_text().strip() == "image_id,duplicate_of"
    assert len(pd.read_csv(out / "labels.csv")) == 2


def test_missing_image_names_it(tmp_path):
    raw = make_raw(tmp_path / "raw", IMAGES)
    (raw / "images" / "train/b/0004.png").unlink()
    with pytest.raises(DataError, match=r"train/b/0004\.png") as info:
        dedupe(raw_dir=raw)
    assert info.value.path == str(raw / "images")
    assert str(info.value).endswith(f"listed in {raw / 'labels.csv'}: 'train/b/0004.png'")
    with pytest.raises(DataError, match="0004"):
        find_duplicates(image_dir=raw / "images", image_ids=list(IMAGES))


def test_unlisted_image_is_ignored_and_reported(tmp_path, capsys):
    raw = make_raw(tmp_path / "raw", {"a/1.png": 1, "a/2.png": 2})
    write_png(raw / "images" / "a" / "9.png", 1)  # identical to a/1.png but not listed
    result = dedupe(raw_dir=raw)
    assert result.unlisted == ["a/9.png"]
    assert result.removed.empty and len(result.labels) == 2
    assert load_stage("dedupe").main(["--in", str(raw), "--out", str(tmp_path / "out")]) == 0
    assert "ignored 1 image(s) not in labels.csv" in capsys.readouterr().err


def test_stage_reports_data_error(tmp_path, capsys):
    raw = make_raw(tmp_path / "raw", {"a/1.png": 1})
    (raw / "images" / "a" / "1.png").unlink()
    assert load_stage("dedupe").main(["--in", str(raw), "--out", str(tmp_path / "out")]) == 1
    assert "a/1.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sort_key_is_imagefolder_order():
    ids = ["t/cat-x/1.png", "t/cat/2.png", "t/cat/10.png", "t/ant/9.png"]
    assert sorted(ids, key=image_id_sort_key) == ["t/ant/9.png", "t/cat/10.png", "t/cat/2.png", "t/cat-x/1.png"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is empty"),
        ("image_id,given_label\nx.png,0\n", r"missing column\(s\) \['true_label', 'label_error'\]"),
        ("image_id,given_label,true_label,label_error\n", "no rows"),
        ("image_id,given_label,true_label,label_error\nx.png,-1,,\n", r"given_label must be integers in \[0, 10\*\*18\)"),
        ("image_id,given_label,true_label,label_error\nx.png,99999999999999999999999,,\n",
         r"given_label must be integers in \[0, 10\*\*18\); found \['99999999999999999999999'\]"),
        ("image_id,given_label,true_label,label_error\nx.png,1.5,,\n", "given_label must be integers"),
        ("image_id,given_label,true_label,label_error\nx.png,\u0663,,\n", r"given_label must be integers.*'\u0663'"),
        ("image_id,given_label,true_label,label_error\nx.png,,,\n", "given_label is empty"),
        ("image_id,given_label,true_label,label_error\nx.png,0,cat,\n", "true_label must be integers"),
        ("image_id,given_label,true_label,label_error\nx.png,0,,2\n", "label_error must be 0, 1 or empty"),
        ("image_id,given_label,true_label,label_error\nx.png,0,1,0\n", "label_error disagrees"),
        ("image_id,given_label,true_label,label_error\nx.png,0,,\nx.png,1,,\n", "repeated image id"),
        ("image_id,given_label,true_label,label_error\n,0,,\n", "empty image_id"),
        ("image_id,given_label,true_label,label_error\n../x.png,0,,\n", "relative path"),
    ],
)
def test_labels_csv_validation(tmp_path, text, match):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_labels_csv(path)
    assert info.value.path == str(path)


def test_labels_csv_saved_by_excel_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffimage_id,given_label,true_label,label_error\na.png,2,2,0\n", encoding="utf-8")
    assert read_labels_csv(path).columns[0] == "image_id"


def test_labels_csv_types(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error,note\na.png,2,2,0,hi\nb.png,1,,,\n")
    frame = read_labels_csv(path)
    assert list(frame.columns) == ["image_id", "given_label", "true_label", "label_error", "note"]
    assert frame["given_label"].dtype == np.int64
    assert frame["true_label"].tolist()[0] == 2 and pd.isna(frame["true_label"][1])
    assert frame["note"].tolist() == ["hi", ""]
    with pytest.raises(DataError, match="file not found"):
        read_labels_csv(tmp_path / "nope.csv")

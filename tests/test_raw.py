"""The raw-data stage: converters on small archives built here in the real formats, bad
input, and the required agreement with the published reference files."""

from __future__ import annotations

import csv
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import load_stage
from labelbench.data.io import DataError
from labelbench.data.raw.registry import DATASETS, Source, build, source_path
from labelbench.data.raw.cifar import (
    CIFAR10_CLASSES,
    cifar10n_image_id,
    cifar10n_labels,
    cifar10s_labels,
    cifar2png_ids,
    convert_cifar10,
    convert_cifar10n,
    convert_cifar10s,
)
from labelbench.data.raw.digits import convert_digits
from labelbench.data.raw.food import convert_food101n
from labelbench.data.raw.layout import LABEL_COLUMNS, read_raw
from labelbench.data.raw.roman import ROMAN_CLASSES, convert_roman, roman_review_labels
from test_train import write_params

PUBLISHED = Path(__file__).resolve().parents[1].parent / "shared" / "published"


def published(*parts: str) -> Path:
    path = PUBLISHED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"published reference file {path} is absent", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    return path


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == LABEL_COLUMNS
        return list(reader)


def no_leftovers(parent: Path, keep: set[str]) -> None:
    assert sorted(p.name for p in parent.iterdir()) == sorted(keep)


# --- fake CIFAR-10 tarball -------------------------------------------------------------------


def make_cifar_tar(path: Path, per_batch: int = 4, *, seed: int = 0, replace=None) -> tuple:
    """Write a small ``cifar-10-binary.tar.gz`` (records: a label byte, then the R, G, B planes); return (data rows
    (N, 3072), labels (N,))."""
    rng = np.random.default_rng(seed)
    members, rows, labels = {}, [], []
    for b in range(1, 6):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        lab = rng.integers(0, 10, size=per_batch).astype(np.uint8)
        rows.append(data)
        labels += lab.tolist()
        members[f"data_batch_{b}.bin"] = np.column_stack([lab, data]).tobytes()
    members["test_batch.bin"] = bytes(3073)
    members["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()  # blank lines at the end, as sent
    members.update(replace or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():  # a blob of None: a folder of that name
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            if blob is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return np.concatenate(rows), np.array(labels)


@pytest.fixture(scope="module")
def cifar_raw(tmp_path_factory):
    """A converted fake CIFAR-10 (20 images) shared by the CIFAR-10N/10S tests."""
    root = tmp_path_factory.mktemp("cifar")
    rows, labels = make_cifar_tar(root / "cifar-10-binary.tar.gz", per_batch=4, seed=1)
    convert_cifar10(archive=root / "cifar-10-binary.tar.gz", out=root / "raw")
    return root / "raw", rows, labels


def test_cifar10_layout_order_and_pixels(tmp_path):
    rows, labels = make_cifar_tar(tmp_path / "c.tar.gz", per_batch=3)
    table = convert_cifar10(archive=tmp_path / "c.tar.gz", out=tmp_path / "out")
    assert len(table) == 15
    csv_rows = read_rows(tmp_path / "out")
    assert [r["image_id"] for r in csv_rows] == [f"train/image_id_{i}.png" for i in range(15)]
    assert [int(r["given_label"]) for r in csv_rows] == labels.tolist()
    assert [int(r["true_label"]) for r in csv_rows] == labels.tolist()
    assert {r["label_error"] for r in csv_rows} == {"0"}
    assert (tmp_path / "out" / "classes.txt").read_text().splitlines() == CIFAR10_CLASSES
    for i in (0, 4, 14):  # batch 1 first, then batch 2 ...; planes R, G, B
        with Image.open(tmp_path / "out" / "images" / f"train/image_id_{i}.png") as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
            got = np.asarray(im)
        np.testing.assert_array_equal(got, rows[i].reshape(3, 32, 32).transpose(1, 2, 0))
    assert len(list((tmp_path / "out" / "images" / "train").iterdir())) == 15
    no_leftovers(tmp_path, {"c.tar.gz", "out"})
    again = read_raw(tmp_path / "out")
    assert again.image_ids == table.image_ids and np.array_equal(again.given_labels, labels)


def test_cifar10_replaces_an_old_output_whole(tmp_path):
    make_cifar_tar(tmp_path / "c.tar.gz", per_batch=1)
    (tmp_path / "out" / "images").mkdir(parents=True)
    (tmp_path / "out" / "stale.txt").write_text("old")
    convert_cifar10(archive=tmp_path / "c.tar.gz", out=tmp_path / "out")
    assert not (tmp_path / "out" / "stale.txt").exists()
    no_leftovers(tmp_path, {"c.tar.gz", "out"})


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_in_place_of_a_batch_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"data": _Evil(marker), "labels": [0]}, protocol=2)
    make_cifar_tar(tmp_path / "c.tar.gz", per_batch=1, replace={"data_batch_3.bin": evil})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "previous.txt").write_text("kept")
    with pytest.raises(DataError, match=rf"data_batch_3\.bin: {len(evil)} bytes is no whole number of 3073-byte"):
        convert_cifar10(archive=tmp_path / "c.tar.gz", out=tmp_path / "out")
    assert not marker.exists()
    assert (tmp_path / "out" / "previous.txt").read_text() == "kept"  # old output untouched
    no_leftovers(tmp_path, {"c.tar.gz", "out"})


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_tar_is_a_data_error_and_writes_nothing(tmp_path, damage):
    make_cifar_tar(tmp_path / "c.tar.gz", per_batch=2)
    blob = (tmp_path / "c.tar.gz").read_bytes()
    (tmp_path / "c.tar.gz").write_bytes(blob[: len(blob) // 2] if damage == "truncated" else b"not a tar" * 50)
    with pytest.raises(DataError) as err:
        convert_cifar10(archive=tmp_path / "c.tar.gz", out=tmp_path / "out")
    assert str(tmp_path / "c.tar.gz") in str(err.value)
    no_leftovers(tmp_path, {"c.tar.gz"})


@pytest.mark.parametrize("member, blob, message", [
    ("data_batch_2.bin", bytes(3073 * 2 - 1), r"data_batch_2\.bin: 6145 bytes is no whole number of 3073-byte records"),
    ("data_batch_2.bin", b"", r"data_batch_2\.bin: 0 bytes is no whole number"),
    ("batches.meta.txt", "airplane\nautomobile\n".encode(), r"batches\.meta\.txt: 2 class name\(s\) for labels up to "),
    ("batches.meta.txt", b"\xff\xfe", r"batches\.meta\.txt: not UTF-8 text"),
    ("data_batch_4.bin", None, r"data_batch_4\.bin: not a regular file"),
])
def test_a_bad_batch_or_class_list_names_the_member(tmp_path, member, blob, message):
    make_cifar_tar(tmp_path / "c.tar.gz", per_batch=2, seed=3, replace={member: blob})
    with pytest.raises(DataError, match=r"c\.tar\.gz::cifar-10-batches-bin/" + message):
        convert_cifar10(archive=tmp_path / "c.tar.gz", out=tmp_path / "out")
    no_leftovers(tmp_path, {"c.tar.gz"})


# --- CIFAR-10N / CIFAR-10S -----------------------------------------------------------------


def write_npz(path: Path, clean: np.ndarray, seed: int = 2) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"clean_label": clean}
    for key in ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3"):
        arrays[key] = np.where(rng.random(clean.size) < 0.3, rng.integers(0, 10, clean.size), clean).astype(np.int64)
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("variant,key", [("agg", "aggre_label"), ("worst", "worse_label")])
def test_cifar10n_relabels_cifar10_images(tmp_path, cifar_raw, variant, key):
    """From CIFAR-10's archive (no raw stage reads another's output), the very PNGs that cifar-10 is written with."""
    raw, _, labels = cifar_raw
    arrays = write_npz(tmp_path / "h.npz", labels)
    table = convert_cifar10n(archive=raw.parent / "cifar-10-binary.tar.gz", human_labels=tmp_path / "h.npz",
                             variant=variant, out=tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert [int(r["given_label"]) for r in rows] == arrays[key].tolist()
    assert [int(r["true_label"]) for r in rows] == labels.tolist()
    assert [int(r["label_error"]) for r in rows] == (arrays[key] != labels).astype(int).tolist()
    assert table.image_ids == [r["image_id"] for r in rows]
    for image_id in table.image_ids:
        assert (tmp_path / "out/images" / image_id).read_bytes() == (raw / "images" / image_id).read_bytes()


def test_cifar10n_count_mismatch_names_the_npz(tmp_path, cifar_raw):
    raw, _, labels = cifar_raw
    archive = raw.parent / "cifar-10-binary.tar.gz"
    write_npz(tmp_path / "h.npz", labels[:-1])
    with pytest.raises(DataError, match=r"h\.npz: has 19 labels but .*cifar-10-binary\.tar\.gz has 20 images"):
        convert_cifar10n(archive=archive, human_labels=tmp_path / "h.npz", variant="agg", out=tmp_path / "out")
    write_npz(tmp_path / "h.npz", (labels + 1) % 10)
    with pytest.raises(DataError, match="clean_label disagrees"):
        convert_cifar10n(archive=archive, human_labels=tmp_path / "h.npz", variant="agg", out=tmp_path / "out")
    write_npz(tmp_path / "h.npz", labels)
    with pytest.raises(DataError, match=r"nope\.tar\.gz: file not found"):
        convert_cifar10n(archive=tmp_path / "nope.tar.gz", human_labels=tmp_path / "h.npz", variant="agg",
                         out=tmp_path / "out")
    make_cifar_tar(tmp_path / "other.tar.gz", per_batch=4, seed=1, replace={
        "batches.meta.txt": "".join(f"class{i}\n" for i in range(10)).encode()})
    with pytest.raises(DataError, match=r"other\.tar\.gz::cifar-10-batches-bin/batches\.meta\.txt: expected the "
                                        r"CIFAR-10 classes"):
        convert_cifar10n(archive=tmp_path / "other.tar.gz", human_labels=tmp_path / "h.npz", variant="agg",
                         out=tmp_path / "out")
    np.savez(tmp_path / "p.npz", clean_label=np.array([object()], dtype=object))
    with pytest.raises(DataError, match="p.npz"):
        cifar10n_labels(human_labels=tmp_path / "p.npz", variant="agg")
    assert not (tmp_path / "out").exists()


def test_cifar10s_joins_csv_with_cifar2png_names(tmp_path, cifar_raw):
    raw, rows, labels = cifar_raw
    names = cifar2png_ids(labels, CIFAR10_CLASSES)
    noisy = (labels + np.arange(20) % 3) % 10
    order = np.argsort(names)  # the authors' CSV is sorted by path
    with open(tmp_path / "n.csv", "w", newline="") as fh:
        fh.write("image,label\n")
        for i in order:
            fh.write(f"/Data/cifar10_png/{names[i]},{noisy[i]}\n")
    archive = raw.parent / "cifar-10-binary.tar.gz"
    table = convert_cifar10s(archive=archive, noisy_csv=tmp_path / "n.csv", out=tmp_path / "out")
    assert table.image_ids == sorted(names)
    got = {r["image_id"]: r for r in read_rows(tmp_path / "out")}
    for i, name in enumerate(names):
        assert int(got[name]["given_label"]) == noisy[i] and int(got[name]["true_label"]) == labels[i]
        with Image.open(tmp_path / "out/images" / name) as im:
            np.testing.assert_array_equal(np.asarray(im), rows[i].reshape(3, 32, 32).transpose(1, 2, 0))
        assert (tmp_path / "out/images" / name).read_bytes() == (raw / "images" / cifar10n_image_id(i)).read_bytes()
    with open(tmp_path / "n.csv", "a") as fh:
        fh.write("/Data/cifar10_png/train/truck/0999.png,1\n")
    with pytest.raises(DataError, match=r"n\.csv: has 21 labels"):
        convert_cifar10s(archive=archive, noisy_csv=tmp_path / "n.csv", out=tmp_path / "out2")
    (tmp_path / "bad.csv").write_text("image,label\n/Data/cifar10_png/train/../x/0001.png,1\n")
    with pytest.raises(DataError, match=r"bad\.csv: line 2"):
        cifar10s_labels(noisy_csv=tmp_path / "bad.csv")


# --- roman numerals --------------------------------------------------------------------------


def png_bytes(seed: int, mode: str = "L") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(6, 5), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


ROMAN_ROWS = [  # file_path, given_label, label_error
    ("train/i/aa.png", "i", False),
    ("train/iv/bb.png", "iv", True),
    ("train/ix/cc.png", "ix", False),
    ("train/ii/dd.png", "ii", True),
    ("val/x/ee.png", "x", False),
    ("val/v/ff.png", "v", False),
]


def write_review(path: Path, rows) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(["image", "label_error", "action", "given_label", "corrected_label", "file_path", "image_public_url"])
    for file_path, label, error in rows:
        ws.append([None, error, "Fix Data Label" if error else "Keep Data", label, None, file_path, "https://x/" + file_path])
    links = wb.create_sheet("Links")
    links.append(["Link to datasets"])
    wb.save(path)


def write_roman_zip(path: Path, ids, prefix: str = "andrew-ng-dcai-comp-2021-data/", override=None) -> dict:
    blobs = {i: png_bytes(n, "RGB" if n % 2 else "L") for n, i in enumerate(ids)}
    blobs.update(override or {})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(prefix + "train/", b"")
        zf.writestr("__MACOSX/" + prefix + "train/i/._aa.png", b"junk")
        for image_id, blob in blobs.items():
            zf.writestr(prefix + image_id, blob)
    return blobs


def test_roman_joins_sheet_and_keeps_png_bytes(tmp_path):
    write_review(tmp_path / "r.xlsx", ROMAN_ROWS)
    blobs = write_roman_zip(tmp_path / "b.zip", [r[0] for r in ROMAN_ROWS])
    table = convert_roman(bundle=tmp_path / "b.zip", review=tmp_path / "r.xlsx", out=tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert [r["image_id"] for r in rows] == [  # ImageFolder order: split, class folder name, file
        "train/i/aa.png", "train/ii/dd.png", "train/iv/bb.png", "train/ix/cc.png", "val/v/ff.png", "val/x/ee.png",
    ]
    assert [int(r["given_label"]) for r in rows] == [0, 1, 3, 8, 4, 9]
    assert [r["label_error"] for r in rows] == ["0", "1", "1", "0", "0", "0"]
    assert {r["true_label"] for r in rows} == {""}
    assert (tmp_path / "out/classes.txt").read_text().splitlines() == ROMAN_CLASSES
    for image_id in table.image_ids:
        assert (tmp_path / "out/images" / image_id).read_bytes() == blobs[image_id]
    no_leftovers(tmp_path, {"r.xlsx", "b.zip", "out"})


def test_roman_bad_inputs(tmp_path):
    ids = [r[0] for r in ROMAN_ROWS]
    write_review(tmp_path / "r.xlsx", ROMAN_ROWS)
    write_roman_zip(tmp_path / "missing.zip", ids[:-1])
    with pytest.raises(DataError, match=r"missing\.zip: 1 reviewed image\(s\) missing"):
        convert_roman(bundle=tmp_path / "missing.zip", review=tmp_path / "r.xlsx", out=tmp_path / "out")
    write_roman_zip(tmp_path / "extra.zip", ids + ["val/i/zz.png"])
    with pytest.raises(DataError, match=r"extra\.zip: 1 image\(s\) have no row"):
        convert_roman(bundle=tmp_path / "extra.zip", review=tmp_path / "r.xlsx", out=tmp_path / "out")
    write_roman_zip(tmp_path / "broken.zip", ids, override={"val/v/ff.png": b"\x89PNG\r\n\x1a\n broken"})
    with pytest.raises(DataError, match=r"broken\.zip::.*val/v/ff\.png: not a readable image"):
        convert_roman(bundle=tmp_path / "broken.zip", review=tmp_path / "r.xlsx", out=tmp_path / "out")
    (tmp_path / "trunc.zip").write_bytes((tmp_path / "missing.zip").read_bytes()[:100])
    with pytest.raises(DataError, match=r"trunc\.zip: corrupt or truncated zip"):
        convert_roman(bundle=tmp_path / "trunc.zip", review=tmp_path / "r.xlsx", out=tmp_path / "out")
    write_review(tmp_path / "evil.xlsx", ROMAN_ROWS + [("train/i/../../../x.png", "i", False)])
    with pytest.raises(DataError, match=r"evil\.xlsx: row 8: file_path"):
        roman_review_labels(review=tmp_path / "evil.xlsx")
    write_review(tmp_path / "wrong.xlsx", [("train/i/aa.png", "ii", False)])
    with pytest.raises(DataError, match="given_label 'ii' but the file is in folder 'i'"):
        roman_review_labels(review=tmp_path / "wrong.xlsx")
    assert not (tmp_path / "out").exists()


# --- Food-101N -----------------------------------------------------------------------------


def jpeg_bytes(seed: int, mode: str = "RGB") -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="JPEG")
    return buf.getvalue()


def write_food_zip(path: Path, *, train_tsv: str, val_tsv: str, images: dict) -> None:
    root = "Food-101N_release/"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(root + "meta/classes.txt", "class_name\napple_pie\nbaby_back_ribs\nwaffles\n")
        zf.writestr(root + "meta/verified_train.tsv", train_tsv)
        zf.writestr(root + "meta/verified_val.tsv", val_tsv)
        for key, blob in images.items():
            zf.writestr(root + "images/" + key, blob)


def test_food101n_keeps_only_verified_examples(tmp_path):
    images = {k: jpeg_bytes(n, "CMYK" if n == 2 else "RGB") for n, k in enumerate(
        ["apple_pie/a1.jpg", "apple_pie/a2.jpg", "waffles/w1.jpg", "baby_back_ribs/b1.jpg", "waffles/unverified.jpg"])}
    train = "class_name/key\tverification_label\nwaffles/w1.jpg\t0\napple_pie/a2.jpg\t1\napple_pie/a1.jpg\t1\n"
    val = "class_name/key\tverification_label\r\nbaby_back_ribs/b1.jpg\t0\r\n"
    write_food_zip(tmp_path / "f.zip", train_tsv=train, val_tsv=val, images=images)
    convert_food101n(archive=tmp_path / "f.zip", out=tmp_path / "out")
    rows = read_rows(tmp_path / "out")
    assert [(r["image_id"], r["given_label"], r["true_label"], r["label_error"]) for r in rows] == [
        ("train/apple_pie/a1.png", "0", "", "0"),
        ("train/apple_pie/a2.png", "0", "", "0"),
        ("train/waffles/w1.png", "2", "", "1"),
        ("val/baby_back_ribs/b1.png", "1", "", "1"),
    ]
    assert (tmp_path / "out/classes.txt").read_text().splitlines() == ["apple_pie", "baby_back_ribs", "waffles"]
    with Image.open(tmp_path / "out/images/train/apple_pie/a2.png") as im, Image.open(io.BytesIO(images["apple_pie/a2.jpg"])) as src:
        assert im.format == "PNG"
        np.testing.assert_array_equal(np.asarray(im), np.asarray(src))
    with Image.open(tmp_path / "out/images/train/waffles/w1.png") as im:  # CMYK JPEG stored as RGB
        assert im.mode == "RGB"
    assert not (tmp_path / "out/images/train/waffles/unverified.png").exists()

    write_food_zip(tmp_path / "g.zip", train_tsv=train + "waffles/gone.jpg\t1\n", val_tsv=val, images=images)
    with pytest.raises(DataError, match=r"g\.zip: verified image Food-101N_release/images/waffles/gone\.jpg missing"):
        convert_food101n(archive=tmp_path / "g.zip", out=tmp_path / "out2")
    write_food_zip(tmp_path / "h.zip", train_tsv=train + "waffles/w1.jpg\t2\n", val_tsv=val, images=images)
    with pytest.raises(DataError, match=r"verified_train\.tsv: line 5: verification_label '2'"):
        convert_food101n(archive=tmp_path / "h.zip", out=tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


# --- digits, reading, CLI ------------------------------------------------------------------


def test_digits_offline_default(tmp_path):
    from sklearn.datasets import load_digits

    table = convert_digits(out=tmp_path / "out")
    digits = load_digits()
    assert len(table) == 1797
    rows = read_rows(tmp_path / "out")
    assert rows[0]["image_id"] == "train/0/0000.png"
    assert [r["image_id"] for r in rows] == sorted(r["image_id"] for r in rows)
    assert all(r["given_label"] == r["true_label"] and r["label_error"] == "0" for r in rows)
    assert len(list((tmp_path / "out/images/train").rglob("*.png"))) == 1797
    with Image.open(tmp_path / "out/images/train/7/0007.png") as im:
        assert im.mode == "L" and im.size == (8, 8)
        np.testing.assert_array_equal(np.asarray(im), np.rint(digits.images[7] * 255 / 16).astype(np.uint8))


def test_read_raw_rejects_half_empty_columns(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\n")
    (tmp_path / "labels.csv").write_text("image_id,given_label,true_label,label_error\nx/1.png,0,,0\nx/2.png,1,1,0\n")
    with pytest.raises(DataError, match=r"labels\.csv: true_label is empty on 1 row"):
        read_raw(tmp_path)


def test_stage_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"raw.sources": str(tmp_path / "src"), "raw.download": False})
    argv = ["roman-numeral", "--out", str(tmp_path / "rn")]
    assert load_stage("raw").main(argv) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "src" / "roman-numeral_manual_review.xlsx") in err or "roman-numeral.zip" in err
    assert "place it there" in err
    (tmp_path / "src").mkdir()
    write_review(tmp_path / "src/roman-numeral_manual_review.xlsx", ROMAN_ROWS)
    write_roman_zip(tmp_path / "src/roman-numeral.zip", [r[0] for r in ROMAN_ROWS], prefix="")
    assert load_stage("raw").main(argv) == 0
    assert "roman-numeral: 6 images, 10 classes, label errors 2" in capsys.readouterr().out
    assert build("digits", out=tmp_path / "d", sources_dir=tmp_path).given_labels.shape == (1797,)
    write_params(tmp_path, {"raw.download": "yes"})
    assert load_stage("raw").main(argv) == 1
    assert "raw.download = 'yes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        load_stage("raw").main(["mnist", "--out", str(tmp_path / "m")])


def test_registry_names_each_source():
    assert set(DATASETS) == {"cifar-10", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s", "roman-numeral",
                             "food-101n", "digits", "imagefolder"}
    assert [d for d in DATASETS if DATASETS[d].needs_added] == ["imagefolder"]
    with pytest.raises(DataError, match="add-dataset NAME --images DIR"):
        build("imagefolder", out="unused", sources_dir="unused", added="no/such/folder")
    # CIFAR-10's images come from its archive, a source of each dataset that uses them (no raw stage reads another's
    # output, which the raw stage's deps in dvc.yaml could not declare)
    assert {DATASETS[d].sources["archive"] for d in ("cifar-10", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s")} \
        == {DATASETS["cifar-10"].sources["archive"]}
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        build("mnist", out="unused", sources_dir="unused")


# --- required agreement with the published reference files ---------------------------------


@pytest.mark.parametrize("variant", ["agg", "worst"])
def test_published_cifar10n_labels(variant):
    folder = published(f"cifar-10n-{variant}")
    table = cifar10n_labels(human_labels=published("raw", "cifar-10n_human_labels.npz"), variant=variant)
    ids = (folder / "image_ids.txt").read_text().splitlines()
    assert all(i.startswith("train/image_id_") and i.endswith(".png") for i in ids)
    index = np.array([int(i[len("train/image_id_"):-len(".png")]) for i in ids])
    assert [table.image_ids[i] for i in index[:100]] == ids[:100]
    np.testing.assert_array_equal(table.given_labels[index], np.load(folder / "given_labels.npy"))
    np.testing.assert_array_equal(table.true_labels[index], np.load(folder / "true_labels.npy"))
    np.testing.assert_array_equal(table.label_errors[index], np.load(folder / "label_errors.npy"))


def test_published_cifar10s_labels():
    folder = published("cifar-10s")
    table = cifar10s_labels(noisy_csv=published("raw", "cifar-10s_noisy_labels_noise_amount_0.2_sparsity_0.4.csv"))
    position = {image_id: i for i, image_id in enumerate(table.image_ids)}
    index = np.array([position[i] for i in (folder / "image_ids.txt").read_text().splitlines()])
    assert len(table) == 50_000 and sorted(index.tolist()) == list(range(50_000))
    np.testing.assert_array_equal(table.given_labels[index], np.load(folder / "given_labels.npy"))
    np.testing.assert_array_equal(table.true_labels[index], np.load(folder / "true_labels.npy"))
    np.testing.assert_array_equal(table.label_errors[index], np.load(folder / "label_errors.npy"))


def test_published_roman_mask_and_labels():
    folder = published("roman-numeral")
    table = roman_review_labels(review=published("raw", "roman-numeral_manual_review.xlsx"))
    ids = (folder / "image_ids.txt").read_text().splitlines()
    position = {image_id: i for i, image_id in enumerate(table.image_ids)}
    index = np.array([position[i] for i in ids])
    mask, given = np.load(folder / "label_errors.npy"), np.load(folder / "given_labels.npy")
    assert len(ids) == 2_831 and int(mask.sum()) == 372
    assert len(table) == 2_831 + 49  # the sheet also lists the 49 duplicates a later stage removes
    np.testing.assert_array_equal(table.label_errors[index], mask)
    np.testing.assert_array_equal(table.given_labels[index], given)
    np.testing.assert_array_equal(given, [ROMAN_CLASSES.index(i.split("/")[1]) for i in ids])


def test_source_path_checks_hash_and_says_where_to_put_files(tmp_path):
    source = Source("x.bin", "http://127.0.0.1:9/x.bin", md5="0" * 32)
    with pytest.raises(DataError, match=r"x\.bin: source file not found; place it there from http://127\.0\.0\.1:9/x\.bin"):
        source_path(source, tmp_path, download=False)
    (tmp_path / "x.bin").write_bytes(b"corrupt")
    with pytest.raises(DataError, match=r"x\.bin: does not verify \(md5 "):
        source_path(source, tmp_path, download=False)


def test_one_image_id_rule_for_every_reader_and_writer(tmp_path):
    """files.is_safe_image_id is the rule of labels.csv, the raw layout's tables and writers, the image_ids.txt of
    every dataset loaded, and add-dataset's --image-ids."""
    from labelbench.data.files import is_safe_image_id, read_labels_csv
    from labelbench.data.raw.layout import RawTable, check_image_id

    for good in ["train/ix/aec04e56-ce5d-11eb.png", "0", "a_b/c+d-1.JPG", "_x/y.png"]:
        assert is_safe_image_id(good) and check_image_id(good, "src") == good
    for bad in ["", "/etc/passwd", "a/../b.png", "..", "./a.png", ".hidden.png", "a/.b", "a b.png", "a\\b.png",
                "a//b.png", "a/", "C:/x.png"]:
        assert not is_safe_image_id(bad), bad
        with pytest.raises(DataError, match="unsafe or malformed image path"):
            check_image_id(bad, "src")
    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error\na/1.png,0,,\na/../2.png,1,,\n")
    message = r"image ids must be relative paths of plain names inside images/, got \['a/../2.png'\]"
    with pytest.raises(DataError, match=message):
        read_labels_csv(path)
    with pytest.raises(DataError, match=message):
        RawTable(image_ids=["a/1.png", "a/../2.png"], given_labels=np.array([0, 1]), classes=["x", "y"]).check("src")


def test_a_labels_row_with_an_extra_field_is_one_line_naming_it(tmp_path):
    from labelbench.data.files import read_labels_csv

    path = tmp_path / "labels.csv"
    path.write_text("image_id,given_label,true_label,label_error\na.png,0,0,0\nb.png,1,1,0,9\n")
    with pytest.raises(DataError) as refused:
        read_labels_csv(path)
    assert str(refused.value) == (f"{path}: not a readable CSV file (Error tokenizing data. C error: Expected 4 fields "
                                  "in line 3, saw 5)")


@pytest.mark.parametrize("given, true, match", [
    ([0, 1], None, r"given labels must be a non-empty 1-D array of 3, got shape \(2,\)"),
    ([0, 1, 2], None, r"given labels outside \[0, 2\): min 0, max 2"),
    ([0, 1, 1], [0.0, 1.0, 1.0], "true labels must be integers, got dtype float64"),
    (np.array([0, 1, 1], dtype="m8[s]"), None, "given labels must be integers, got dtype timedelta64"),
])
def test_a_raw_table_checks_its_labels_as_the_data_contract_does(given, true, match):
    """The raw layout's label check is files.check_labels, the one the published datasets' label files go through."""
    from labelbench.data.raw.layout import RawTable

    table = RawTable(image_ids=["a.png", "b.png", "c.png"], given_labels=np.asarray(given), classes=["x", "y"],
                     true_labels=None if true is None else np.asarray(true))
    with pytest.raises(DataError, match=match) as info:
        table.check("source.zip")
    assert info.value.path == "source.zip"

"""`python -m labelbench add-dataset NAME --images DIR`: a generated folder of images, with no pred_probs, is
trained here by `dvc repro` and reaches every output with every detector family; each kind of bad input (an
unreadable image, an empty class, a label that is no class, ...) is refused before any training, with one error
naming the file, and leaves the repository unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import roman_numeral_clone, run, stages_run
from labelbench.evaluation.detectors import FAMILIES
from test_add_dataset import tree_hash

pytestmark = pytest.mark.slow  # real git, dvc and training in a temporary clone

CLASSES = ("circle", "square", "stripes")


def make_images(folder: Path, *, per_class: int = 40, seed: int = 0) -> Path:
    """An ImageFolder of 12x12 RGB images, one subfolder per class: a class-specific pattern plus noise (PNG,
    and every fifth image a JPEG: the user's formats are kept)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:12, :12]
    patterns = {"circle": ((yy - 5.5) ** 2 + (xx - 5.5) ** 2 < 16), "square": (abs(yy - 5.5) < 4) & (abs(xx - 5.5) < 4),
                "stripes": (xx % 4 < 2)}
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(patterns[name][..., None] * 180 + rng.normal(40, 30, (12, 12, 3)), 0, 255)
            suffix = "jpg" if i % 5 == 4 else "png"
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{i:03d}.{suffix}")
    return folder


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    return roman_numeral_clone(tmp_path_factory.mktemp("repo"))


def add(repo: Path, *args: str, check: bool = True):
    return run(["python", "-m", "labelbench", "add-dataset", *args], repo, check=check)


def test_an_image_folder_is_trained_and_reaches_every_output(repo, tmp_path):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(epochs=15, image_size=12)  # enough to learn the patterns (seconds at this size)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    images = make_images(tmp_path / "pictures")
    out = add(repo, "shapes", "--images", str(images), "--noise-amount", "0.2").stdout
    assert "added shapes: 120 images, 3 classes; instance noise, 0.2 of the labels flipped; trained here" in out
    assert yaml.safe_load((repo / "params.yaml").read_text())["crossval"]["datasets"] == {"shapes": {"source": "imagefolder", "noise": "instance",
                                                         "noise_amount": 0.2, "noise_seed": 0}}
    added = repo / "data/added/shapes"
    assert (added / "classes.txt").read_text() == "circle\nsquare\nstripes\n"
    assert (added / "images/square/004.jpg").read_bytes() == (images / "square/004.jpg").read_bytes()
    assert (repo / "data/added/shapes.dvc").is_file()

    ran = stages_run(run(["dvc", "repro"], repo).stdout)
    assert {"raw@shapes", "noise@shapes", "folds@shapes", "assemble@shapes"} <= set(ran)
    assert {f"crossval@shapes-test_resnet-{f}" for f in range(3)} <= set(ran)
    noisy = pd.read_csv(repo / "data/noisy/shapes/labels.csv")
    assert noisy["label_error"].sum() == 24  # round(0.2 * 120)
    benchmark = pd.read_csv(repo / "metrics/benchmark.csv")
    shapes = benchmark[benchmark["dataset"] == "shapes"]
    # every family's detectors, with intervals and verdicts, beside the pred_probs variants
    for detectors in FAMILIES.values():
        assert set(detectors) <= set(shapes["method"]), detectors
    assert shapes[["auroc_lo", "auroc_hi", "auroc_vs_best"]].notna().all().all()
    report = (repo / "reports/benchmark.md").read_text()
    assert "### shapes / test_resnet" in report
    issues = pd.read_csv(repo / "reports/issues/shapes.csv")
    assert set(issues["given_label"]) <= set(CLASSES) and issues["is_label_error"].head(24).mean() > 0.5
    assert (repo / "reports/issues/shapes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stages_run(run(["dvc", "repro"], repo).stdout) == []


def _unreadable(images: Path) -> Path:
    bad = images / "square" / "007.png"
    bad.write_bytes(b"not an image")
    return bad


def _empty_class(images: Path) -> Path:
    (images / "triangle").mkdir()
    return images / "triangle"


def _csv_with_a_stranger(images: Path) -> Path:
    labels = images.parent / "labels.csv"
    rows = [f"{p.relative_to(images).as_posix()},{p.parent.name}" for p in sorted(images.rglob("*.*"))]
    rows[3] = rows[3].split(",")[0] + ",hexagon"
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    return labels


REFUSALS = [  # (fault on the generated folder, extra CLI arguments, message, file named)
    (_unreadable, [], "not a readable image", "007.png"),
    (_empty_class, [], "class(es) ['triangle'] have fewer than 3 image(s)", "triangle"),
    (_csv_with_a_stranger, ["--labels"], "label(s) ['hexagon'] are no class", "labels.csv"),  # with --classes
    (lambda images: None, [], "its label errors must be known", None),  # no --errors, no injected noise
    (lambda images: images.parent / "nowhere.txt", ["--errors"], "nowhere.txt", "nowhere.txt"),
    (lambda images: "0.4", ["--sparsity"], "--sparsity applies to --noise uniform only", None),
    (lambda images: "1.5", ["--noise-amount"], "crossval.datasets.fresh.noise_amount = 1.5", None),
    (lambda images: "nan", ["--noise-amount"], "noise_amount = nan: Input should be a finite number", None),
]


@pytest.mark.parametrize("fault, extra, message, named", REFUSALS, ids=[r[2][:30] for r in REFUSALS])
def test_bad_image_folders_are_refused_and_nothing_is_written(repo, tmp_path, fault, extra, message, named):
    images = make_images(tmp_path / "pictures", per_class=36)
    target = fault(images)
    args = ["fresh", "--images", str(images)]
    if extra:
        args += [extra[0], str(target)]
    if extra == ["--labels"]:
        (tmp_path / "classes.txt").write_text("".join(f"{name}\n" for name in CLASSES))
        args += ["--classes", str(tmp_path / "classes.txt")]
    if message != "its label errors must be known" and extra[:1] not in (["--errors"], ["--noise-amount"]):
        args += ["--noise-amount", "0.2"]
    state, status = tree_hash(repo), run(["git", "status", "--porcelain"], repo).stdout
    result = add(repo, *args, check=False)
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("error:") == 1 and message in result.stderr, result.stderr
    if named is not None:
        assert named in result.stderr.split(":", 2)[1], result.stderr  # the file is named first
    assert tree_hash(repo) == state
    assert run(["git", "status", "--porcelain"], repo).stdout == status


def test_one_class_is_not_a_classification_task(tmp_path):
    from labelbench.data.io import DataError
    from labelbench.data.raw.imagefolder import read_imagefolder

    images = make_images(tmp_path / "pictures", per_class=3)
    for name in CLASSES[1:]:
        for path in (images / name).iterdir():
            path.unlink()
        (images / name).rmdir()
    with pytest.raises(DataError, match=r"needs at least 2 classes, has \['circle'\]"):
        read_imagefolder(images=images)


def test_the_raw_stage_names_an_added_image_gone_from_the_workspace(tmp_path):
    from labelbench.data.io import DataError
    from labelbench.data.raw.imagefolder import convert_imagefolder, read_imagefolder, write_imagefolder

    images = make_images(tmp_path / "pictures", per_class=3)
    added = tmp_path / "data" / "added" / "shapes"
    write_imagefolder(read_imagefolder(images=images), images=images, out=added)
    (added / "images" / "square" / "001.png").unlink()
    with pytest.raises(DataError) as info:
        convert_imagefolder(out=tmp_path / "raw", added=added)
    assert info.value.path == str(added / "images")
    assert str(info.value).endswith(f"no file for 1 image id(s) listed in {added / 'labels.csv'}: 'square/001.png'; "
                                    f"restore them: dvc checkout {added.as_posix()}")
    assert not (tmp_path / "raw").exists()

"""labelbench.train.crossval and stages/crossval.py on a tiny generated image dataset (CPU, seconds)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from sklearn.datasets import load_digits

from conftest import load_stage
from labelbench.config import Runtime, Train
from labelbench.data.io import DataError, check_pred_probs
from labelbench.train.crossval import (
    PretrainedWeightsUnavailable,
    TrainConfig,
    create_model,
    load_fold_model,
    predict,
    train_fold,
)
from labelbench.train.images import DeviceTransform, open_images

REPO = Path(__file__).resolve().parents[1]
N_CLASSES, PER_CLASS, K_FOLDS = 3, 20, 3
FAST = dict(epochs=2, batch_size=16, lr=0.01, image_size=16, device="cpu")  # over params.yaml's train block


def write_params(folder: Path, changes: dict) -> Path:
    """The repository's params.yaml with ``changes`` ({"block.key": value}) written into ``folder``
    (stages read ./params.yaml: run them with ``folder`` as the working directory)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in changes.items():
        *blocks, key = dotted.split(".")
        target = params
        for block in blocks:
            target = target[block]
        target[key] = value
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def config(*, model: str = "test_resnet", folds: int = K_FOLDS, **train) -> TrainConfig:
    """params.yaml's train block with the quick settings and ``train`` over it, validated."""
    block = {**yaml.safe_load((REPO / "params.yaml").read_text())["train"], **FAST, **train}
    return TrainConfig.of(Train.model_validate(block), model=model, folds=folds)


def runtime(**changes) -> Runtime:
    """params.yaml's runtime block with ``changes`` over it, validated."""
    return Runtime.model_validate({**yaml.safe_load((REPO / "params.yaml").read_text())["runtime"], **changes})


def make_dataset(root: Path, *, n_classes=N_CLASSES, per_class=PER_CLASS, k=K_FOLDS, classes_txt=True) -> dict:
    """60 8x8 grayscale digit PNGs (classes 0..2), a labels.csv with 3 flipped labels, folds.csv."""
    digits = load_digits()
    rows, folds = [], []
    for c in range(n_classes):
        picks = np.flatnonzero(digits.target == c)[:per_class]
        for j, i in enumerate(picks):
            image_id = f"train/{c}/{i:04d}.png"
            path = root / "images" / image_id
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), mode="L").save(path)
            rows.append({"image_id": image_id, "given_label": c, "true_label": c})
            folds.append(j % k)
    table = pd.DataFrame(rows)
    for r in (0, 25, 50):  # three label errors
        table.loc[r, "given_label"] = (table.loc[r, "true_label"] + 1) % n_classes
    table["label_error"] = (table["given_label"] != table["true_label"]).astype(int)
    table.to_csv(root / "labels.csv", index=False)
    pd.DataFrame({"image_id": table["image_id"], "fold": folds}).to_csv(root / "folds.csv", index=False)
    if classes_txt:
        (root / "classes.txt").write_text("".join(f"digit{c}\n" for c in range(n_classes)))
    return {"images_root": root / "images", "labels_csv": root / "labels.csv", "folds_csv": root / "folds.csv"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return make_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def fold0(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_a") / "fold_0"
    return train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=out)


def test_config_is_the_train_block_plus_model_and_k():
    train = Train.model_validate({**yaml.safe_load((REPO / "params.yaml").read_text())["train"], "lr": 1})
    settings = TrainConfig.of(train, model="m", folds=4).to_dict()
    assert settings == {"model": "m", **train.model_dump(), "folds": 4}
    assert settings["lr"] == 1.0 and isinstance(settings["lr"], float)
    # the order of each fold's config.yaml echo
    assert list(settings) == ["model", "pretrained", "epochs", "batch_size", "opt", "lr", "weight_decay", "momentum",
                              "sched", "warmup_epochs", "min_lr", "image_size", "scale", "ratio", "hflip",
                              "max_stored_size", "seed", "device", "mixed_precision", "folds"]



@pytest.mark.parametrize("changes, message", [
    ({"epochs": 2, "warmup_epochs": 3}, "params.yaml: train: Value error, warmup_epochs (3) must be at most epochs (2)"),
    ({"image_size": 100000}, "params.yaml: train.image_size = 100000: Input should be less than or equal to 4096"),
])
def test_train_settings_that_cannot_train_are_refused_before_training(tmp_path, changes, message):
    from labelbench.config import CrossvalParams, ParamsError, load_params

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ParamsError) as refused:
        load_params(CrossvalParams, tmp_path / "params.yaml")
    assert str(refused.value).removeprefix(f"{tmp_path}/").startswith(message), str(refused.value)
    params["train"].update(epochs=1, warmup_epochs=1, image_size=4096)  # the bounds themselves are allowed
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    load_params(CrossvalParams, tmp_path / "params.yaml")

def test_timm_test_models_exist():
    import timm

    assert "test_resnet" in timm.list_models("test_*")


def test_train_fold_outputs(fold0, data):
    out = fold0.out_dir
    names = {p.name for p in out.iterdir()}
    assert names == {"model.safetensors", "heldout_indices.npy", "heldout_pred_probs.npy", "config.yaml", "dvclive",
                     "records"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary folder left behind"
    idx = np.load(out / "heldout_indices.npy", allow_pickle=False)
    probs = np.load(out / "heldout_pred_probs.npy", allow_pickle=False)
    folds = pd.read_csv(data["folds_csv"])["fold"].to_numpy()
    assert idx.dtype == np.int64 and np.array_equal(idx, np.flatnonzero(folds == 0))
    assert probs.dtype == np.float64 and probs.shape == (len(idx), N_CLASSES)
    check_pred_probs(probs, out / "heldout_pred_probs.npy")
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-12)
    config = (out / "config.yaml").read_text()
    assert "model: test_resnet" in config and "fold: 0" in config and "num_classes: 3" in config
    # DVCLive curves, one row per epoch; nothing DVC/git-related written anywhere
    loss = pd.read_csv(out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert list(loss["step"]) == [0, 1] and np.isfinite(loss["loss"]).all()
    assert (out / "dvclive" / "plots" / "metrics" / "train" / "accuracy.tsv").is_file()
    assert (out / "dvclive" / "metrics.json").is_file()
    assert not list(out.parent.rglob("dvc.yaml")) and not (REPO / "dvclive").exists()
    assert len(fold0.history) == 2


def test_train_fold_records_what_other_detector_families_need(fold0, data):
    """records/: the training rows' logits per epoch as the model saw them, the held-out rows' logits after each
    epoch, and every row's penultimate features; the last held-out logits are the held-out pred_probs' logits."""
    records, out = fold0.out_dir / "records", fold0.out_dir
    folds = pd.read_csv(data["folds_csv"])["fold"].to_numpy()
    train = np.load(records / "train_indices.npy", allow_pickle=False)
    assert train.dtype == np.int64 and np.array_equal(train, np.flatnonzero(folds != 0))
    train_logits = np.load(records / "train_logits.npy", allow_pickle=False)
    assert train_logits.dtype == np.float32 and train_logits.shape == (2, len(train), N_CLASSES)
    # each epoch drops its ragged last batch (labelbench.train.images.epoch_index_batches): those rows are NaN
    unseen = np.isnan(train_logits)
    assert (unseen.all(axis=2) == unseen.any(axis=2)).all()
    assert (unseen.all(axis=2).sum(axis=1) == len(train) % FAST["batch_size"]).all()
    assert not np.array_equal(train_logits[0], train_logits[1])
    held = np.load(out / "heldout_indices.npy")
    heldout_logits = np.load(records / "heldout_logits.npy", allow_pickle=False)
    assert heldout_logits.shape == (2, len(held), N_CLASSES)
    probs = np.load(out / "heldout_pred_probs.npy")
    last = np.exp(heldout_logits[-1] - heldout_logits[-1].max(1, keepdims=True))
    np.testing.assert_allclose(last / last.sum(1, keepdims=True), probs, atol=1e-6)
    # the pred_probs are the last epoch's held-out logits, bit for bit (float32 softmax, as trained)
    assert probs.tobytes() == torch.softmax(torch.from_numpy(heldout_logits[-1]), dim=1).double().numpy().tobytes()
    embeddings = np.load(records / "embeddings.npy", allow_pickle=False)
    assert embeddings.dtype == np.float16 and embeddings.shape[0] == len(folds) and embeddings.shape[1] > 1
    assert np.isfinite(embeddings).all()


def test_weights_reload_with_safetensors(fold0, data):
    model = load_fold_model(fold0.out_dir)
    idx = np.load(fold0.out_dir / "heldout_indices.npy")
    ids = pd.read_csv(data["labels_csv"])["image_id"].tolist()
    rows = open_images(data["images_root"], ids, max_stored_size=256, max_resident_mb=0)  # read per batch
    assert rows.cache is None and rows.side == 8
    again = predict(model, rows, idx, config=config(), device=torch.device("cpu"))
    np.testing.assert_allclose(again, np.load(fold0.out_dir / "heldout_pred_probs.npy"), atol=1e-6)


def test_same_seed_is_byte_identical(fold0, data, tmp_path):
    again = train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=tmp_path / "fold_0")
    for name in ("heldout_pred_probs.npy", "heldout_indices.npy", "model.safetensors"):
        assert filecmp.cmp(fold0.out_dir / name, again.out_dir / name, shallow=False), name
    other = train_fold(**data, fold=0, config=config(seed=1), runtime=runtime(), out_dir=tmp_path / "seed1")
    assert not np.array_equal(other.pred_probs, fold0.pred_probs)


def test_rerun_replaces_output(data, tmp_path):
    out = tmp_path / "fold_1"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    train_fold(**data, fold=1, config=config(epochs=1), runtime=runtime(), out_dir=out)
    assert not (out / "stale.txt").exists() and (out / "heldout_pred_probs.npy").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["fold_1"]


def test_corrupt_png_names_the_file(tmp_path):
    data = make_dataset(tmp_path)
    bad = data["images_root"] / "train/1/0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(DataError, match="not a readable image") as info:
        train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=tmp_path / "out")
    assert info.value.path == str(bad)
    assert not (tmp_path / "out").exists()


def test_missing_image_and_mismatched_tables(tmp_path):
    data = make_dataset(tmp_path)
    (data["images_root"] / "train/2/0002.png").unlink()
    with pytest.raises(DataError, match=r"no file for 1 image id\(s\) listed in .*labels.csv: 'train/2/0002.png'$"):
        train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=tmp_path / "out")
    folds = pd.read_csv(data["folds_csv"])
    folds.iloc[:-1].to_csv(data["folds_csv"], index=False)
    with pytest.raises(DataError, match="has 59 rows but the labels table"):
        train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=tmp_path / "out")
    folds.iloc[::-1].to_csv(data["folds_csv"], index=False)
    with pytest.raises(DataError, match="rows must be in labels.csv order"):
        train_fold(**data, fold=0, config=config(), runtime=runtime(), out_dir=tmp_path / "out")
    folds.to_csv(data["folds_csv"], index=False)
    with pytest.raises(DataError, match="holds folds \\[0, 1, 2\\] but crossval.folds is 5"):
        train_fold(**data, fold=0, config=config(folds=5), runtime=runtime(), out_dir=tmp_path / "out")


def test_class_missing_from_training_folds(tmp_path):
    data = make_dataset(tmp_path)
    table = pd.read_csv(data["labels_csv"])
    folds = pd.read_csv(data["folds_csv"])
    folds.loc[table["given_label"] == 2, "fold"] = 1  # every class-2 example in fold 1
    folds.to_csv(data["folds_csv"], index=False)
    with pytest.raises(DataError, match=r"class 2 \('digit2'\): no training example when fold 1 is held out"):
        train_fold(**data, fold=1, config=config(), runtime=runtime(), out_dir=tmp_path / "out")


def test_unknown_model_suggests_close_names(data, tmp_path):
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_18'; did you mean: .*resnet18"):
        train_fold(**data, fold=0, config=config(model="resnet_18"), runtime=runtime(), out_dir=tmp_path / "out")


def test_pretrained_offline_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    with pytest.raises(PretrainedWeightsUnavailable, match="not available offline.*train.pretrained: false"):
        create_model("test_resnet", num_classes=3, pretrained=True)


def test_num_classes_without_classes_txt(tmp_path):
    data = make_dataset(tmp_path, classes_txt=False)
    result = train_fold(**data, fold=2, config=config(epochs=1), runtime=runtime(), out_dir=tmp_path / "out")
    assert result.pred_probs.shape[1] == N_CLASSES


def crossval_argv(data, out: Path, *, fold: int = 2, model: str = "test_resnet") -> list[str]:
    return ["--dataset", "tiny", "--model", model, "--fold", str(fold), "--images", str(data["images_root"]),
            "--labels", str(data["labels_csv"]), "--folds", str(data["folds_csv"]), "--out", str(out)]


def test_crossval_stage_cli(data, tmp_path, capsys, monkeypatch):
    write_params(tmp_path, {"train.epochs": 1, "train.batch_size": 16, "train.device": "cpu",
                            "crossval.folds": list(range(K_FOLDS))})
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "crossval" / "tiny" / "test_resnet" / "fold_2"
    assert load_stage("crossval").main(crossval_argv(data, out)) == 0
    assert "tiny/test_resnet fold 2" in capsys.readouterr().out
    echo = yaml.safe_load((out / "config.yaml").read_text())
    assert (echo["epochs"], echo["batch_size"], echo["folds"], echo["fold"]) == (1, 16, K_FOLDS, 2)
    assert load_stage("crossval").main(crossval_argv(data, tmp_path / "bad", model="resnet_18")) == 1
    assert "did you mean" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("changes, fold, message", [
    ({"train.device": "gpu"}, 0, "train.device = 'gpu'"),
    ({"train.epochs": 0}, 0, "train.epochs = 0"),
    ({"train.epoch": 3}, 0, "train.epoch"),
    ({"train.opt": "adamx"}, 0, "train.opt = 'adamx': Value error, unknown optimizer 'adamx'; allowed"),
    ({"train.opt": "adahessian"}, 0, "train.opt = 'adahessian': Value error, unknown optimizer"),  # create_graph
    ({"train.opt": "kron"}, 0, "train.opt = 'kron': Value error, unknown optimizer"),  # ~100 GB on test_resnet
    ({"train.batch_size": 1}, 0, "train.batch_size = 1: Input should be greater than or equal to 2"),
    ({"train.seed": 2**32}, 0, "train.seed = 4294967296: Input should be less than 4294967296"),
    ({"crossval.fold_seed": 2**32}, 0, "crossval.fold_seed = 4294967296: Input should be less than 4294967296"),
    ({"train.sched": "plateau"}, 0, "train.sched = 'plateau': Input should be 'cosine'"),
    ({"train.scale": [0.9, 0.1]}, 0, "train.scale = [0.9, 0.1]: Value error, must be [low, high]"),
    ({"train.ratio": [1.0]}, 0, "train.ratio = [1.0]"),
    ({"train.lr": float("inf")}, 0, "train.lr = inf: Input should be a finite number"),
    ({"train.weight_decay": float("nan")}, 0, "train.weight_decay = nan: Input should be a finite number"),
    ({"crossval.folds": [0, 1, 2, 3, 4]}, 0, "crossval.folds is 5"),  # the folds file holds 3 folds
    ({"crossval.folds": [0, 1, 2]}, 3, "--fold 3 is not one of crossval.folds"),
])
def test_crossval_stage_refuses_params_before_training(data, tmp_path, capsys, monkeypatch, changes, fold, message):
    write_params(tmp_path, {"crossval.folds": list(range(K_FOLDS)), **changes})
    monkeypatch.chdir(tmp_path)
    import labelbench.train.crossval as crossval

    monkeypatch.setattr(crossval, "fit", lambda *a, **k: pytest.fail("training started"))
    assert load_stage("crossval").main(crossval_argv(data, tmp_path / "out", fold=fold)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out").exists()


def same_files(a: Path, b: Path) -> list[str]:
    """Relative paths of every file under ``a`` or ``b``; asserts both hold the same files, byte for byte."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    for name in names:
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    return names


def test_runtime_settings_change_no_byte(fold0, data, tmp_path, monkeypatch):
    """The runtime block is how the machine runs, not what is trained: reading every batch from the files
    (two DataLoader workers) instead of memory writes the in-memory run's fold folder, every file of it."""
    import labelbench.train.crossval as crossval

    opened, real = [], crossval.open_images
    monkeypatch.setattr(crossval, "open_images", lambda *a, **k: opened.append(real(*a, **k)) or opened[-1])
    streamed = train_fold(**data, fold=0, config=config(), runtime=runtime(max_resident_mb=0, workers=2),
                          out_dir=tmp_path / "f")
    assert opened[0].cache is None and opened[0].side == 8  # the per-batch path did run
    assert "model.safetensors" in same_files(fold0.out_dir, streamed.out_dir)


def test_stored_size_is_native_up_to_the_cap(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(root / "a.png")
    Image.new("L", (20, 20), 128).save(root / "b.png")
    rows = open_images(root, ["a.png", "b.png"], max_stored_size=256, max_resident_mb=1)
    assert rows.side == 40 and rows.cache.shape == (2, 3, 40, 40) and rows.cache.dtype == torch.uint8
    assert torch.equal(rows[1], torch.full((3, 40, 40), 128, dtype=torch.uint8))  # grey to RGB, resized
    capped = open_images(root, ["a.png", "b.png"], max_stored_size=16, max_resident_mb=0)
    assert capped.side == 16 and capped.cache is None and capped[0].shape == (3, 16, 16)
    assert capped[0][0].float().mean() == 255 and capped[0][1:].sum() == 0  # red, decoded from the file
    (root / "c.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image") as info:
        open_images(root, ["a.png", "c.png"], max_stored_size=16, max_resident_mb=1)
    assert info.value.path == str(root / "c.png")


def test_device_transform_crop_flip_and_resize():
    model = create_model("test_resnet", num_classes=3)
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    plain = dict(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=0, device=torch.device("cpu"))
    identity = DeviceTransform(model, hflip=0.0, **plain)
    resized = identity.eval(x)
    assert resized.shape == (4, 3, 16, 16) and resized.dtype == torch.float32
    # the whole image, unflipped: the same bilinear resize as prediction's (upsampling: no antialias effect)
    torch.testing.assert_close(identity.train(x), resized, atol=1e-4, rtol=0)
    flipped = DeviceTransform(model, hflip=1.0, **plain).train(x)
    torch.testing.assert_close(flipped, resized.flip(-1), atol=1e-4, rtol=0)
    # what torchvision's Resize and Normalize with the model's pretrained mean/std give
    from torchvision.transforms import functional as TF

    mean, std = model.pretrained_cfg["mean"], model.pretrained_cfg["std"]
    expected = TF.normalize(TF.resize(x.float() / 255, [16, 16], antialias=True), mean, std)
    torch.testing.assert_close(resized, expected, atol=1e-5, rtol=0)
    crops = dict(size=16, scale=(0.3, 0.6), ratio=(0.75, 1.33), hflip=0.5, device=torch.device("cpu"))
    a, b = DeviceTransform(model, seed=1, **crops), DeviceTransform(model, seed=1, **crops)
    first = a.train(x)
    assert torch.equal(first, b.train(x)) and not torch.equal(first, a.train(x))  # seeded, new draws per batch
    assert not torch.allclose(first, resized)


@pytest.mark.parametrize("fold", ["99999999999999999999", "-1", "1.0", "١", ""])
def test_a_fold_that_is_no_int64_is_one_error_naming_the_file(tmp_path, fold):
    from labelbench.train.crossval import read_folds_csv

    (tmp_path / "folds.csv").write_text(f"image_id,fold\na.png,{fold}\nb.png,+01\n", encoding="utf-8")
    message = r"fold is empty on 1 row\(s\)" if fold == "" else r"fold must be integers in \[0, 10\*\*18\)"
    with pytest.raises(DataError, match=message) as refused:
        read_folds_csv(tmp_path / "folds.csv", ["a.png", "b.png"])
    assert refused.value.path == str(tmp_path / "folds.csv")
    (tmp_path / "folds.csv").write_text("image_id,fold\na.png,999999999999999999\nb.png,+01\n")
    assert read_folds_csv(tmp_path / "folds.csv", ["a.png", "b.png"]).tolist() == [10**18 - 1, 1]


def test_an_optimizer_refusing_its_settings_is_a_params_error_before_any_image_is_read(tmp_path, monkeypatch, capsys):
    """timm's sgd is Nesterov's, which refuses momentum 0: the train block's check builds the optimizer (on one
    parameter), so the crossval stage and check-params refuse it before a fold reads its images, not after."""
    text = (REPO / "params.yaml").read_text()
    assert "\n  opt: adamw " in text and "\n  momentum: 0.9 " in text
    sgd = text.replace("\n  opt: adamw ", "\n  opt: sgd   ")
    (tmp_path / "params.yaml").write_text(sgd.replace("\n  momentum: 0.9 ", "\n  momentum: 0.0 "))
    monkeypatch.chdir(tmp_path)  # no images, labels or folds here: what is read first fails first
    argv = ["--dataset", "d", "--model", "test_resnet", "--fold", "0", "--images", "images", "--labels", "labels.csv",
            "--folds", "folds.csv", "--out", "out"]
    assert load_stage("crossval").main(argv) == 1
    assert capsys.readouterr().err == ("error: params.yaml: train: Value error, opt 'sgd' refuses lr 0.01, weight_decay "
                                       "0.01, momentum 0.0: Nesterov momentum requires a momentum and zero dampening\n")
    (tmp_path / "params.yaml").write_text(sgd)  # with momentum, the stage goes on to read its inputs
    assert load_stage("crossval").main(argv) == 1
    assert capsys.readouterr().err == "error: labels.csv: file not found\n" and not (tmp_path / "out").exists()


def test_a_worker_process_that_cannot_decode_an_image_names_it(tmp_path):
    """A DataLoader worker's DataError comes back from torch as a RuntimeError holding a traceback: the batch is
    decoded again here, so the stage prints the DataError (as with 0 workers)."""
    from labelbench.train.images import ImageRows, batches

    paths, pixels = [], np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(pixels[i]).save(paths[-1])
    paths[2].write_bytes(paths[2].read_bytes()[:60])  # truncated: the header still reads
    rows = ImageRows(paths, side=8)
    labels = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError, match=r"2.png: not a readable image \(OSError: image file is truncated"):
        list(batches(rows, labels, [[0, 1], [2, 3]], device=torch.device("cpu"), workers=1))
    good = list(batches(ImageRows(paths[:2], side=8), labels, [[0, 1]], device=torch.device("cpu"), workers=1))
    assert torch.equal(good[0][0][:, 0], torch.from_numpy(pixels[:2]))


def test_16_bit_grayscale_keeps_its_shades(tmp_path):
    """Pillow's own conversion clips 16-bit values at 255 (an almost white image): its top 8 bits are kept, as
    training, the instance-noise weak model and the issues grid read it."""
    from labelbench.train.images import decode
    from labelbench.train.noise import weak_model_pixels

    values = (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)  # 0 .. 63,000
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode in ("I;16", "I")
    expected = (values >> 8).astype(np.uint8)
    assert torch.equal(decode(tmp_path / "g16.png", 8), torch.from_numpy(np.stack([expected] * 3)))
    Image.fromarray(expected).save(tmp_path / "g8.png")
    assert np.array_equal(weak_model_pixels(tmp_path, ["g16.png"]), weak_model_pixels(tmp_path, ["g8.png"]))


def test_optimizer_and_schedule_come_from_timm():
    from labelbench.train.crossval import _optimizer_and_schedule

    model = create_model("test_resnet", num_classes=3)
    optimizer, scheduler = _optimizer_and_schedule(model, config=config(epochs=4, warmup_epochs=1), steps=10)
    assert type(optimizer).__name__ == "AdamW"
    decay = {g["weight_decay"]: sum(p.numel() for p in g["params"]) for g in optimizer.param_groups}
    biases_and_norms = sum(p.numel() for n, p in model.named_parameters() if p.ndim <= 1)
    assert decay == {0.0: biases_and_norms, 0.01: sum(p.numel() for p in model.parameters()) - biases_and_norms}
    lrs = []
    for update in range(1, 41):
        scheduler.step_update(num_updates=update)
        lrs.append(optimizer.param_groups[0]["lr"])
    import math

    # one warm-up epoch (10 updates) linear from timm's warmup_lr 1e-5, then cosine over all 40 updates
    assert lrs[:9] == pytest.approx([1e-5 + t * (0.01 - 1e-5) / 10 for t in range(1, 10)])
    assert lrs[9:] == pytest.approx([0.005 * (1 + math.cos(math.pi * t / 40)) for t in range(10, 41)])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_fold_on_cuda(data, tmp_path):
    result = train_fold(**data, fold=0, config=config(device="cuda", mixed_precision=True), runtime=runtime(),
                        out_dir=tmp_path / "g")
    check_pred_probs(result.pred_probs, "cuda")
    assert (tmp_path / "g" / "model.safetensors").is_file()
    assert "device_used: cuda" in (tmp_path / "g" / "config.yaml").read_text()


def test_byte_identical_across_processes(fold0, data, tmp_path):
    """The stage script in a fresh interpreter reproduces the in-process run bit for bit."""
    write_params(tmp_path, {**{f"train.{k}": v for k, v in FAST.items()}, "crossval.folds": list(range(K_FOLDS))})
    out = tmp_path / "fold_0"
    cmd = [sys.executable, str(REPO / "stages" / "crossval.py"), *crossval_argv(data, out, fold=0)]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in ("heldout_pred_probs.npy", "heldout_indices.npy", "model.safetensors"):
        assert filecmp.cmp(fold0.out_dir / name, out / name, shallow=False), name

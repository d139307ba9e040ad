"""Cross-validation training of one timm model on one fold: out-of-sample ``pred_probs``.

:func:`train_fold` trains on every fold but ``fold`` (on the *given*, possibly noisy labels of
labels.csv; folds.csv holds ``image_id, fold`` in labels.csv order; K = lines of the optional
``classes.txt`` beside the images folder) and predicts the held-out fold. It writes ``out_dir``
atomically::

    out_dir/
      model.safetensors          state dict (nothing here is ever unpickled)
      heldout_indices.npy        int64 (n_fold,)    row indices into labels.csv
      heldout_pred_probs.npy     float64 (n_fold, K) softmax of the held-out rows
      config.yaml                the training config, timm ``args.yaml`` style, plus provenance
      dvclive/                   per-epoch train/loss, train/accuracy, lr (metrics.json, plots/)

Images are decoded once into a uint8 tensor (N, 3, S, S) (RGB, resized to ``image_size``) and
normalised per batch on the device. On CPU a fixed seed gives byte-identical outputs (seeded
init and shuffle, deterministic algorithms, fixed thread count). On CUDA: channels_last, pinned
memory, bf16 autocast, fused AdamW, and no host sync inside an epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from labelbench.config import Train
from labelbench.data.io import DataError, atomic_dir, read_classes, read_csv_strings, read_labels_csv
from labelbench.data.io import write_npy, write_text

_SHOWN = 5  # how many offending ids an error message names
RESIDENT_FRACTION = 0.25  # keep the uint8 training images on the GPU when under this share of free memory


class PretrainedWeightsUnavailable(RuntimeError):
    """``pretrained: true`` but the weights cannot be fetched (offline) nor found in the cache."""


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml's ``train`` block plus the timm ``model`` and ``folds`` = k, in the order of each
    fold's ``config.yaml`` echo. ``threads``: torch CPU threads (0 = every usable core)."""

    model: str
    pretrained: bool
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    image_size: int
    seed: int
    device: str
    mixed_precision: bool
    workers: int
    folds: int
    threads: int

    @classmethod
    def of(cls, train: Train, *, model: str, folds: int) -> "TrainConfig":
        return cls(model=model, folds=folds, **train.model_dump())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but CUDA is not available on this machine; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def read_folds_csv(path: os.PathLike | str, image_ids: Sequence[str], *, labels_csv=None) -> np.ndarray:
    """Fold of every row (N,) int64; the ``image_id`` column must match ``image_ids`` in order."""
    raw = read_csv_strings(path)
    missing = [c for c in ("image_id", "fold") if c not in raw.columns]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; has {list(raw.columns)}")
    reference = f"the labels table ({labels_csv})"
    if len(raw) != len(image_ids):
        raise DataError(path, f"has {len(raw)} rows but {reference} has {len(image_ids)}")
    ids = raw["image_id"].str.strip().to_numpy()
    differ = np.flatnonzero(ids != np.asarray(image_ids, dtype=object))
    if differ.size:
        i = int(differ[0])
        raise DataError(path, f"{differ.size} row(s) differ from {reference}: row {i + 1} is {ids[i]!r}, "
                              f"expected {image_ids[i]!r} (rows must be in labels.csv order)")
    text = raw["fold"].str.strip()
    bad = ~text.str.fullmatch(r"\d+")
    if bad.any():
        raise DataError(path, f"fold must be an integer >= 0; found {list(text[bad].unique()[:_SHOWN])}")
    return text.astype(np.int64).to_numpy()


def num_classes_of(images_root, labels: pd.DataFrame, *, labels_csv=None) -> tuple[int, list[str] | None]:
    """K from ``classes.txt`` beside the images folder when present, else max label + 1."""
    path = Path(images_root).parent / "classes.txt"
    classes = read_classes(path) if path.is_file() else None
    top = int(labels["given_label"].max())
    if labels["true_label"].notna().any():
        top = max(top, int(labels["true_label"].max()))
    if classes is None:
        if top < 1:
            raise DataError(labels_csv, f"needs at least 2 classes, labels hold only {top + 1}")
        return top + 1, None
    if top >= len(classes):
        raise DataError(labels_csv, f"holds label {top} but classes.txt lists only {len(classes)} classes")
    return len(classes), classes


def load_images(
    images_root: os.PathLike | str, image_ids: Sequence[str], image_size: int, *, listed_in=None
) -> torch.Tensor:
    """Decode every image once: uint8 tensor (N, 3, image_size, image_size), ``image_ids`` order.

    Missing and unreadable images raise DataError naming them (``listed_in``: the file listing the ids).
    """
    images_root = Path(images_root)
    if not images_root.is_dir():
        raise DataError(images_root, "images folder not found")
    paths = [images_root / i for i in image_ids]
    missing = [i for i, p in zip(image_ids, paths) if not p.is_file()]
    if missing:
        where = f" in {listed_in}" if listed_in is not None else ""
        more = " ..." if len(missing) > _SHOWN else ""
        raise DataError(images_root, f"{len(missing)} image(s) listed{where} are missing: {missing[:_SHOWN]}{more}")
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)

    def decode(i: int) -> None:
        try:
            with Image.open(paths[i]) as image:
                rgb = image.convert("RGB")  # grayscale is replicated over 3 channels
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(paths[i], f"not a readable image ({type(exc).__name__}: {exc})") from None
        if rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        out[i] = np.asarray(rgb, dtype=np.uint8)

    with ThreadPoolExecutor(min(8, _usable_cores())) as pool:
        list(pool.map(decode, range(len(paths))))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def create_model(name: str, *, num_classes: int, pretrained: bool = False) -> torch.nn.Module:
    """``timm.create_model`` with clear errors: an unknown name -> ValueError listing close names;
    pretrained weights neither downloadable nor cached -> :class:`PretrainedWeightsUnavailable`
    (never a silent fall back to random weights)."""
    import timm

    if not timm.is_model(name):
        base = name.split(".")[0].lower()
        close = difflib.get_close_matches(base, timm.list_models(), n=8, cutoff=0.6)
        close += [n for n in timm.list_models(f"*{base}*") if n not in close]
        hint = f"; did you mean: {', '.join(close[:10])}?" if close else "; see timm.list_models()"
        raise ValueError(f"unknown timm model {name!r}{hint}")
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=3)
    if not timm.is_model_pretrained(name):
        raise PretrainedWeightsUnavailable(f"timm has no pretrained weights for {name!r}; set train.pretrained: "
                                           "false or pick a model from timm.list_models(pretrained=True)")
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=3)
    except Exception as exc:  # hub / download / cache failures come in many types
        raise PretrainedWeightsUnavailable(
            f"pretrained weights for {name!r} are not available offline (no network and not in the Hugging Face "
            f"cache: {type(exc).__name__}: {exc}). Set train.pretrained: false in params.yaml, or pre-populate the "
            "HF cache (HF_HOME) with the weights on a machine with network access."
        ) from exc


def _usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_settings(config: TrainConfig, device: torch.device):
    """Seed everything; on CPU also deterministic algorithms and a fixed thread count (restored on exit)."""
    previous = (
        torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
    )
    try:
        torch.manual_seed(config.seed)
        if device.type == "cpu":
            torch.set_num_threads(config.threads or _usable_cores())
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1], warn_only=previous[2])
        torch.backends.cudnn.benchmark = previous[3]


def _to_device(model: torch.nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Move ``model`` to ``device`` (channels_last on CUDA); return its input transform: uint8
    (B, 3, S, S) on the device -> float normalised with the model's mean/std."""
    from timm.data import resolve_model_data_config

    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    cfg = resolve_model_data_config(model)
    mean = torch.tensor(cfg["mean"], device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(cfg["std"], device=device).view(1, -1, 1, 1) * 255
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return lambda x: ((x.float() - mean) / std).contiguous(memory_format=memory_format)


def _autocast(device: torch.device, config: TrainConfig):
    enabled = device.type == "cuda" and config.mixed_precision
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def batch_source(
    images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, seed: int, device: torch.device,
    workers: int = 0, resident: bool | None = None,
) -> tuple[Callable[[], Any], int]:
    """``(epoch_batches, steps)``: ``epoch_batches()`` yields one shuffled epoch of (uint8, int64) batches.

    No ragged last batch (a batch of 1 breaks BatchNorm) unless everything fits in one batch.
    ``resident`` (CUDA only; None = when under RESIDENT_FRACTION of free memory): gather batches
    from a copy on the GPU; otherwise a DataLoader, with pinned memory on CUDA.
    """
    n = len(labels)
    batch_size = min(batch_size, n)
    drop_last = n > batch_size
    steps = n // batch_size if drop_last else 1
    generator = torch.Generator().manual_seed(seed)
    if resident is None and device.type == "cuda":
        resident = images.numel() * images.element_size() <= RESIDENT_FRACTION * torch.cuda.mem_get_info(device)[0]
    if resident and device.type == "cuda":
        images_d, labels_d = images.to(device), labels.to(device)

        def epoch_batches():
            order = torch.randperm(n, generator=generator).to(device, non_blocking=True)
            for step in range(steps):
                index = order[step * batch_size : (step + 1) * batch_size]
                yield images_d[index], labels_d[index]

        return epoch_batches, steps
    # batch_size=None: the dataset is indexed by a whole batch of row indices at once (no collate)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(range(n), generator=generator), batch_size, drop_last
    )
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), sampler=sampler, batch_size=None, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=workers > 0,
    )
    return (lambda: iter(loader)), steps


def fit(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, config: TrainConfig,
    device: torch.device, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    resident: bool | None = None,
) -> list[dict[str, float]]:
    """Train ``model`` in place on uint8 ``images`` (N, 3, S, S) and int64 ``labels`` (N,).

    AdamW + OneCycleLR, cross-entropy; returns per-epoch ``{loss, accuracy, lr, seconds, images_per_s}``
    (also passed to ``on_epoch(epoch, stats)``). ``resident``: see :func:`batch_source`.
    """
    cuda = device.type == "cuda"
    epoch_batches, steps = batch_source(
        images, labels, batch_size=config.batch_size, seed=config.seed, device=device,
        workers=config.workers, resident=resident,
    )
    normalize = _to_device(model, device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **({"fused": True} if cuda else {})
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * steps)
    history = []
    model.train()
    for epoch in range(config.epochs):
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        lr = scheduler.get_last_lr()[0]
        for xb, yb in epoch_batches():
            xb = normalize(xb.to(device, non_blocking=True))
            yb = yb.to(device, non_blocking=True)
            with _autocast(device, config):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
        loss_total, correct_total = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
        seconds = time.perf_counter() - start
        stats = {
            "loss": loss_total / seen, "accuracy": correct_total / seen, "lr": lr,
            "seconds": seconds, "images_per_s": seen / seconds if seconds > 0 else float("inf"),
        }
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats)
    return history


@torch.inference_mode()
def predict(
    model: torch.nn.Module, images: torch.Tensor, *, config: TrainConfig, device: torch.device
) -> np.ndarray:
    """Softmax probabilities float64 (N, K) of uint8 ``images`` (N, 3, S, S), in order."""
    cuda = device.type == "cuda"
    normalize = _to_device(model, device)
    model.eval()
    chunks = []
    step = 2 * config.batch_size
    for start in range(0, len(images), step):
        xb = images[start : start + step]
        if cuda:
            xb = xb.pin_memory()
        xb = normalize(xb.to(device, non_blocking=True))
        with _autocast(device, config):
            chunks.append(model(xb).float())
    logits = torch.cat(chunks).cpu().double()
    return torch.softmax(logits, dim=1).numpy()


def _local_live_class():
    """dvclive.Live writing files under its ``dir`` only. Even with ``save_dvc_exp=False, dvcyaml=None``
    (dvclive 3.49) Live opens the DVC repo (running ``dvc init`` in a git repo without one), reads
    Studio settings, and inside ``dvc exp run`` git-adds files under its dir, a temporary folder
    here. The two overridden hooks are dvclive internals: fail loudly if an upgrade renames them."""
    from dvclive import Live

    if not all(callable(getattr(Live, hook, None)) for hook in ("_init_dvc", "_init_studio")):
        raise RuntimeError("this dvclive version lacks Live._init_dvc/_init_studio; update labelbench.train.crossval")

    class LocalLive(Live):
        def _init_dvc(self):
            self._dvc_repo = None
            self._dvc_file = "dvc.yaml"  # never written: dvcyaml=None

        def _init_studio(self):
            self._studio_events_to_skip = {"start", "data", "done"}

    return LocalLive


@dataclass
class FoldResult:
    out_dir: Path
    heldout_indices: np.ndarray
    pred_probs: np.ndarray
    history: list[dict[str, float]]
    heldout_accuracy: float
    seconds: float


def train_fold(
    *, images_root: os.PathLike | str, labels_csv: os.PathLike | str, folds_csv: os.PathLike | str,
    fold: int, config: TrainConfig, out_dir: os.PathLike | str,
) -> FoldResult:
    """Train on every fold but ``fold``, predict ``fold``; write ``out_dir`` (module docstring)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    table = read_labels_csv(labels_csv)
    image_ids = table["image_id"].tolist()
    folds = read_folds_csv(folds_csv, image_ids, labels_csv=labels_csv)
    found = sorted(set(folds.tolist()))
    if found != list(range(config.folds)):
        raise DataError(
            folds_csv, f"holds folds {found[:20]} but crossval.folds is {config.folds} (expected 0..{config.folds - 1})"
        )
    k, classes = num_classes_of(images_root, table, labels_csv=labels_csv)
    given = table["given_label"].to_numpy(np.int64)
    held = np.flatnonzero(folds == fold).astype(np.int64)
    train_rows = np.flatnonzero(folds != fold).astype(np.int64)
    absent = np.flatnonzero(np.bincount(given[train_rows], minlength=k) == 0)
    if absent.size:
        def describe(c):
            name = f" ({classes[c]!r})" if classes else ""
            return f"class {c}{name}" + ("" if (given == c).any() else ", and none in the whole labels table")

        raise DataError(
            folds_csv, f"{', '.join(describe(int(c)) for c in absent[:_SHOWN])}: no training example when fold "
            f"{fold} is held out (training folds {[f for f in found if f != fold]}); every class needs examples "
            "outside each fold (use stratified folds)"
        )

    device = resolve_device(config.device)
    with torch_settings(config, device):
        model = create_model(config.model, num_classes=k, pretrained=config.pretrained)
        images = load_images(images_root, image_ids, config.image_size, listed_in=labels_csv)
        labels = torch.from_numpy(given)

        with atomic_dir(out_dir) as tmp:
            live = _local_live_class()(dir=str(tmp / "dvclive"), save_dvc_exp=False, dvcyaml=None, report=None)
            live.log_params({**config.to_dict(), "fold": fold, "num_classes": k})

            def on_epoch(epoch: int, stats: dict[str, float]) -> None:
                # wall-clock figures (seconds, images/s) stay out of the outputs: the fold folder
                # must be byte-identical across reruns so `dvc repro` changes nothing
                live.log_metric("train/loss", stats["loss"])
                live.log_metric("train/accuracy", stats["accuracy"])
                live.log_metric("lr", stats["lr"])
                live.next_step()

            train_idx = torch.from_numpy(train_rows)
            history = fit(model, images[train_idx], labels[train_idx], config=config, device=device, on_epoch=on_epoch)
            probs = predict(model, images[torch.from_numpy(held)], config=config, device=device)
            heldout_accuracy = float((probs.argmax(1) == given[held]).mean())
            live.log_metric("heldout/accuracy_vs_given", heldout_accuracy, plot=False)
            live.end()

            from safetensors.torch import save_model

            model.to("cpu").to(memory_format=torch.contiguous_format)
            # one metadata key: safetensors writes a dict's keys in no fixed order
            meta = {"labelbench": json.dumps({"model": config.model, "num_classes": k}, sort_keys=True)}
            save_model(model, str(tmp / "model.safetensors"), metadata=meta)
            write_npy(tmp / "heldout_indices.npy", held)
            write_npy(tmp / "heldout_pred_probs.npy", probs)
            echo = {
                **config.to_dict(), "fold": fold, "num_classes": k, "num_examples": len(given),
                "num_heldout": int(held.size), "device_used": device.type,
                "images": str(images_root), "labels": str(labels_csv), "folds_csv": str(folds_csv),
            }
            write_text(tmp / "config.yaml", yaml.safe_dump(echo, default_flow_style=False, sort_keys=False))
    return FoldResult(
        out_dir=out_dir, heldout_indices=held, pred_probs=probs, history=history,
        heldout_accuracy=heldout_accuracy, seconds=time.perf_counter() - started,
    )


def load_fold_model(fold_dir: os.PathLike | str, *, device: str = "cpu") -> torch.nn.Module:
    """Rebuild a trained fold's model from ``config.yaml`` + ``model.safetensors`` (no pickles)."""
    from safetensors.torch import load_model

    config_path = Path(fold_dir) / "config.yaml"
    if not config_path.is_file():
        raise DataError(config_path, "file not found")
    echo = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    model = create_model(echo["model"], num_classes=int(echo["num_classes"]), pretrained=False)
    load_model(model, str(Path(fold_dir) / "model.safetensors"), device=device)
    return model

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
      records/                   what other detector families need (:mod:`labelbench.evaluation.detectors`):
        train_indices.npy        int64 (n_train,)   row indices into labels.csv of the training rows
        train_logits.npy         float32 (E, n_train, K) each training row's logits in each epoch, as the model
                                 saw it in that epoch (augmented, train mode); NaN in an epoch that did not train
                                 on it (each epoch drops its ragged last batch)
        heldout_logits.npy       float32 (E, n_fold, K) the held-out rows' logits after each epoch (eval mode)
        embeddings.npy           float16 (N, D) every row's penultimate-layer features (timm ``pre_logits``) under
                                 the final model: held-out rows out-of-sample, training rows as their neighbours

Images are kept at a bounded stored size, in memory or read per batch, and resized, augmented and
normalised per batch on the device (:mod:`labelbench.train.images`); optimizer and schedule come
from timm's factories. On CPU a fixed seed gives the same bytes on any x86-64 host (seeded init, shuffle
and augmentation, deterministic algorithms, one thread, host-independent kernels: :mod:`labelbench.train.host`).
On CUDA: channels_last, GPU-resident or pinned batches, bf16 autocast, and no host sync inside an epoch.
"""

from __future__ import annotations

from labelbench.train import host  # noqa: I001  first: pins torch's CPU kernels before torch loads

import contextlib
import difflib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence
from unittest import mock

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml

from labelbench.config import Runtime, Train
from labelbench.data.files import _SHOWN, DataError, StageError, atomic_dir, int_column, read_classes, read_csv_strings
from labelbench.data.files import read_labels_csv, read_text, write_npy, write_text
from labelbench.data.verify import verify
from labelbench.train.images import DeviceTransform, ImageRows, batches, epoch_index_batches, open_images


class PretrainedWeightsUnavailable(StageError):
    """``pretrained: true`` but the weights cannot be fetched (offline) nor found in the cache."""


class TrainConfig(Train):
    """params.yaml's ``train`` block (:class:`~labelbench.config.Train`, validated the same way) plus the timm
    ``model`` and ``folds`` = k: what one crossval stage trains (how the machine runs it is :class:`Runtime`)."""

    model: str
    folds: int

    @classmethod
    def of(cls, train: Train, *, model: str, folds: int) -> "TrainConfig":
        return cls(model=model, folds=folds, **train.model_dump())

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values in the order of each fold's ``config.yaml`` echo: model, the train block, folds."""
        return {"model": self.model, **self.model_dump(exclude={"model", "folds"}), "folds": self.folds}


def read_folds_csv(path: os.PathLike | str, image_ids: Sequence[str], *, labels_csv=None) -> np.ndarray:
    """Fold of every row (N,) int64; the ``image_id`` column must match ``image_ids`` in order."""
    raw = read_csv_strings(path, columns=("image_id", "fold"))
    reference = f"the labels table ({labels_csv})"
    if len(raw) != len(image_ids):
        raise DataError(path, f"has {len(raw)} rows but {reference} has {len(image_ids)}")
    ids = raw["image_id"].str.strip().to_numpy()
    differ = np.flatnonzero(ids != np.asarray(image_ids, dtype=object))
    if differ.size:
        i = int(differ[0])
        raise DataError(path, f"{differ.size} row(s) differ from {reference}: row {i + 1} is {ids[i]!r}, "
                              f"expected {image_ids[i]!r} (rows must be in labels.csv order)")
    return int_column(raw["fold"], path, "fold", allow_empty=False).to_numpy(np.int64)


def num_classes_of(images_root, labels: pd.DataFrame, *, labels_csv=None) -> tuple[int, list[str] | None]:
    """K from ``classes.txt`` beside the images folder when present, else max label + 1."""
    path = Path(images_root).parent / "classes.txt"
    classes = read_classes(path) if path.is_file() else None
    top = int(labels[["given_label", "true_label"]].max().max())
    if classes is None:
        if top < 1:
            raise DataError(labels_csv, f"needs at least 2 classes, labels hold only {top + 1}")
        return top + 1, None
    if top >= len(classes):
        raise DataError(labels_csv, f"holds label {top} but classes.txt lists only {len(classes)} classes")
    return len(classes), classes


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


@contextlib.contextmanager
def torch_settings(config: TrainConfig, device: torch.device):
    """Seed everything; on CPU also deterministic algorithms, one thread, oneDNN and NNPACK off (restored on exit),
    in a process whose kernels were pinned before torch loaded (:mod:`labelbench.train.host`)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    with contextlib.ExitStack() as restore:
        restore.callback(torch.set_num_threads, threads)
        restore.callback(torch.use_deterministic_algorithms, deterministic[0], warn_only=deterministic[1])
        torch.manual_seed(config.seed)
        if device.type == "cpu":
            host.check()
            # more threads split reductions differently (other bytes); oneDNN and NNPACK pick their convolution
            # kernels by the host (instruction set, caches): convolutions then run as im2col + MKL's pinned GEMM
            torch.set_num_threads(1)
            restore.callback(setattr, torch.backends.mkldnn, "enabled", torch.backends.mkldnn.enabled)
            torch.backends.mkldnn.enabled = False
            restore.enter_context(torch.backends.nnpack.flags(enabled=False))
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            restore.callback(setattr, torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
            torch.backends.cudnn.benchmark = True
        yield


def _autocast(device: torch.device, config: TrainConfig):
    enabled = device.type == "cuda" and config.mixed_precision
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _on_device(model: torch.nn.Module, *, config: TrainConfig, device: torch.device) -> DeviceTransform:
    """Move ``model`` to ``device`` (channels_last on CUDA); its input transform, seeded with ``config.seed``."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return DeviceTransform(model, size=config.image_size, scale=config.scale, ratio=config.ratio,
                           hflip=config.hflip, seed=config.seed, device=device)


def _optimizer_and_schedule(model: torch.nn.Module, *, config: TrainConfig, steps: int, fused: bool = False):
    """timm's factories: ``create_optimizer_v2`` (no weight decay on norm and bias) and
    ``create_scheduler_v2`` stepped per update (``steps`` updates per epoch). ``fused``: the optimizer's fused
    kernel where it has one (on CPU: its square roots are exact, the per-tensor path's go through MKL's
    vector math library, whose last bits depend on the host)."""
    import inspect

    from timm.optim import create_optimizer_v2, get_optimizer_info
    from timm.scheduler import create_scheduler_v2

    fused = fused and "fused" in inspect.signature(get_optimizer_info(config.opt).opt_class).parameters
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay,
                                    momentum=config.momentum, **({"fused": True} if fused else {}))
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=config.sched, num_epochs=config.epochs, warmup_epochs=config.warmup_epochs,
        min_lr=config.min_lr, step_on_epochs=False, updates_per_epoch=steps,
    )
    return optimizer, scheduler


def fit(
    model: torch.nn.Module, rows: ImageRows, labels: torch.Tensor, train_rows: np.ndarray, *, config: TrainConfig,
    device: torch.device, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    max_steps: int | None = None, workers: int = 0, heldout: np.ndarray | None = None,
) -> tuple[list[dict[str, float]], dict[str, np.ndarray | None]]:
    """Train ``model`` in place on the rows ``train_rows`` (n,) int64, sorted, of ``rows`` / ``labels`` (N,) int64.

    The train block's timm optimizer and schedule, on-device augmentation (:class:`DeviceTransform`),
    cross-entropy. Returns per-epoch ``{loss, accuracy, lr, seconds, images_per_s}`` (also passed to
    ``on_epoch(epoch, stats)``) and the records: ``train_logits`` float32 (E, n, K), each training row's logits as
    the model saw it in each epoch, and with ``heldout`` (m,) rows ``heldout_logits`` float32 (E, m, K) after each
    epoch (an eval pass that leaves training as it was: no gradient, no random draw). ``max_steps``: stop each epoch
    after that many batches (benchmarks). ``workers``: DataLoader processes for rows read per batch (the same bytes
    for any number).
    """
    transform = _on_device(model, config=config, device=device)
    shuffle = torch.Generator().manual_seed(config.seed)
    steps = len(epoch_index_batches(train_rows, batch_size=config.batch_size, generator=torch.Generator()))
    optimizer, scheduler = _optimizer_and_schedule(model, config=config, steps=steps, fused=device.type == "cpu")
    history = []
    train_logits, heldout_logits = None, []  # (E, n, K) on the device once K is known; (m, K) per epoch
    position = torch.from_numpy(np.searchsorted(train_rows, np.arange(len(rows)))).to(device)  # row -> record slot
    model.train()
    updates = 0
    for epoch in range(config.epochs):
        start = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        lr = optimizer.param_groups[0]["lr"]
        index_batches = epoch_index_batches(train_rows, batch_size=config.batch_size, generator=shuffle)[:max_steps]
        for indices, (xb, yb) in zip(index_batches, batches(rows, labels, index_batches, device=device,
                                                            workers=workers)):
            xb = transform.train(xb)
            with _autocast(device, config):
                logits = model(xb)
            if train_logits is None:
                train_logits = torch.full((config.epochs, len(train_rows), logits.shape[1]), float("nan"),
                                          device=device)
            train_logits[epoch, position[torch.as_tensor(indices, device=device)]] = logits.detach().float()
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += yb.shape[0]
        scheduler.step(epoch + 1)
        if heldout is not None and train_logits is not None:
            heldout_logits.append(_forward_eval(model, rows, heldout, config=config, device=device, workers=workers)[0])
            model.train()
        loss_total, correct_total = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
        seconds = time.perf_counter() - start
        stats = {
            "loss": loss_total / seen, "accuracy": correct_total / seen, "lr": lr,
            "seconds": seconds, "images_per_s": seen / seconds if seconds > 0 else float("inf"),
        }
        history.append(stats)
        if on_epoch is not None:
            on_epoch(epoch, stats)
    return history, {"train_logits": None if train_logits is None else train_logits.cpu().numpy(),
                     "heldout_logits": torch.stack(heldout_logits).cpu().numpy() if heldout_logits else None}


@torch.inference_mode()
def _forward_eval(
    model: torch.nn.Module, rows: ImageRows, which: np.ndarray, *, config: TrainConfig, device: torch.device,
    workers: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode logits float32 (n, K) and penultimate features (n, D) of the rows ``which`` (n,) of ``rows``, in that
    order, on ``device``: timm's ``forward_head(..., pre_logits=True)`` then the classifier, the same operations as
    ``model(x)``."""
    transform = _on_device(model, config=config, device=device)
    model.eval()
    step = 2 * config.batch_size
    index_batches = [which[s : s + step].tolist() for s in range(0, len(which), step)]
    labels = torch.zeros(len(rows), dtype=torch.int64)  # unused by prediction
    logits, features = [], []
    for xb, _ in batches(rows, labels, index_batches, device=device, workers=workers):
        with _autocast(device, config):
            pre = model.forward_head(model.forward_features(transform.eval(xb)), pre_logits=True)
            logits.append(model.get_classifier()(pre).float())
        features.append(pre.float())
    return torch.cat(logits), torch.cat(features)


def predict(
    model: torch.nn.Module, rows: ImageRows, which: np.ndarray, *, config: TrainConfig, device: torch.device,
    workers: int = 0,
) -> np.ndarray:
    """Softmax probabilities float64 (n, K) of the rows ``which`` (n,) int64 of ``rows``, in that order."""
    return softmax(_forward_eval(model, rows, which, config=config, device=device, workers=workers)[0])


def softmax(logits: torch.Tensor) -> np.ndarray:
    """Probabilities float64 (n, K) of ``logits`` float32 (n, K), computed where the logits are."""
    # in float32, as trained (and as the authors' pred_probs): float64's exp is the C library's, whose last bits
    # depend on the host's instruction set (FMA or not)
    return torch.softmax(logits, dim=1).cpu().double().numpy()


#: Environment variables through which `dvc repro` / `dvc exp run` tell DVCLive it runs inside a
#: stage (DVCLive's documented integration). A fold logs into a temporary folder that becomes its
#: output, so it must not take part: no git-adding of that folder, no experiment of its own.
_DVC_STAGE_ENV = ("DVC_ROOT", "DVC_EXP_BASELINE_REV", "DVC_EXP_NAME")


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
    fold: int, config: TrainConfig, runtime: Runtime, out_dir: os.PathLike | str, max_steps: int | None = None,
) -> FoldResult:
    """Train on every fold but ``fold``, predict ``fold``; write ``out_dir`` (module docstring). ``runtime``:
    how the rows are held and read (no effect on the bytes written). ``max_steps``: at most that many
    batches per epoch (benchmarks only; the stage trains fully)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    for path in (images_root, Path(images_root).parent / "classes.txt", labels_csv, folds_csv):
        verify(path)  # the bytes DVC recorded (nothing to check outside a DVC output)
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

    cuda = torch.cuda.is_available()
    if config.device == "cuda" and not cuda:
        raise ValueError("train.device is 'cuda' but CUDA is not available on this machine; use 'auto' or 'cpu'")
    device = torch.device(("cuda" if cuda else "cpu") if config.device == "auto" else config.device)
    with torch_settings(config, device):
        model = create_model(config.model, num_classes=k, pretrained=config.pretrained)
        rows = open_images(images_root, image_ids, max_stored_size=config.max_stored_size,
                           max_resident_mb=runtime.max_resident_mb, listed_in=labels_csv)
        labels = torch.from_numpy(given)

        with atomic_dir(out_dir) as tmp, mock.patch.dict(os.environ):  # restores the environment on exit
            for key in _DVC_STAGE_ENV:
                os.environ.pop(key, None)
            from dvclive import Live

            live = Live(dir=str(tmp / "dvclive"), save_dvc_exp=False, dvcyaml=None, report=None)
            live.log_params({**config.to_dict(), "fold": fold, "num_classes": k})

            def on_epoch(epoch: int, stats: dict[str, float]) -> None:
                # wall-clock figures (seconds, images/s) stay out of the outputs: the fold folder
                # must be byte-identical across reruns so `dvc repro` changes nothing
                live.log_metric("train/loss", stats["loss"])
                live.log_metric("train/accuracy", stats["accuracy"])
                live.log_metric("lr", stats["lr"])
                live.next_step()

            history, records = fit(model, rows, labels, train_rows, config=config, device=device, on_epoch=on_epoch,
                                   max_steps=max_steps, workers=runtime.workers, heldout=held)
            # the held-out rows' logits after the last epoch are the final model's predictions: no second pass
            probs = softmax(torch.from_numpy(records["heldout_logits"][-1]).to(device))
            _, features = _forward_eval(model, rows, np.arange(len(given)), config=config, device=device,
                                        workers=runtime.workers)
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
            records.update(train_indices=train_rows, embeddings=features.cpu().numpy().astype(np.float16))
            for name, array in records.items():
                write_npy(tmp / "records" / f"{name}.npy", array)
            echo = {
                **config.to_dict(), "fold": fold, "num_classes": k, "num_examples": len(given),
                "num_heldout": int(held.size), "stored_size": rows.side, "device_used": device.type,
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

    echo = yaml.safe_load(read_text(Path(fold_dir) / "config.yaml"))
    model = create_model(echo["model"], num_classes=int(echo["num_classes"]), pretrained=False)
    load_model(model, str(Path(fold_dir) / "model.safetensors"), device=device)
    return model

"""Assemble per-fold held-out predictions (``heldout_indices.npy``, ``heldout_pred_probs.npy`` of
:func:`labelbench.train.crossval.train_fold`) into the pred_probs data contract of :mod:`labelbench.data.io`:
true_labels.npy only when every row has a true_label; label_errors.npy = label_error, else given != true.
Every row must be in exactly one fold of each model; the output is checked with ``load_dataset``
before it replaces an older one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from labelbench.data.io import _SHOWN, DataError, check_pred_probs, load_dataset, load_npy, read_labels_csv
from labelbench.data.io import atomic_dir, write_npy, write_text
from labelbench.data.verify import verify


def _fold_arrays(fold_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not fold_dir.is_dir():
        raise DataError(fold_dir, "fold folder not found (did its crossval stage run?)")
    verify(fold_dir)
    idx_path = fold_dir / "heldout_indices.npy"
    probs_path = fold_dir / "heldout_pred_probs.npy"
    indices = load_npy(idx_path)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":  # not np.integer, which holds timedelta64
        raise DataError(idx_path, f"expected a 1-D integer array, got {indices.dtype} {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise DataError(
            idx_path, f"row indices outside [0, {n}) of the labels table: min {indices.min()}, max {indices.max()}"
        )
    probs = check_pred_probs(load_npy(probs_path), probs_path)
    if probs.shape[0] != indices.shape[0]:
        raise DataError(probs_path, f"has {probs.shape[0]} rows but {idx_path.name} has {indices.shape[0]}")
    return indices.astype(np.int64, copy=False), probs


def assemble_pred_probs(fold_dirs: Sequence[os.PathLike | str], n: int) -> np.ndarray:
    """(n, K) float64 from the held-out predictions of ``fold_dirs``: each row exactly once."""
    out: np.ndarray | None = None
    owner = np.full(n, -1, dtype=np.int64)  # which fold dir filled each row
    dirs = [Path(d) for d in fold_dirs]
    for j, fold_dir in enumerate(dirs):
        indices, probs = _fold_arrays(fold_dir, n)
        if out is None:
            out = np.empty((n, probs.shape[1]), dtype=np.float64)
        elif probs.shape[1] != out.shape[1]:
            raise DataError(
                fold_dir / "heldout_pred_probs.npy",
                f"has {probs.shape[1]} classes but {dirs[0]} has {out.shape[1]}",
            )
        unique, counts = np.unique(indices, return_counts=True)
        if (counts > 1).any():
            rows = unique[counts > 1]
            raise DataError(fold_dir / "heldout_indices.npy",
                            f"{rows.size} row(s) repeated within the fold: {rows[:_SHOWN].tolist()}")
        taken = owner[indices] >= 0
        if taken.any():
            rows = indices[taken]
            other = dirs[int(owner[rows[0]])]
            raise DataError(
                fold_dir, f"{rows.size} held-out row(s) also held out in {other}, e.g. rows "
                f"{rows[:_SHOWN].tolist()}; every example must appear in exactly one fold"
            )
        owner[indices] = j
        out[indices] = probs
    missing = np.flatnonzero(owner < 0)
    if missing.size:
        raise DataError(
            dirs[0].parent, f"{missing.size} of {n} row(s) appear in none of the fold folders "
            f"{[d.name for d in dirs]}, e.g. rows {missing[:_SHOWN].tolist()} (a missing or stale fold?)"
        )
    return out


def assemble(
    *, labels_csv: os.PathLike | str, fold_dirs: Mapping[str, Sequence[os.PathLike | str]],
    out_root: os.PathLike | str, dataset: str,
):
    """Write ``<out_root>/<dataset>/`` (module docstring) and return its :class:`~labelbench.data.io.Dataset`."""
    if not dataset or "/" in dataset or dataset in (".", ".."):
        raise ValueError(f"invalid dataset name {dataset!r}")
    for model in fold_dirs:
        if not model or "/" in model or model.startswith("."):
            raise ValueError(f"invalid model name {model!r} (it becomes pred_probs/<model>.npy)")
    verify(labels_csv)
    table = read_labels_csv(labels_csv)
    n = len(table)
    given = table["given_label"].to_numpy(np.int64)
    true = table["true_label"].to_numpy(np.int64) if table["true_label"].notna().all() else None
    if table["label_error"].notna().all():
        errors = table["label_error"].to_numpy(np.int64).astype(bool)
    elif true is not None:
        errors = given != true
    else:
        raise DataError(
            labels_csv, "needs label_error (or true_label) on every row to build label_errors.npy; "
            f"{int(table['label_error'].isna().sum())} row(s) have neither"
        )
    pred_probs = {model: assemble_pred_probs(dirs, n) for model, dirs in fold_dirs.items()}
    top = int(max(given.max(), true.max() if true is not None else 0))
    for model, probs in pred_probs.items():
        if top >= probs.shape[1]:
            raise DataError(Path(fold_dirs[model][0]) / "heldout_pred_probs.npy",
                            f"{probs.shape[1]} classes but {labels_csv} holds label {top}")

    with atomic_dir(Path(out_root) / dataset) as tmp:
        write_npy(tmp / "given_labels.npy", given)
        if true is not None:
            write_npy(tmp / "true_labels.npy", true)
        write_npy(tmp / "label_errors.npy", errors)
        write_text(tmp / "image_ids.txt", "".join(f"{i}\n" for i in table["image_id"]))
        for model, probs in pred_probs.items():
            write_npy(tmp / "pred_probs" / f"{model}.npy", probs)
        load_dataset(tmp.parent, tmp.name)  # check before replacing a previous output
    return load_dataset(out_root, dataset, verify=False)  # just written: dvc.lock records it when the stage ends

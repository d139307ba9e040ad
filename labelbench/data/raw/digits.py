"""scikit-learn's 8x8 handwritten digits: the small offline default (no download)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from labelbench.data.raw.layout import RawTable, save_png, write_raw


def convert_digits(*, out: os.PathLike | str) -> RawTable:
    """``sklearn.datasets.load_digits`` -> raw layout: image i (0..16 scaled to 0..255) as an 8x8
    grayscale PNG ``train/<digit>/<i:04d>.png``, given = true = the digit, rows in ImageFolder order."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = digits.target.astype(np.int64)
    pixels = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    table = RawTable(
        image_ids=[f"train/{label}/{i:04d}.png" for i, label in enumerate(labels)],
        given_labels=labels, classes=[str(d) for d in range(10)], true_labels=labels.copy(),
        label_errors=np.zeros(len(labels), dtype=bool),
    ).check("sklearn.datasets.load_digits")
    index_of = {image_id: i for i, image_id in enumerate(table.image_ids)}
    table = table.folder_sorted()
    write_raw(out, table, lambda path, image_id: save_png(path, Image.fromarray(pixels[index_of[image_id]])))
    return table

"""Training images whose memory does not grow with ``image_size``: stored small, resized on the device.

Every image of a labels table is kept at one *stored* side S (its native side, e.g. 32 px for
CIFAR, 8 px for digits; at most ``max_stored_size`` for larger ones, which are downscaled once
when decoded) and resized to the model's ``image_size`` per batch on the device. The rows live in

* memory: one uint8 tensor (N, 3, S, S) of the whole table, decoded once, when it fits
  ``max_resident_mb``; batches are gathered from it by row index (no per-fold copy), or
* files: decoded per batch by a ``DataLoader`` with ``workers`` processes (any dataset size).

Both yield the same bytes, so results do not depend on which one runs. On the device
:class:`DeviceTransform` turns a uint8 batch into the model's input, seeded by a ``torch.Generator``
so that reruns are byte-identical.
"""

from __future__ import annotations

import math
import operator
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from labelbench.data.files import DataError, check_images_present, open_image, rgb_image

#: keep the uint8 training images on the GPU when under this share of its free memory
RESIDENT_FRACTION = 0.25


def decode(path: Path, side: int) -> torch.Tensor:
    """One image as uint8 (3, side, side), RGB (grayscale replicated), resized with PIL's
    antialiased bilinear filter only when it is not already ``side`` x ``side``."""
    with open_image(path) as image:
        rgb = rgb_image(image)
    if rgb.size != (side, side):
        rgb = rgb.resize((side, side), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageRows(torch.utils.data.Dataset):
    """Row i of a labels table: its image as uint8 (3, S, S); from ``cache`` (N, 3, S, S) when given,
    else decoded from its file. ``rows(list)`` gives a batch (B, 3, S, S) in that order."""

    def __init__(self, paths: Sequence[Path], side: int, cache: torch.Tensor | None = None):
        self.paths, self.side, self.cache = list(paths), side, cache
        self.device_copy: torch.Tensor | bool | None = None  # the cache on the GPU (batches())

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.cache[i] if self.cache is not None else decode(self.paths[i], self.side)

    def __getitems__(self, rows: list[int]) -> list[torch.Tensor]:  # DataLoader's batched fetch
        if self.cache is not None:
            return [self.cache[torch.as_tensor(rows)]]
        return [torch.stack([decode(self.paths[i], self.side) for i in rows])]


def open_images(
    images_root: os.PathLike | str, image_ids: Sequence[str], *, max_stored_size: int, max_resident_mb: float,
    listed_in=None,
) -> ImageRows:
    """Check every image (present, readable header) before any work, choose the stored side
    S = min(largest side, ``max_stored_size``) and decode all N rows into memory when
    N * 3 * S * S bytes <= ``max_resident_mb`` MiB (else they are read per batch).

    Missing and unreadable images raise DataError naming them (``listed_in``: the file listing the ids).
    """
    images_root = Path(images_root)
    if not images_root.is_dir():
        raise DataError(images_root, "images folder not found")
    paths = [images_root / i for i in image_ids]
    check_images_present(images_root, image_ids, listed_in=listed_in)

    def largest_side(path: Path) -> int:
        with open_image(path) as image:  # reads the header only
            return max(image.size)

    # the cores this process may run on (its affinity mask, where the OS has one), not the host's
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with ThreadPoolExecutor(min(8, cores)) as pool:
        rows = ImageRows(paths, side=min(max_stored_size, max(pool.map(largest_side, paths))))
        if len(paths) * 3 * rows.side**2 <= max_resident_mb * 2**20:
            rows.cache = torch.empty((len(paths), 3, rows.side, rows.side), dtype=torch.uint8)
            list(pool.map(lambda i: rows.cache[i].copy_(decode(paths[i], rows.side)), range(len(paths))))
    return rows


def batches(
    rows: ImageRows, labels: torch.Tensor, index_batches: Sequence[list[int]], *, device: torch.device,
    workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 (B, 3, S, S), int64 (B,)) on ``device`` for each list of row indices, in order.

    In-memory rows: gathered from the cache (on CUDA from a copy on the GPU, made once, when it
    takes under RESIDENT_FRACTION of free memory). File rows, or a cache too large for the GPU: a
    DataLoader with ``workers`` processes (pinned memory on CUDA). ``labels``: (N,) int64, every row.
    """
    cuda = device.type == "cuda"
    if rows.cache is not None and cuda and rows.device_copy is None:
        fits = rows.cache.numel() <= RESIDENT_FRACTION * torch.cuda.mem_get_info(device)[0]
        rows.device_copy = rows.cache.to(device) if fits else False
    images_s = rows.device_copy if cuda else rows.cache
    if images_s is not None and images_s is not False:
        labels_s = labels.to(images_s.device)
        for index in index_batches:
            index = torch.as_tensor(index).to(images_s.device, non_blocking=True)
            yield images_s[index], labels_s[index]
        return
    loader = torch.utils.data.DataLoader(
        rows, batch_sampler=index_batches, num_workers=workers, collate_fn=operator.itemgetter(0), pin_memory=cuda,
    )
    loaded = iter(loader)
    for index in index_batches:
        try:
            xb = next(loaded)
        except RuntimeError:  # torch re-raises a worker's DataError as RuntimeError(traceback text): raise it here
            rows.__getitems__(index)
            raise
        yield xb.to(device, non_blocking=True), labels[torch.as_tensor(index)].to(device, non_blocking=True)


def epoch_index_batches(rows: np.ndarray, *, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One shuffled epoch of ``rows`` (row indices, (n,)) in batches of ``batch_size``: the last
    ragged batch is dropped (a batch of 1 breaks BatchNorm) unless there is only one batch."""
    order = rows[torch.randperm(len(rows), generator=generator).numpy()]
    size = min(batch_size, len(rows))
    return [order[s : s + size].tolist() for s in range(0, len(rows) - size + 1, size)]


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """IEEE square root. On CPU torch's goes through MKL's vector math library, whose last bits depend on the
    host (labelbench.train.host); numpy's is the correctly rounded instruction on any host."""
    return torch.from_numpy(np.sqrt(x.numpy())) if x.device.type == "cpu" else torch.sqrt(x)


class DeviceTransform:
    """uint8 batches (B, 3, S, S) on the device -> float model input (B, 3, size, size), normalised
    with the model's pretrained mean/std; channels_last on CUDA.

    ``train(x)``: per example a random crop of area fraction in ``scale`` and aspect ratio in
    ``ratio`` (log-uniform) of the stored image, flipped horizontally with probability ``hflip``,
    resampled bilinearly to ``size`` (timm's RandomResizedCrop + RandomHorizontalFlip as one
    ``grid_sample``; the crop is clamped to the image rather than retried). ``eval(x)``: the whole
    image resized to ``size`` (bilinear, antialiased).
    """

    def __init__(self, model: torch.nn.Module, *, size: int, scale: Sequence[float], ratio: Sequence[float],
                 hflip: float, seed: int, device: torch.device):
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(model)
        self.mean = torch.tensor(cfg["mean"], device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(cfg["std"], device=device).view(1, -1, 1, 1) * 255
        self.size, self.scale, self.hflip = size, tuple(scale), hflip
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)

    def train(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        u = torch.rand((b, 5), generator=self.generator, device=x.device)
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        ratio = torch.exp(self.log_ratio[0] + (self.log_ratio[1] - self.log_ratio[0]) * u[:, 1])
        w = _sqrt(area * ratio).clamp(max=1)  # crop width / image width
        h = _sqrt(area / ratio).clamp(max=1)
        cx = (1 - w) * (2 * u[:, 2] - 1)  # crop centre in [-1, 1] coordinates, crop inside the image
        cy = (1 - h) * (2 * u[:, 3] - 1)
        flip = torch.where(u[:, 4] < self.hflip, -1.0, 1.0)
        zero = torch.zeros_like(w)
        theta = torch.stack([torch.stack([w * flip, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
        grid = F.affine_grid(theta, [b, x.shape[1], self.size, self.size], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self._normalise(out)

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self._normalise(x)

#!/usr/bin/env python3
"""Training throughput of labelbench.train.fit on CUDA beside a bare timm + torch loop.

One fold's worth of generated data (random uint8 RGB images stored at 32x32, 10 classes, resized
to ``--image-size`` per batch on the GPU), resnet18, bf16 autocast, channels_last, in one process.
Prints images/s of

* ``ours``: :func:`labelbench.train.crossval.fit` with params.yaml's train block (timm optimizer and
  schedule, on-device random resized crop; GPU-resident batches, the default when they fit),
* ``ours_pinned``: the same with the DataLoader path (pinned memory, non_blocking copies),
* ``bare``: a minimal loop (uint8 batches already on the GPU, resize, normalise, forward, backward,
  fused AdamW step),

and the ratio ours / bare (goal >= 0.9). Steady state: the first epoch of every run (cuDNN
autotuning, allocator warm-up) is left out; each variant runs ``--repeats`` times, best kept.

    python benchmarks/gpu_train_throughput.py [--n 40000] [--image-size 224] [--batch-size 256] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def bare_loop(images_u8: torch.Tensor, labels: torch.Tensor, *, model_name: str, num_classes: int,
              batch_size: int, epochs: int, lr: float, seed: int, image_size: int) -> list[float]:
    """images/s of each epoch of the plainest reasonable loop; data already on the GPU, resized
    to ``image_size`` per batch (bilinear), normalised, fused AdamW at a constant lr."""
    import timm

    device = torch.device("cuda")
    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=3)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    mean = torch.tensor(model.pretrained_cfg["mean"], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(model.pretrained_cfg["std"], device=device).view(1, 3, 1, 1) * 255
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True)
    x_all, y_all = images_u8.to(device), labels.to(device)
    n = len(y_all)
    steps = n // batch_size
    rates = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(n, device=device)
        for s in range(steps):
            index = order[s * batch_size : (s + 1) * batch_size]
            x = x_all[index].float()
            if x.shape[-1] != image_size:
                x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
        rates.append(steps * batch_size / (time.perf_counter() - start))
    return rates


def ours(images_u8, labels, *, model_name, num_classes, batch_size, epochs, lr, seed, image_size,
         resident) -> list[float]:
    """images/s of each epoch of labelbench's ``fit``: params.yaml's train block (timm optimizer and
    schedule, on-device random resized crop) with this run's model, batch, lr, epochs and sizes;
    ``resident=False`` forces the DataLoader path (pinned memory) instead of GPU-resident batches."""
    import numpy as np

    from labelbench.config import CrossvalParams, load_params
    from labelbench.train.crossval import TrainConfig, create_model, fit
    from labelbench.train.images import ImageRows

    train = load_params(CrossvalParams, REPO / "params.yaml").train
    block = {**train.model_dump(), "epochs": epochs, "batch_size": batch_size, "lr": lr, "image_size": image_size,
             "seed": seed, "device": "cuda", "mixed_precision": True}
    config = TrainConfig.of(type(train).model_validate(block), model=model_name, folds=2)
    device = torch.device("cuda")
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=num_classes, pretrained=False)
    rows = ImageRows([None] * len(labels), images_u8.shape[-1], cache=images_u8)
    if not resident:
        rows.device_copy = False
    history, _ = fit(model, rows, labels, np.arange(len(labels)), config=config, device=device)
    return [h["images_per_s"] for h in history]


def steady(rates: list[float]) -> float:
    """Median images/s of the epochs after the first."""
    rest = sorted(rates[1:] or rates)
    return rest[len(rest) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n", type=int, default=40_000, help="training images (one fold of a 50k dataset)")
    parser.add_argument("--stored-size", type=int, default=32, help="side of the generated uint8 images")
    parser.add_argument("--image-size", type=int, default=224, help="model input side (resized per batch)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3, help=">= 2; the first is warm-up")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_train_throughput: CUDA is not available on this machine; this benchmark needs an NVIDIA GPU "
              "(torch.cuda.is_available() is False). Nothing was measured.", file=sys.stderr)
        return 2
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    torch.backends.cudnn.benchmark = True
    g = torch.Generator().manual_seed(args.seed)
    images = torch.randint(0, 256, (args.n, 3, args.stored_size, args.stored_size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, args.classes, (args.n,), generator=g)
    common = dict(model_name=args.model, num_classes=args.classes, batch_size=args.batch_size,
                  epochs=args.epochs, lr=args.lr, seed=args.seed, image_size=args.image_size)
    best = {"bare": 0.0, "ours": 0.0, "ours_pinned": 0.0}
    for _ in range(args.repeats):  # interleaved, so clock or thermal drift hits every variant alike
        best["bare"] = max(best["bare"], steady(bare_loop(images, labels, **common)))
        best["ours"] = max(best["ours"], steady(ours(images, labels, **common, resident=None)))
        best["ours_pinned"] = max(best["ours_pinned"], steady(ours(images, labels, **common, resident=False)))
        torch.cuda.empty_cache()
    result = {
        "device": torch.cuda.get_device_name(0), "model": args.model, "image_size": args.image_size, "stored_size": args.stored_size,
        "n": args.n, "batch_size": args.batch_size, "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "ratio": round(best["ours"] / best["bare"], 3), "ratio_pinned": round(best["ours_pinned"] / best["bare"], 3),
    }
    print(f"device: {result['device']}  {args.model} {args.image_size}x{args.image_size}, batch {args.batch_size}, "
          f"{args.n} images, bf16, channels_last")
    print(f"bare timm+torch loop : {best['bare']:10.0f} images/s")
    print(f"labelbench fit       : {best['ours']:10.0f} images/s  ratio {result['ratio']:.3f} (goal >= 0.9)")
    print(f"fit, pinned loader   : {best['ours_pinned']:10.0f} images/s  ratio {result['ratio_pinned']:.3f}")
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

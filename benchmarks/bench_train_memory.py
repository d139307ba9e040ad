#!/usr/bin/env python3
"""Peak memory and speed of one cross-validation fold process at ``image_size`` 224, new vs old data path.

Generates CIFAR-shaped data once in a temporary folder: 32x32 RGB PNG files (random smooth
colour blobs), 10 classes, a labels.csv and a 5-fold folds.csv (the largest ``--sizes``; smaller
sizes list its first rows). Then, for each size, runs ONE fold process per variant, each a fresh
``python`` interpreter (this file with ``--child``) that calls the real training entry point
``train_fold`` (fold 0 held out, 1 epoch, ``--model``, batch ``--batch-size``) and writes the fold
folder. Fold 0 holds only the first ``--heldout`` rows (the rest are the training rows), so that
predicting it at 224 px stays short on a CPU while the training rows are the whole dataset. Variants:

* ``new``: labelbench.train.crossval of this checkout (images kept at 32 px in memory, resized to
  224 per batch; params.yaml's other train settings);
* ``new-files``: the same with ``max_resident_mb: 0`` (images read from their files per batch
  by ``--workers`` DataLoader processes), the path of datasets that do not fit in memory;
* ``old``: ``git show <--old-ref>:labelbench/train/crossval.py`` loaded as a temporary module
  (decodes every image at 224 px up front, then copies the training rows).

Timed, per process: ``wall`` = process start to fold folder written (interpreter start, imports,
image loading, training, prediction of the held-out fold, writing); ``train images/s`` = images
of the training loop / its seconds (torch's ``fit`` history). An epoch at 224 px on this CPU is
far too long, so each epoch stops after ``--max-steps`` batches (``train_fold(max_steps=...)``;
the old path's batch source truncated alike): ``epoch s (extrapolated)`` = training rows /
train images/s. Peak RSS = ``resource.getrusage`` ``ru_maxrss`` of the fold process (plus its
DataLoader workers' peak, reported apart), read by the child at its end.

    python benchmarks/bench_train_memory.py [--sizes 10000 50000] [--old-sizes 10000] [--max-steps 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

K_CLASSES, K_FOLDS = 10, 5


def generate(root: Path, n: int, *, heldout: int, seed: int = 0) -> None:
    """``n`` 32x32 RGB PNGs under ``root/images/train/<class>/``, labels.csv, folds.csv: fold 0 (the
    held-out fold of the runs) is the first ``heldout`` rows, folds 1-4 share the rest."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    lines, folds = ["image_id,given_label,true_label,label_error"], ["image_id,fold"]
    for i in range(n):
        c = i % K_CLASSES
        image_id = f"train/{c}/{i:06d}.png"
        path = root / "images" / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        cy, cx = rng.uniform(4, 28, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (3 + c) ** 2))
        colour = rng.uniform(0, 255, 3)
        pixels = blob[..., None] * colour + rng.normal(0, 12, (32, 32, 3)) + 30
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB").save(path)
        lines.append(f"{image_id},{c},{c},0")
        folds.append(f"{image_id},{0 if i < heldout else 1 + i % (K_FOLDS - 1)}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "folds.csv").write_text("\n".join(folds) + "\n")
    (root / "classes.txt").write_text("".join(f"class{c}\n" for c in range(K_CLASSES)))


def subset(root: Path, n: int, dest: Path) -> None:
    """labels.csv / folds.csv of the first ``n`` rows of ``root`` (same images folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("labels.csv", "folds.csv"):
        lines = (root / name).read_text().splitlines()
        (dest / name).write_text("\n".join(lines[: n + 1]) + "\n")


def child(args) -> int:
    """One fold process: train_fold of the chosen variant; prints a JSON line of its figures."""
    import itertools

    import labelbench.train.host  # noqa: F401  first: CPU training needs torch's kernels pinned before it loads
    import yaml

    from labelbench.config import CrossvalParams, Runtime, load_params, load_runtime

    train = load_params(CrossvalParams, REPO / "params.yaml").train
    settings = {**train.model_dump(), "epochs": 1, "batch_size": args.batch_size, "image_size": args.image_size,
                "device": args.device}
    runtime = Runtime.model_validate({**load_runtime(REPO / "params.yaml").model_dump(), "workers": args.workers,
                                      **({"max_resident_mb": 0} if args.child == "new-files" else {})})
    data = dict(images_root=args.root / "images", labels_csv=args.table / "labels.csv",
                folds_csv=args.table / "folds.csv", fold=0, out_dir=args.out)
    if args.child in ("new", "new-files"):
        from labelbench.train.crossval import TrainConfig, train_fold

        config = TrainConfig.of(type(train).model_validate(settings), model=args.model, folds=K_FOLDS)
        result = train_fold(**data, config=config, runtime=runtime, max_steps=args.max_steps or None)
    else:
        source = subprocess.run(["git", "show", f"{args.old_ref}:labelbench/train/crossval.py"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout
        args.out.parent.mkdir(parents=True, exist_ok=True)
        module_path = args.out.parent / "old_crossval.py"
        module_path.write_text(source)
        spec = importlib.util.spec_from_file_location("old_crossval", module_path)
        old = importlib.util.module_from_spec(spec)
        sys.modules["old_crossval"] = old  # dataclasses look their module up
        spec.loader.exec_module(old)
        full = old.batch_source

        def limited(*a, **k):
            epoch_batches, steps = full(*a, **k)
            return (lambda: itertools.islice(epoch_batches(), args.max_steps or None)), steps

        old.batch_source = limited
        old_settings = {**settings, **runtime.model_dump(), "threads": args.threads}
        fields = {k: v for k, v in old_settings.items() if k in old.TrainConfig.__dataclass_fields__}
        config = old.TrainConfig(model=args.model, folds=K_FOLDS, **fields)
        result = old.train_fold(**data, config=config)
    echo = yaml.safe_load((args.out / "config.yaml").read_text())
    stats = result.history[0]
    n_train = echo["num_examples"] - echo["num_heldout"]
    print(json.dumps({
        "variant": args.child, "n": echo["num_examples"], "n_train": n_train,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "train_images_per_s": stats["images_per_s"], "epoch_s_extrapolated": n_train / stats["images_per_s"],
        "stored_size": echo.get("stored_size", echo["image_size"]), "threads": echo.get("threads", 1),
    }))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--old-sizes", type=int, nargs="*", default=[10_000],
                        help="sizes also run with the old path (it holds N*3*224*224 bytes plus a copy: "
                             "50,000 images need about 14 GB)")
    parser.add_argument("--files-sizes", type=int, nargs="*", default=[50_000],
                        help="sizes also run with images read from files per batch (max_resident_mb 0)")
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-steps", type=int, default=4, help="training batches per epoch that are run (0: all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--heldout", type=int, default=256, help="rows of fold 0, predicted at the end")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes of the new-files variant")
    parser.add_argument("--old-ref", default="b573d76", help="a commit with the old data path (b573d76: the last one)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of every fold process")
    parser.add_argument("--data", type=Path, help="reuse data generated by an earlier run (its data/ folder)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", choices=["new", "new-files", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    results = []
    with tempfile.TemporaryDirectory(prefix="bench_train_memory.") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data_dir = args.data or tmp / "data"
        if args.data is None:
            generate(data_dir, max(args.sizes), heldout=args.heldout)
            print(f"generated {max(args.sizes)} PNGs (32x32, {K_CLASSES} classes) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        runs = [("new", n) for n in args.sizes] + [("old", n) for n in args.old_sizes]
        runs += [("new-files", n) for n in args.files_sizes]
        for variant, n in runs:
            table = tmp / f"table_{n}"
            subset(data_dir, n, table)
            out = tmp / f"out_{variant}_{n}" / "fold_0"
            cmd = [sys.executable, __file__, "--child", variant, "--root", str(data_dir), "--table", str(table),
                   "--out", str(out), "--model", args.model, "--image-size", str(args.image_size),
                   "--batch-size", str(args.batch_size), "--max-steps", str(args.max_steps),
                   "--workers", str(args.workers if variant == "new-files" else 0), "--old-ref", args.old_ref,
                   "--device", args.device, "--threads", str(args.threads)]
            start = time.perf_counter()
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={
                **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))})
            wall = time.perf_counter() - start
            if done.returncode != 0:
                print(f"{variant} n={n} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["wall_s"] = wall
            results.append(row)
            print(f"{variant:9s} n={n:6d}: peak RSS {row['peak_rss_mib']:7.0f} MiB (workers {row['workers_peak_rss_mib']:.0f}),"
                  f" train {row['train_images_per_s']:6.1f} images/s, wall {wall:6.1f} s", flush=True)

    steps = f"{args.max_steps} training batches of the epoch run (epoch time extrapolated)" if args.max_steps \
        else "the whole epoch run"
    print(f"\nOne fold process (fold 0 of 5, {args.heldout} held-out rows), {args.model} at {args.image_size} px, "
          f"batch {args.batch_size}, {args.device}, {steps}; wall = process start to fold folder written.")
    print(f"{'variant':10s} {'images':>7s} {'stored':>6s} {'peak RSS MiB':>12s} {'train img/s':>11s} "
          f"{'epoch s (extrap.)':>17s} {'wall s':>7s}")
    for r in results:
        print(f"{r['variant']:10s} {r['n']:7d} {r['stored_size']:6d} {r['peak_rss_mib']:12.0f} "
              f"{r['train_images_per_s']:11.1f} {r['epoch_s_extrapolated']:17.0f} {r['wall_s']:7.1f}")
    new = {r["n"]: r for r in results if r["variant"] == "new"}
    if len(new) >= 2:
        small, large = min(new), max(new)
        print(f"peak RSS new {large} / {small}: {new[large]['peak_rss_mib'] / new[small]['peak_rss_mib']:.2f}x "
              "(goal <= 1.5x, both < 4096 MiB)")
    for r in results:
        if r["variant"] == "old" and r["n"] in new:
            m = new[r["n"]]
            print(f"n={r['n']}: old / new peak RSS {r['peak_rss_mib'] / m['peak_rss_mib']:.2f}x, "
                  f"train images/s new / old {m['train_images_per_s'] / r['train_images_per_s']:.2f}x, "
                  f"wall old / new {r['wall_s'] / m['wall_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

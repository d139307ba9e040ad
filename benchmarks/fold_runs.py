"""Interleaved timing of the crossval stage's command for one digits fold, variant against variant (used by
bench_pinning.py and bench_records.py): each run a fresh process, timed from its start to the fold folder written."""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[1]


def stage_args(fold: int, out: Path) -> list[str]:
    """The crossval stage's arguments (dvc.yaml) for digits / test_resnet / ``fold``, writing ``out``."""
    cmd = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["crossval"]["cmd"]
    words = cmd.replace("${item.dataset}", "digits").replace("${item.model}", "test_resnet").replace(
        "${item.fold}", str(fold)).split()
    words[words.index("--out") + 1] = str(out)
    return words[2:]  # after "python stages/crossval.py"


def interleaved(variants: dict[str, Callable[[list[str]], list[str]]], *, fold: int, repeat: int,
                env: dict[str, str] | None = None, keep: Callable[[dict[str, list[Path]]], None] | None = None
                ) -> dict[str, list[float]]:
    """Seconds of each run of each variant (``variants``: name -> argv from the stage arguments), ``repeat`` rounds
    of one run per variant; prints each run with its model.safetensors md5 (the variants' bytes compared at a
    glance). ``keep`` sees every run's fold folder before they are deleted."""
    if not (REPO / "data/raw/digits/images").is_dir():
        sys.exit("digits inputs missing: dvc pull raw@digits noise@digits folds@digits")
    runs: dict[str, list[float]] = {name: [] for name in variants}
    folders: dict[str, list[Path]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeat):
            for name, argv in variants.items():
                out = Path(tmp) / f"{name.replace(' ', '_')}_{r}"
                start = time.perf_counter()
                subprocess.run(argv(stage_args(fold, out)), cwd=REPO, env=env, check=True, capture_output=True)
                runs[name].append(time.perf_counter() - start)
                folders[name].append(out)
                digest = hashlib.md5((out / "model.safetensors").read_bytes()).hexdigest()[:12]
                print(f"run {r + 1} {name:>12}: {runs[name][-1]:6.1f} s  model.safetensors md5 {digest}…", flush=True)
        if keep is not None:
            keep(folders)
    return runs


def report(runs: dict[str, list[float]], *, what: str, ratio: tuple[str, str]) -> float:
    """Print best and median per variant and the ratio ``ratio[0] / ratio[1]``; returns the median ratio."""
    load = os.getloadavg()[0]
    for name, times in runs.items():
        print(f"{name:>12}: best {min(times):.1f} s, median {statistics.median(times):.1f} s over {len(times)}")
    a, b = ratio
    median = statistics.median(runs[a]) / statistics.median(runs[b])
    print(f"{a} / {b}: best {min(runs[a]) / min(runs[b]):.3f}x, median {median:.3f}x ({what}, process "
          f"start to outputs written; load average {load:.1f} after)")
    return median

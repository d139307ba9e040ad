"""Cross-host check of CPU training without a second machine: one short digits fold, natively and under QEMU
user-mode emulation of other processors, and the md5 of what each wrote.

    apt-get install qemu-user      # QEMU 7.2 here (Debian 12)
    python benchmarks/emulated_hosts.py [--cpus EPYC-Rome-v1 Nehalem-v1] [--steps 4] [--epochs 1]

The fold is ``train_fold`` of digits fold 0 with the committed ``train`` params, ``--epochs`` epochs of at most
``--steps`` batches each (0: every batch), then the prediction of all 360 held-out images and the records (records/: logits per epoch, features); and
digits-hard's instance noise (the noise stage's labels.csv). Inputs from
``dvc pull raw@digits noise@digits folds@digits dedupe@digits-hard raw@digits-hard``. Each emulated run presents another processor to the program
(vendor string, instruction sets, cache sizes), e.g. EPYC-Rome-v1: AuthenticAMD, AVX2 + FMA, no AVX-512;
Nehalem-v1: SSE4.2, no AVX, no FMA. Emulation is slow (a 4-step fold takes 3-4 minutes here). QEMU 7.2 crashes
on torch's AVX2 kernels, so only the pinned configuration (portable kernels) can run emulated.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(epochs: int, steps: int) -> None:
    from labelbench.config import CrossvalParams, load_params, load_runtime
    from labelbench.train.crossval import TrainConfig, train_fold  # pins torch's kernels before it loads

    params = load_params(CrossvalParams)
    config = TrainConfig.of(params.train, model="test_resnet", folds=len(params.crossval.folds)).model_copy(
        update={"epochs": epochs})
    out = Path(tempfile.mkdtemp()) / "fold_0"
    train_fold(images_root="data/raw/digits/images", labels_csv="data/noisy/digits/labels.csv",
               folds_csv="data/folds/digits.csv", fold=0, config=config, runtime=load_runtime(), out_dir=out,
               max_steps=steps or None)
    digest = {name: hashlib.md5((out / name).read_bytes()).hexdigest()
              for name in ("model.safetensors", "heldout_pred_probs.npy")}
    records = hashlib.md5(b"".join(p.read_bytes() for p in sorted((out / "records").iterdir()))).hexdigest()
    print("RESULT", digest["model.safetensors"], digest["heldout_pred_probs.npy"], noise_digest(), records)


def noise_digest() -> str:
    """md5 of the noisy labels.csv that the noise stage writes for digits-hard (instance noise: Pillow's resize,
    integer distances, numpy's generator) on this processor."""
    from labelbench.config import NoiseParams, load_params
    from labelbench.data.files import read_classes, read_labels_csv, write_csv
    from labelbench.train.noise import noisy_labels_table

    noise = load_params(NoiseParams).crossval.datasets["digits-hard"]
    out, _ = noisy_labels_table(labels=read_labels_csv("data/deduped/digits-hard/labels.csv"), noise=noise.noise,
                                noise_amount=noise.noise_amount, sparsity=noise.sparsity, seed=noise.noise_seed,
                                num_classes=len(read_classes("data/raw/digits-hard/classes.txt")),
                                images="data/raw/digits-hard/images")
    path = Path(tempfile.mkdtemp()) / "labels.csv"
    write_csv(path, out)
    return hashlib.md5(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpus", nargs="*", default=["EPYC-Rome-v1", "Nehalem-v1"], help="qemu -cpu models")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.epochs, args.steps)
        return 0
    if not (REPO / "data/raw/digits/images").is_dir():
        sys.exit("digits inputs missing: dvc pull raw@digits noise@digits folds@digits")
    python = str(Path(sys.prefix) / "bin" / "python")  # the venv's, unresolved, so that qemu runs it as the venv
    me = [python, str(Path(__file__).resolve()), "--child", "--steps", str(args.steps), "--epochs", str(args.epochs)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    results = {}
    for host in ["native", *args.cpus]:
        cmd = me if host == "native" else ["qemu-x86_64", "-cpu", host, *me]
        run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        results[host] = lines[-1].split()[1:] if run.returncode == 0 and lines else ["failed", run.stderr[-300:]]
        print(f"{host:>14}: model.safetensors {results[host][0]}  heldout_pred_probs.npy {results[host][1]}  "
              f"digits-hard labels.csv {results[host][2]}  records/ {results[host][-1]}", flush=True)
    same = len({tuple(r) for r in results.values()}) == 1
    print("same bytes on every host" if same else "DIFFERENT bytes across hosts")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

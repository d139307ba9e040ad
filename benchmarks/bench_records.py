"""Cost of the training records (issue 16 §1): one digits fold with records (as the stage runs) vs without, and
the disk they take, here and at CIFAR-10 scale.

    python benchmarks/bench_records.py [--repeat 3] [--fold 0] [--cifar-epochs 100]

Each run is the crossval stage's own command for fold F of digits (committed params: test_resnet, 10 epochs, 16 px,
1,797 images), timed from process start to the fold folder written (imports included), interleaved:

* with records: ``python stages/crossval.py ...`` as `dvc repro` runs it (records/: training logits per epoch,
  held-out logits after each epoch, every row's penultimate features);
* without: the same ``main`` with the two extra passes switched off (one held-out pass, the prediction, instead of
  one per epoch; no features pass over every row), i.e. the work training did before the records; the training
  logits are still copied per batch (a device-side copy) and the small record files still written;
* second pass: as the stage ran before 2026-12-05, the records and then a second eval pass of the held-out rows
  for the predictions (now the last epoch's held-out logits, the same bytes).

All write the same model.safetensors (printed: the passes leave training as it was). Then the bytes of the fold's
records/ against the rest of the folder, and the records' size for CIFAR-10 (50,000 images, 10 classes, 5 folds:
40,000 training and 10,000 held-out rows per fold) with each of the paper's models' feature widths.
Needs the digits inputs (``dvc pull raw@digits noise@digits folds@digits``). Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from fold_runs import interleaved, report

#: The variant without the records' extra passes.
WITHOUT = """
import runpy, sys
import labelbench.train.crossval as crossval  # first: it pins torch's CPU kernels before torch loads
import torch
fit, forward = crossval.fit, crossval._forward_eval
def fit_without_heldout(*a, heldout=None, **k):  # one held-out pass, the prediction, instead of one per epoch
    history, records = fit(*a, **k)
    logits = forward(a[0], a[1], heldout, config=k["config"], device=k["device"], workers=k["workers"])[0]
    return history, {**records, "heldout_logits": logits[None].cpu().numpy()}
crossval.fit = fit_without_heldout
def no_features_pass(model, rows, which, **k):  # the features pass is the one over every row
    if len(which) == len(rows):
        return torch.zeros((len(which), 1)), torch.zeros((len(which), 1))
    return forward(model, rows, which, **k)
crossval._forward_eval = no_features_pass
sys.argv = ["stages/crossval.py", *sys.argv[1:]]
runpy.run_path("stages/crossval.py", run_name="__main__")
"""

#: The variant as the stage ran before 2026-12-05: the records, then a second eval pass of the held-out rows for
#: the predictions (now taken from the last epoch's held-out logits, the same bytes).
SECOND_PASS = """
import runpy, sys
import labelbench.train.crossval as crossval
fit = crossval.fit
def fit_then_predict(*a, heldout=None, **k):
    history, records = fit(*a, heldout=heldout, **k)
    crossval.predict(a[0], a[1], heldout, config=k["config"], device=k["device"], workers=k["workers"])
    return history, records
crossval.fit = fit_then_predict
sys.argv = ["stages/crossval.py", *sys.argv[1:]]
runpy.run_path("stages/crossval.py", run_name="__main__")
"""

#: Penultimate-layer width of the paper's five models (timm ``num_features``).
FEATURES = {"resnet18": 512, "resnet50d": 2048, "efficientnet_b1": 1280, "twins_pcpvt_base": 512,
            "swin_base_patch4_window7_224": 1024}


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--cifar-epochs", type=int, default=100, help="epochs assumed at CIFAR-10 scale")
    args = parser.parse_args()
    sizes = {}
    runs = interleaved({"with records": lambda rest: [sys.executable, "stages/crossval.py", *rest],
                        "without": lambda rest: [sys.executable, "-c", WITHOUT, *rest],
                        "second pass": lambda rest: [sys.executable, "-c", SECOND_PASS, *rest]},
                       fold=args.fold, repeat=args.repeat,
                       keep=lambda folders: sizes.update(records=size(folders["with records"][0] / "records"),
                                                         fold=size(folders["with records"][0])))
    median = report(runs, what=f"digits fold {args.fold}", ratio=("with records", "without"))
    print(f"extra time per fold: +{100 * (median - 1):.1f}% (median)")
    saved = statistics.median(runs["with records"]) / statistics.median(runs["second pass"])
    best = min(runs["with records"]) / min(runs["second pass"])
    print(f"the predictions from the last held-out pass instead of a second one: {100 * (saved - 1):+.1f}% (median; "
          f"best {best:.3f}x)")
    print(f"disk: records/ {sizes['records'] / 1e6:.2f} MB of the fold's {sizes['fold'] / 1e6:.2f} MB")
    epochs, train, held, classes, n = args.cifar_epochs, 40_000, 10_000, 10, 50_000
    logits = 4 * epochs * (train + held) * classes
    print(f"CIFAR-10 scale ({epochs} epochs, 5 folds; logits float32, features float16):")
    for model, width in FEATURES.items():
        per_fold = logits + 2 * n * width
        print(f"  {model:>28}: {per_fold / 1e6:7.1f} MB per fold, {5 * per_fold / 1e9:5.2f} GB per 5 folds "
              f"(logits {logits / 1e6:.0f} MB, features {2 * n * width / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

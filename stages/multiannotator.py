"""Stage `multiannotator`: CROWDLAB on CIFAR-10N's three human labels per image, against majority vote,
crowd-kit's Dawid-Skene and GLAD, and single-label scores of the majority vote.

    python stages/multiannotator.py --published data/published --out metrics --section reports/multiannotator.md

When ``multiannotator.dataset`` is among ``published.datasets``, reads ``<published>/<dataset>/`` and
``<published>/raw/cifar-10n_human_labels.npz`` (both checked against the root's checksum list); writes ``<out>/multiannotator.csv`` (one row per
method and model), ``<out>/multiannotator.json`` (a few headline numbers) and the report section.
Prints how long each method took (not written: the outputs stay reproducible). Otherwise writes a
table with no rows, an empty summary and a section saying so.
"""

import argparse
import sys
from pathlib import Path

from labelbench.evaluation import numerics  # first: pins numpy's and OpenBLAS's numerics before numpy loads
from labelbench.config import load_params
from labelbench.evaluation.multiannotator import load_track, not_evaluated, run_track, write_outputs
from labelbench.evaluation.metrics import check_lift_k
from labelbench.evaluation.params import MultiannotatorParams
from labelbench.data.files import stage_main


@stage_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--published", type=Path, required=True, help="root of the published artifacts")
    parser.add_argument("--out", type=Path, required=True, help="folder of multiannotator.csv and .json")
    parser.add_argument("--section", type=Path, help="also write the report's markdown section here")
    args = parser.parse_args(argv)
    params = load_params(MultiannotatorParams)
    block = params.multiannotator
    if block.dataset in params.published.datasets:
        track = load_track(args.published, dataset=block.dataset, models=list(params.published.models))
        check_lift_k(params.lift_k, {block.dataset: len(track.clean)})
        numerics.check()  # after the inputs are checked: a bad file is the error to see first
        table, summary, seconds = run_track(
            track, baselines=block.baselines, dawid_skene_max_iter=block.dawid_skene_max_iter,
            glad_max_iter=block.glad_max_iter, score=block.score, ensemble=block.ensemble,
            lift_k=params.lift_k)
    else:
        print(f"{block.dataset} is not among published.datasets: the track is not evaluated")
        (table, summary), seconds = not_evaluated(lift_k=params.lift_k), {}
    write_outputs(table, summary, csv_path=args.out / "multiannotator.csv",
                  json_path=args.out / "multiannotator.json", section_path=args.section)
    for name, value in seconds.items():
        print(f"{name:<{max(map(len, seconds))}}  {value:8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

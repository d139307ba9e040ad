"""Stage: remove exact duplicate images (sha256 of file bytes) from one raw dataset.

    python stages/dedupe.py --in data/raw/<dataset> --out data/deduped/<dataset>

Reads ``<in>/labels.csv`` and ``<in>/images/``; writes ``<out>/labels.csv`` (input rows minus
removed ones, same columns and order) and ``<out>/removed.csv`` (image_id, duplicate_of).
Images listed in labels.csv but missing are an error; images not listed are ignored (counted
on stderr). Images are not copied.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.train.dedupe import dedupe
from labelbench.data.files import atomic_outputs, stage_main, write_csv
from labelbench.data.verify import verify


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inp", type=Path, required=True, help="raw dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    verify(args.inp)  # the bytes DVC recorded for raw@D's output
    result = dedupe(raw_dir=args.inp)
    with atomic_outputs(files=[args.out / "labels.csv", args.out / "removed.csv"]) as tmp:
        write_csv(tmp[args.out / "labels.csv"], result.labels)
        write_csv(tmp[args.out / "removed.csv"], result.removed)
    kept = len(result.labels)
    print(f"{args.inp}: kept {kept} of {kept + len(result.removed)} images, removed {len(result.removed)} duplicates",
          file=sys.stderr)
    if result.unlisted:
        print(f"warning: ignored {len(result.unlisted)} image(s) not in labels.csv, e.g. {result.unlisted[0]!r}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

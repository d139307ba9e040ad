"""Stage `published`: the authors' artifacts, exact bytes, into data/published.

    python stages/published.py --source ../shared/published --listing data/published.SHA256SUMS --out data/published

Every file is checked against the git-tracked checksum list first; nothing is written unless all match. A stage
output rather than a `dvc add`-ed folder, so that no DVC command re-records a damaged copy: `dvc repro` and
`dvc exp run` restore it (from the run-cache, else from --source), and `dvc pull` fetches it from the public remote
where --source is absent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.data.checksums import copy_verified
from labelbench.data.files import stage_main


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the authors' artifacts (../shared/published)")
    parser.add_argument("--listing", type=Path, required=True, help="sha256sum list every file must match")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    args = parser.parse_args(argv)
    count = copy_verified(args.source, args.out, args.listing)
    print(f"{args.out}: {count} files, each matching {args.listing}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

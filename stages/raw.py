"""Stage `raw`: write one dataset in the common raw layout.

    python stages/raw.py <source> --out data/raw/<dataset> --added data/added/<dataset>

``<source>`` is ``crossval.datasets.<dataset>.source`` (two datasets may share one, e.g. digits and digits-hard).

The ``raw`` block of params.yaml says where source archives are (``sources``) and whether missing
sources with a URL are downloaded (``download``). Each dataset is built from its own sources only (cifar-10n-*
and cifar-10s read CIFAR-10's images from its archive), so no raw stage reads another's output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelbench.config import RawParams, load_params
from labelbench.data.files import stage_main
from labelbench.data.raw.registry import DATASETS, build


@stage_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", choices=DATASETS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--added", type=Path, help="the dataset's folder under data/added (source imagefolder)")
    args = parser.parse_args(argv)
    raw = load_params(RawParams).raw
    table = build(args.source, out=args.out, sources_dir=raw.sources, download=raw.download, added=args.added)
    errors = "unknown" if table.label_errors is None else int(table.label_errors.sum())
    print(f"{args.source}: {len(table)} images, {len(table.classes)} classes, label errors {errors} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

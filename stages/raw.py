"""Stage `raw`: write one dataset in the common raw layout.

    python stages/raw.py --dataset NAME --out data/raw/NAME
        [--sources DIR] [--cifar10-raw DIR] [--download | --no-download] [--params params.yaml]

Defaults come from the ``raw:`` block of params.yaml (when the file exists), then built-ins:
``sources: data/sources`` (source archives), ``cifar10_raw: data/raw/cifar-10`` (reused by
cifar-10n-* and cifar-10s), ``download: false`` (fetch missing sources that have a URL).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from labelbench.data.download import DownloadError
from labelbench.data.io import DataError
from labelbench.data.raw import DATASETS, build

DEFAULTS = {"sources": "data/sources", "cifar10_raw": "data/raw/cifar-10", "download": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sources", type=Path)
    parser.add_argument("--cifar10-raw", type=Path)
    parser.add_argument("--download", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    options = dict(DEFAULTS)
    if args.params.is_file():
        block = (yaml.safe_load(args.params.read_text(encoding="utf-8")) or {}).get("raw") or {}
        unknown = set(block) - set(DEFAULTS)
        if unknown:
            parser.error(f"{args.params}: unknown key(s) under raw: {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        options.update(block)
    for key in DEFAULTS:
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if not isinstance(options["download"], bool):
        parser.error(f"raw.download must be true or false, got {options['download']!r}")
    try:
        table = build(
            args.dataset, out=args.out, sources_dir=options["sources"],
            cifar10_raw=options["cifar10_raw"], download=options["download"],
        )
    except (DataError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    errors = "unknown" if table.label_errors is None else int(table.label_errors.sum())
    print(f"{args.dataset}: {len(table)} images, {len(table.classes)} classes, label errors {errors} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

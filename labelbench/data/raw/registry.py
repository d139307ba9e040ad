"""Every dataset the raw stage builds: its converter and its source files (:data:`DATASETS`), and
:func:`build`. Kept apart from the package so that importing one converter loads no other."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

from labelbench.data.download import fetch, verify
from labelbench.data.files import DataError
from labelbench.data.raw.cifar import CIFAR10_MD5, CIFAR10_URL, convert_cifar10, convert_cifar10n, convert_cifar10s
from labelbench.data.raw.digits import convert_digits
from labelbench.data.raw.food import FOOD101N_URL, convert_food101n
from labelbench.data.raw.imagefolder import convert_imagefolder
from labelbench.data.raw.layout import RawTable
from labelbench.data.raw.roman import ROMAN_BUNDLE_URL, convert_roman


@dataclass(frozen=True)
class Source:
    """A source file: its name under the sources folder, where it comes from, its md5 when published."""

    name: str
    url: str | None = None
    md5: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    """How a dataset is built: ``convert(out=..., **{argument: path of its source}, [added=...])``."""

    convert: Callable[..., RawTable]
    sources: dict[str, Source] = field(default_factory=dict)
    needs_added: bool = False  # reads the dataset's folder data/added/<name> (add-dataset --images)


CIFAR10_TAR = Source("cifar-10-binary.tar.gz", CIFAR10_URL, md5=CIFAR10_MD5)
CIFAR10N_NPZ = Source("cifar-10n_human_labels.npz", note="CIFAR-10N human labels (clean_label, aggre_label, ...)")
CIFAR10S_CSV = Source("cifar-10s_noisy_labels_noise_amount_0.2_sparsity_0.4.csv",
                      note="CIFAR-10S noisy labels (columns image,label) from the confident-learning authors")
ROMAN_ZIP = Source("roman-numeral.zip", note=f"the Data-Centric AI competition bundle {ROMAN_BUNDLE_URL} as a zip")
ROMAN_XLSX = Source("roman-numeral_manual_review.xlsx", note="the manual label review of the roman-numeral data")
FOOD101N_ZIP = Source("Food-101N_release.zip", FOOD101N_URL)

#: Every dataset the raw stage builds, by name.
DATASETS: dict[str, Recipe] = {
    "cifar-10": Recipe(convert_cifar10, {"archive": CIFAR10_TAR}),
    # CIFAR-10's images read from its archive, not from a raw cifar-10 folder: no raw stage reads another's output
    "cifar-10n-agg": Recipe(partial(convert_cifar10n, variant="agg"),
                            {"archive": CIFAR10_TAR, "human_labels": CIFAR10N_NPZ}),
    "cifar-10n-worst": Recipe(partial(convert_cifar10n, variant="worst"),
                              {"archive": CIFAR10_TAR, "human_labels": CIFAR10N_NPZ}),
    "cifar-10s": Recipe(convert_cifar10s, {"archive": CIFAR10_TAR, "noisy_csv": CIFAR10S_CSV}),
    "roman-numeral": Recipe(convert_roman, {"bundle": ROMAN_ZIP, "review": ROMAN_XLSX}),
    "food-101n": Recipe(convert_food101n, {"archive": FOOD101N_ZIP}),
    "digits": Recipe(convert_digits),
    "imagefolder": Recipe(convert_imagefolder, needs_added=True),
}


def source_path(source: Source, sources_dir: os.PathLike | str, *, download: bool) -> Path:
    """Path of ``source`` under ``sources_dir``, checked against its md5 when known; a missing or
    unverified file is fetched when ``download`` is set and a URL is known, else a DataError says
    where to put it."""
    path = Path(sources_dir) / source.name
    if download and source.url:
        return fetch(source.url, path, md5=source.md5)  # keeps a file that verifies
    if path.is_file():
        problem = verify(path, md5=source.md5)
        if problem is None:
            return path
        raise DataError(path, f"does not verify ({problem}); replace it with the file from {source.url}")
    where = f" from {source.url}" if source.url else ""
    hint = f" ({source.note})" if source.note else ""
    raise DataError(path, f"source file not found; place it there{where}{hint}")


def build(
    dataset: str, *, out: os.PathLike | str, sources_dir: os.PathLike | str,
    download: bool = False, added: os.PathLike | str | None = None,
) -> RawTable:
    """Write raw ``dataset`` (a key of :data:`DATASETS`) into ``out`` from ``sources_dir`` (``added``: the
    dataset's folder under data/added, for ``imagefolder``)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    recipe = DATASETS[dataset]
    paths = {arg: source_path(source, sources_dir, download=download) for arg, source in recipe.sources.items()}
    if recipe.needs_added:
        if added is None or not Path(added).is_dir():
            raise DataError(Path(added or "data/added"), f"{dataset} needs the dataset's folder, written by "
                                                         "`python -m labelbench add-dataset NAME --images DIR`")
        paths["added"] = Path(added)
    return recipe.convert(out=out, **paths)

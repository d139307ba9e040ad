"""The evaluation half's params blocks (see :mod:`labelbench.config`): score and ensemble names
are checked against their registries, published datasets and models against the authors' files; and
:func:`check_params`, every block of both halves at once."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import AfterValidator, Field, RootModel, create_model, model_validator

from labelbench.config import (
    AssembleParams, Block, Crossval, CrossvalParams, Count, Distribute, FoldsParams, Names, NoiseParams, Part, Positive,
    RawParams, Runtime, _unique, check_name, load_params, part_of,
)
from labelbench.evaluation.ensembles import check_scheme
from labelbench.evaluation.scores import resolve_method

PUBLISHED_DATASETS = ("roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s")
PUBLISHED_MODELS = ("resnet18", "resnet50d", "efficientnet_b1", "twins_pcpvt_base", "swin_base_patch4_window7_224")


def _one_of(allowed: tuple[str, ...]):
    def check(values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            raise ValueError(f"unknown {unknown}; allowed: {', '.join(allowed)}")
        return values

    return AfterValidator(check)


Scheme = Annotated[str, AfterValidator(check_scheme)]
Method = Annotated[str, AfterValidator(resolve_method)]


class Published(Block):
    """The authors' artifacts (data/published) to evaluate."""

    datasets: Annotated[Names, _one_of(PUBLISHED_DATASETS)]
    models: Annotated[Names, _one_of(PUBLISHED_MODELS)]


class Evaluate(Block):
    curve_points: Annotated[int, Field(ge=2, le=100_000)]  # points per curve (a plot's resolution)


class Bootstrap(Block):
    """Paired bootstrap over examples (labelbench.evaluation.bootstrap): B resamples, seed, level."""

    resamples: Annotated[int, Field(ge=1, le=100_000)]  # B x N uint8 counts per dataset: 5 GB at CIFAR's N
    seed: Count
    level: Annotated[float, Field(gt=0, lt=1)]


class Detectors(Block):
    """The detector families beyond pred_probs on the datasets trained here (labelbench.evaluation.detectors)."""

    neighbours: Positive  # k of the representation-space detectors
    el2n_epoch: Count  # the early epoch EL2N is read at (0-based)


class Benchmark(Block):
    ensembles: Annotated[list[Scheme], Field(min_length=1), AfterValidator(_unique)]
    bootstrap: Bootstrap
    detectors: Detectors


class Report(Block):
    top_n: Positive
    ranking_method: Method
    ranking_ensemble: Scheme


def check_added_name(name: str) -> str:
    """An added dataset's name: :func:`check_name`, and not one of the published datasets."""
    if check_name(name) in PUBLISHED_DATASETS:
        raise ValueError(f"name {name!r} is a published dataset; choose another")
    return name


class AddedDataset(Block):
    """One dataset added with ``python -m labelbench add-dataset`` (data/added/<name>)."""

    models: Annotated[Names, AfterValidator(lambda names: [check_name(n) for n in names])]
    label_errors: bool  # a known error mask: benchmarked; false: ranked issues only


class Added(RootModel[dict[Annotated[str, AfterValidator(check_added_name)], AddedDataset]]):
    """``added``: name -> its models and whether its label errors are known."""

    model_config = {"strict": True, "frozen": True}


class Issues(Block):
    """The ranked label issues (`issues` stage): rows per CSV, images in each PNG grid."""

    rows: Positive
    grid: Positive


class Source(NamedTuple):
    """Where one dataset's files are: ``root`` of the data contract, its ``models``, whether its
    label errors are known (``label_errors``: benchmarked), and ``extras``, the folder that may
    hold ``classes.txt`` and ``images/<image_id>`` (None for the published datasets)."""

    root: str
    models: list[str]
    label_errors: bool
    extras: str | None


class Datasets(Part):
    """Which datasets and models are evaluated: every published one listed, every one trained
    here, every one added (data/added)."""

    published: Published
    crossval: part_of(Crossval, "datasets", "models")  # the datasets trained here and their models (data/trained)
    added: Added

    @model_validator(mode="after")
    def _names_once(self):
        kinds = {"published": set(self.published.datasets), "trained here": set(self.crossval.datasets),
                 "added": set(self.added.root)}
        for (a, names_a), (b, names_b) in itertools.combinations(kinds.items(), 2):
            if names_a & names_b:
                raise ValueError(f"datasets {sorted(names_a & names_b)} are both {a} and {b}; keep one")
        return self

    def sources(self) -> dict[str, Source]:
        """Every dataset, published first, then trained, then added, in params order."""
        out = {name: Source("data/published", list(self.published.models), True, None)
               for name in self.published.datasets}
        # trained datasets: class names and images are the raw stage's (data/raw/<name>)
        out.update({name: Source("data/trained", list(self.crossval.models), True, f"data/raw/{name}")
                    for name in self.crossval.datasets})
        out.update({name: Source("data/added", list(spec.models), spec.label_errors, f"data/added/{name}")
                    for name, spec in self.added.root.items()})
        return out

    def roots(self) -> dict[str, tuple[str, list[str]]]:
        """The benchmarked datasets (those with known label errors) as name -> (data contract root,
        models), in the order of :meth:`sources`."""
        return {name: (s.root, s.models) for name, s in self.sources().items() if s.label_errors}


class EvaluateParams(Datasets):
    score: Method
    adjust_pred_probs: bool
    ensemble: Scheme
    lift_k: Positive
    evaluate: Evaluate

    @model_validator(mode="after")
    def _adjustable(self):
        resolve_method(self.score, adjust_pred_probs=self.adjust_pred_probs)
        return self


class BenchmarkParams(Datasets):
    crossval: part_of(Crossval, "datasets", "models", "folds")  # and the fold ids: their folders hold the records
    lift_k: Positive
    benchmark: Benchmark


class ReportParams(Datasets):
    lift_k: Positive
    report: Report


class IssuesParams(Datasets):
    report: part_of(Report, "ranking_method", "ranking_ensemble")
    issues: Issues


# --- the multi-annotator track (stage `multiannotator`, labelbench.evaluation.multiannotator) ---

#: Published datasets whose rows carry CIFAR-10N's three human labels (their pred_probs are used).
MULTIANNOTATOR_DATASETS = ("cifar-10n-agg", "cifar-10n-worst")
#: crowd-kit aggregators beside majority vote (labelbench.evaluation.multiannotator.BASELINES).
CROWD_BASELINES = ("dawid_skene", "glad")


class Multiannotator(Block):
    """CROWDLAB on CIFAR-10N against majority vote, crowd-kit baselines and single-label scores."""

    dataset: Literal[MULTIANNOTATOR_DATASETS]
    baselines: Annotated[list[str], _one_of(CROWD_BASELINES)]
    dawid_skene_max_iter: Positive
    glad_max_iter: Positive
    score: Method
    ensemble: Scheme

    @model_validator(mode="after")
    def _baselines_once(self):  # a rule of the block: tests/test_dvc_layout.py checks such errors name the block
        if len(set(self.baselines)) != len(self.baselines):
            raise ValueError(f"baselines must be unique, got {self.baselines}")
        return self


class MultiannotatorParams(Part):
    """The track runs when ``multiannotator.dataset`` is among ``published.datasets``, with ``published.models``."""

    lift_k: Positive
    published: Published
    multiannotator: Multiannotator


#: The schema of every stage script, and of the blocks no stage reads (the machine's runtime, the Ray driver's).
SCHEMAS = (RawParams, NoiseParams, FoldsParams, CrossvalParams, AssembleParams, EvaluateParams, BenchmarkParams,
           IssuesParams, ReportParams, MultiannotatorParams,
           create_model("UnstagedParams", runtime=Runtime, distribute=Distribute))


def check_params(path: str | Path = "params.yaml") -> None:
    """Every block of params.yaml, as the stage reading it would check it: ParamsError for the first bad one. A stage
    checks only the blocks it reads, when it runs; this is for a command that runs many stages (make reproduce, the
    Ray driver), so that a bad key read last stops it before anything is pulled or trained."""
    for schema in SCHEMAS:
        load_params(schema, path)

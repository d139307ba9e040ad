"""The evaluation half's params blocks (see :mod:`labelbench.config`): score and ensemble names
are checked against their registries, published datasets and models against the authors' files."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from labelbench.config import FULL_BLOCKS, Block, Count, Names, Noise, Part, Positive
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
    curve_points: Annotated[int, Field(ge=2)]


class Bootstrap(Block):
    """Paired bootstrap over examples (labelbench.evaluation.bootstrap): B resamples, seed, level."""

    resamples: Positive
    seed: Count
    level: Annotated[float, Field(gt=0, lt=1)]


class Benchmark(Block):
    ensembles: Annotated[list[Scheme], Field(min_length=1)]
    workers: Positive
    bootstrap: Bootstrap


class BootstrapPart(Part):
    """The ``benchmark.bootstrap`` key alone (the evaluate stage's AUROC interval)."""

    bootstrap: Bootstrap


class Report(Block):
    top_n: Positive
    ranking_method: Method
    ranking_ensemble: Scheme


FULL_BLOCKS.update(published=Published, evaluate=Evaluate, benchmark=Benchmark, report=Report)


class Trained(Part):
    """The datasets trained here and their models (data/trained)."""

    datasets: dict[str, Noise]
    models: Names


class Datasets(Part):
    """Which datasets and models are evaluated: every published one listed, every one trained here."""

    published: Published
    crossval: Trained

    @model_validator(mode="after")
    def _names_once(self):
        both = set(self.published.datasets) & set(self.crossval.datasets)
        if both:
            raise ValueError(f"datasets {sorted(both)} are both published and trained here; keep one")
        return self

    def roots(self) -> dict[str, tuple[str, list[str]]]:
        """Dataset name -> (data contract root, models), published first, in params order."""
        out = {name: ("data/published", list(self.published.models)) for name in self.published.datasets}
        out.update({name: ("data/trained", list(self.crossval.models)) for name in self.crossval.datasets})
        return out


class EvaluateParams(Datasets):
    score: Method
    adjust_pred_probs: bool
    ensemble: Scheme
    lift_k: Positive
    evaluate: Evaluate
    benchmark: BootstrapPart

    @model_validator(mode="after")
    def _adjustable(self):
        resolve_method(self.score, adjust_pred_probs=self.adjust_pred_probs)
        return self


class BenchmarkParams(Datasets):
    lift_k: Positive
    benchmark: Benchmark


class ReportParams(Datasets):
    lift_k: Positive
    report: Report


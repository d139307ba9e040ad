"""``params.yaml``, read one way: a typed schema per stage that rejects unknown keys and bad values
before any work starts, with one message naming the key, the value and what is allowed.

Each stage script passes the schema of the keys it reads to :func:`load_params`; the result holds
those keys and no others, and ``tests/test_dvc_layout.py`` checks that they are exactly the stage's
``params:`` in ``dvc.yaml``. This module holds the training half's blocks; the evaluation half's,
which need the score and ensemble registries, live in :mod:`labelbench.evaluation.params`.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, RootModel, ValidationError, create_model, model_validator,
)

from labelbench.data.files import DataError, load_yaml, parse_yaml

#: Every top-level key of params.yaml (a test keeps it equal to the union of the schemas).
TOP_LEVEL_KEYS = (
    "score", "adjust_pred_probs", "ensemble", "lift_k", "added", "published",
    "evaluate", "benchmark", "report", "issues", "multiannotator", "raw", "crossval", "train", "runtime", "distribute",
)


class ParamsError(ValueError):
    pass


class Block(BaseModel):
    """A params block: unknown keys are errors, no type coercion (``"3"`` is not 3, ``true`` not 1), and no
    ``.inf`` or ``.nan`` where a number is expected."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError(f"names must be unique, got {values}")
    return values


class Part(Block):
    """Some keys of a block shared with other stages (a stage declares each key it reads). ``whole``: the block
    they belong to, checked in full whenever a stage reads part of it, so that a typo or a bad value anywhere in a
    block is refused before any of its stages works (None: a stage's own schema). ``per_key``: the fields of which
    a ``foreach`` stage reads only its own item, declared as ``<key>.${key}`` (adding a dataset then reruns no other
    dataset's stage)."""

    whole: ClassVar[type[Block] | None] = None
    per_key: ClassVar[tuple[str, ...]] = ()


#: Names of datasets and models: a folder, a file stem and a DVC metrics key each (at most 64 characters: the
#: temporary names beside them, ``.<name>.<host>-<pid>.<random>.tmp``, must stay within a file name's 255 bytes).
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"


def check_name(name: str) -> str:
    """``name`` if it matches :data:`NAME_PATTERN`, else a ValueError saying what is allowed.

    >>> check_name("cifar-10s")
    'cifar-10s'
    """
    if not re.fullmatch(NAME_PATTERN, name):
        raise ValueError(f"name {name!r} must match {NAME_PATTERN} (letters, digits, '_' and '-'; at most 64)")
    return name


DatasetName = Annotated[str, AfterValidator(check_name)]
Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1), AfterValidator(_unique)]


def _fold_ids(ids: list[int]) -> list[int]:
    if ids != list(range(len(ids))) or len(ids) < 2:
        raise ValueError(f"must be the fold ids 0..k-1 with k >= 2, e.g. [0, 1, 2, 3, 4]; got {ids}")
    return ids


FoldList = Annotated[list[int], AfterValidator(_fold_ids)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]  # numpy's legacy seeding (cleanlab's noise) and scikit-learn take these


#: The raw stage's sources (labelbench/data/raw/registry.py's DATASETS; a test keeps them equal).
RAW_SOURCES = ("cifar-10", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s", "roman-numeral", "food-101n", "digits",
               "imagefolder")


class TrainedDataset(Block):
    """One dataset trained here: its raw ``source`` and the label noise added to it. ``uniform``: cleanlab's
    noise-matrix generator (the authors' CIFAR-10S recipe, with ``sparsity``); ``instance``: each flipped example
    goes to the class a weak model most confuses it with (:func:`labelbench.train.noise.instance_noise`).
    ``noise_amount`` 0 keeps the given labels."""

    source: Literal[RAW_SOURCES]
    noise: Literal["uniform", "instance"]
    noise_amount: Annotated[float, Field(ge=0, lt=1)]
    sparsity: Annotated[float, Field(ge=0, le=1)] | None = None
    noise_seed: Seed

    @model_validator(mode="after")
    def _sparsity_is_uniform_only(self):
        if (self.noise == "uniform") != (self.sparsity is not None):
            raise ValueError("sparsity (in [0, 1]) is set for noise: uniform and only then "
                             f"(noise: {self.noise}, sparsity: {self.sparsity})")
        return self


#: timm.scheduler.create_scheduler_v2's schedules that need no validation metric (timm keeps no
#: registry of them; 'plateau' is left out: the crossval stage has no validation split).
SCHEDULES = ("cosine", "tanh", "step", "multistep", "poly", "wsd", "rsqrt", "constant")


def _timm_optimizer(name: str) -> str:
    """A name of timm's optimizer registry that needs no optional package (bitsandbytes, apex) and that the training
    loop can step: not adahessian (it needs ``backward(create_graph=True)``), not kron (its preconditioners of a
    ResNet's size take ~100 GB)."""
    from timm.optim import list_optimizers

    allowed = list_optimizers(exclude_filters=["bnb*", "fused*", "adahessian", "kron*"])
    if name not in allowed:
        raise ValueError(f"unknown optimizer {name!r}; allowed (timm.optim.list_optimizers()): {', '.join(allowed)}")
    return name


def _range(pair: list[float]) -> list[float]:
    if pair[0] > pair[1]:
        raise ValueError(f"must be [low, high] with low <= high, got {pair}")
    return pair


Fraction = Annotated[float, Field(gt=0, le=1)]


class Train(Block):
    """What every crossval stage trains (declared by each, echoed into each fold's config.yaml): a change
    here retrains every fold. How the machine runs it is :class:`Runtime`."""

    pretrained: bool
    epochs: Positive
    batch_size: Annotated[int, Field(ge=2)]  # a batch of 1 breaks BatchNorm
    opt: Annotated[str, AfterValidator(_timm_optimizer)]
    lr: Annotated[float, Field(gt=0)]
    weight_decay: Annotated[float, Field(ge=0)]
    momentum: Annotated[float, Field(ge=0, lt=1)]
    sched: Literal[SCHEDULES]
    warmup_epochs: Count
    min_lr: Annotated[float, Field(ge=0)]
    image_size: Annotated[int, Field(ge=1, le=4096)]  # 4096: one 3 x 4096^2 float32 input is 192 MiB already
    scale: Annotated[list[Fraction], Field(min_length=2, max_length=2), AfterValidator(_range)]
    ratio: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=2, max_length=2), AfterValidator(_range)]
    hflip: Annotated[float, Field(ge=0, le=1)]
    max_stored_size: Positive
    seed: Seed
    device: Literal["auto", "cpu", "cuda"]
    mixed_precision: bool

    @model_validator(mode="after")
    def _warmup_within_the_run(self):
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be at most epochs ({self.epochs}): the "
                             "learning rate would never reach lr")
        return self

    @model_validator(mode="after")
    def _optimizer_takes_the_settings(self):  # here, not when a fold builds it after reading every image
        import torch
        from timm.optim import create_optimizer_v2

        try:
            create_optimizer_v2([torch.zeros(1, requires_grad=True)], opt=self.opt, lr=self.lr,
                                weight_decay=self.weight_decay, momentum=self.momentum)
        except ValueError as exc:  # e.g. sgd's Nesterov momentum with momentum 0
            raise ValueError(f"opt {self.opt!r} refuses lr {self.lr}, weight_decay {self.weight_decay}, momentum "
                             f"{self.momentum}: {exc}") from None
        return self


class Runtime(Block):
    """How this machine runs the stages, not what they compute: no stage declares these keys, so changing them
    reruns nothing (the outputs are the same bytes either way: tests/test_train.py, tests/test_benchmark.py)."""

    workers: Count  # crossval: DataLoader processes decoding images read per batch
    max_resident_mb: Count  # crossval: decode all images into memory when they fit this, else read per batch
    benchmark_workers: Positive  # benchmark: processes scoring the dataset x model pairs


class Raw(Block):
    sources: str
    download: bool


class Crossval(Block):
    """The cross-validation matrix: which datasets and models are trained here, on which folds."""

    datasets: dict[DatasetName, TrainedDataset]
    models: Names
    folds: FoldList
    fold_seed: Seed | None


class Distribute(Block):
    """Ray resources of each crossval fold's task (``python -m labelbench.ops.distribute``; no stage reads it)."""

    num_cpus: Annotated[float, Field(ge=0)]
    num_gpus: Annotated[float, Field(ge=0)]
    max_retries: Count


def part_of(whole: type[Block], *keys: str, per_key: tuple[str, ...] = ()) -> type[Part]:
    """The :class:`Part` of ``whole`` holding ``keys``, each with its type and rules as declared in ``whole``."""
    fields = {key: (whole.model_fields[key].annotation, whole.model_fields[key]) for key in keys}
    part = create_model(f"{whole.__name__}Part", __base__=Part, **fields)
    part.whole, part.per_key = whole, per_key
    return part


# --- one schema per training stage: exactly the keys it reads --------------------------------


class RawParams(Part):
    raw: Raw


class NoiseParams(Part):
    crossval: part_of(Crossval, "datasets", per_key=("datasets",))  # noise@D reads crossval.datasets.D


class FoldsParams(Part):
    crossval: part_of(Crossval, "folds", "fold_seed")


class CrossvalParams(Part):
    train: Train
    crossval: part_of(Crossval, "folds")


class AssembleParams(Part):
    crossval: part_of(Crossval, "models", "folds")


Schema = TypeVar("Schema", bound=BaseModel)


def declared_keys(schema: type[BaseModel], prefix: str = "") -> list[str]:
    """The dotted params keys a schema reads, as a stage lists them under ``params:`` in dvc.yaml
    (a block that a stage reads whole is one key).

    >>> declared_keys(FoldsParams), declared_keys(NoiseParams)
    (['crossval.folds', 'crossval.fold_seed'], ['crossval.datasets.${key}'])
    """
    keys = []
    for name, field in schema.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, Part):
            keys += declared_keys(kind, f"{prefix}{name}.")
        else:
            keys.append(prefix + name + (".${key}" if name in getattr(schema, "per_key", ()) else ""))
    return keys


def read_yaml(path: str | Path, text: str | None = None) -> dict:
    path = Path(path)
    if text is None and not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    try:
        raw = load_yaml(path) if text is None else parse_yaml(text, path)
    except DataError as exc:
        raise ParamsError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ParamsError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(TOP_LEVEL_KEYS)}")
    return raw


def _subset(raw, schema: type[BaseModel]):
    """The part of ``raw`` that ``schema`` reads (other keys of a shared block belong to other stages)."""
    if not isinstance(raw, dict):
        return raw
    kinds = {name: field.annotation for name, field in schema.model_fields.items() if name in raw}
    return {name: _subset(raw[name], kind) if isinstance(kind, type) and issubclass(kind, Part) else raw[name]
            for name, kind in kinds.items()}


def _keys_at(kind, loc: tuple) -> list[str]:
    """The keys allowed in the mapping at ``loc`` (a pydantic error's location, less its last key) of the schema
    ``kind``: the fields of the block there, through the values of ``dict[str, Block]`` fields; [] elsewhere."""
    for part in (*loc, None):
        while typing.get_origin(kind) is typing.Annotated or isinstance(kind, type) and issubclass(kind, RootModel):
            kind = typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Annotated else \
                kind.model_fields["root"].annotation
        if part is None:
            return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []
        if isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        else:
            return []


def _validate(schema: type[Schema], data, path, prefix: str = "") -> Schema:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = (prefix + ".".join(str(part) for part in error["loc"])).rstrip(".")  # a root model: the block
            # a rule across keys: its message names them
            if error["type"] != "missing" and isinstance(error.get("input"), dict):
                problems.append(f"{key}: {error['msg']}" if key else error["msg"])
                continue
            value = "(missing)" if error["type"] == "missing" else repr(error.get("input"))
            allowed = _keys_at(schema, error["loc"][:-1]) if error["type"] == "extra_forbidden" else []
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            if error["type"] == "dict_type" and value == "None":  # `added:` with nothing under it is null to YAML
                hint = "; an empty mapping is written {}"
            problems.append(f"{key} = {value}: {error['msg']}{hint}")
        raise ParamsError(f"{path}: " + "; ".join(problems)) from None


def load_runtime(path: str | Path = "params.yaml") -> Runtime:
    """The ``runtime`` block, validated in full (read outside any stage's declared params)."""
    raw = read_yaml(path)
    if "runtime" not in raw:
        raise ParamsError(f"{path}: missing block 'runtime' ({', '.join(Runtime.model_fields)})")
    return _validate(Runtime, raw["runtime"], path, prefix="runtime.")


def load_params(schema: type[Schema], path: str | Path = "params.yaml", text: str | None = None) -> Schema:
    """Validate the keys ``schema`` reads (and, in full, each block they belong to) of params.yaml at ``path`` (or
    of ``text``, :func:`read_yaml`); ParamsError naming each bad key, its value and the rule."""
    raw = read_yaml(path, text)
    for key, field in schema.model_fields.items():
        whole = getattr(field.annotation, "whole", None)
        if whole is not None and key in raw:
            _validate(whole, raw[key], path, prefix=f"{key}.")
    return _validate(schema, _subset(raw, schema), path)

"""Reading and checking ``params.yaml``: every stage goes through here, so a typo fails once, clearly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from labelbench.evaluation.ensembles import check_scheme
from labelbench.evaluation.scores import resolve_method

PUBLISHED_ROOT = "data/published"


class ParamsError(ValueError):
    pass


@dataclass(frozen=True)
class Params:
    raw: dict
    path: Path

    @property
    def score(self) -> str:
        return resolve_method(self.raw["score"], adjust_pred_probs=self.adjust_pred_probs)

    @property
    def adjust_pred_probs(self) -> bool:
        return self.raw.get("adjust_pred_probs", False)

    @property
    def ensemble(self) -> str:
        return check_scheme(self.raw["ensemble"])

    @property
    def datasets(self) -> dict[str, str]:
        """Dataset name -> root folder of the data contract that holds it."""
        return dict(self.raw["datasets"])

    def dataset_root(self, name: str) -> Path:
        if name not in self.datasets:
            raise ParamsError(
                f"{self.path}: dataset {name!r} is not in `datasets`; known: {', '.join(self.datasets)}"
            )
        return Path(self.datasets[name])

    def models_for(self, name: str) -> list[str]:
        """Published data uses `models`; data trained here uses `crossval.models`."""
        root = self.dataset_root(name)
        if root.as_posix().rstrip("/") == PUBLISHED_ROOT:
            return list(self.raw["models"])
        return list(self.raw.get("crossval", {}).get("models", []))

    def section(self, name: str) -> dict:
        return dict(self.raw.get(name, {}))


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: file not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    for key in ("score", "ensemble", "datasets", "models"):
        if key not in raw:
            raise ParamsError(f"{path}: missing key {key!r}")
    if not isinstance(raw.get("adjust_pred_probs", False), bool):
        raise ParamsError(f"{path}: adjust_pred_probs must be true or false")
    params = Params(raw=raw, path=path)
    try:
        params.score  # noqa: B018 - validates method and adjust_pred_probs together
        params.ensemble  # noqa: B018
    except ValueError as exc:
        raise ParamsError(f"{path}: {exc}") from None
    if not isinstance(raw["datasets"], dict) or not raw["datasets"]:
        raise ParamsError(f"{path}: `datasets` must map dataset names to data roots")
    return params


def read_params_block(path: str | Path, name: str) -> dict:
    """The ``name:`` block of a params.yaml (empty when absent); ValueError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    block = raw.get(name) or {}
    if not isinstance(block, dict):
        raise ValueError(f"{path}: `{name}` must be a mapping")
    return block

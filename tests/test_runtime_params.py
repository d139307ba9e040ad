"""Settings of how the machine trains (the `runtime` block) retrain nothing; what is trained (`train`) retrains
every fold. Real `dvc status` in a temporary clone of this checkout."""

import json

import pytest
import yaml

from conftest import clone_repo, run

pytestmark = pytest.mark.slow


def status(repo) -> dict:
    return json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}")


def set_param(repo, dotted: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    block, key = dotted.split(".")
    params[block][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def changed_params(entries) -> set[str]:
    return {key for entry in entries if isinstance(entry, dict)
            for changes in entry.get("changed deps", {}).values() if isinstance(changes, dict) for key in changes}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return clone_repo(tmp_path_factory.mktemp("runtime") / "clone")


@pytest.mark.parametrize("key, value", [("runtime.workers", 3), ("runtime.max_resident_mb", 0),
                                        ("runtime.benchmark_workers", 1)])
def test_a_runtime_setting_changes_no_stage(repo, key, value):
    before = status(repo)
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, key, value)
        assert status(repo) == before
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_changed_source_archive_marks_the_raw_stages_changed(repo):
    """The converters read ``raw.sources`` (data/sources): a new or changed archive there reruns every raw stage (one
    folder dependency: a foreach cannot depend on each source's own files), and nothing else directly."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    archive = repo / params["raw"]["sources"] / "cifar-10n_human_labels.npz"
    before = status(repo)
    try:
        archive.write_bytes(b"a changed source")
        after = status(repo)
    finally:
        archive.unlink()
    assert {stage for stage in after if after[stage] != before.get(stage)} == {
        f"raw@{name}" for name in params["crossval"]["datasets"]}


def test_train_lr_marks_every_crossval_stage_changed(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    folds = [f"crossval@{d}-{m}-{f}" for d in params["crossval"]["datasets"] for m in params["crossval"]["models"]
             for f in params["crossval"]["folds"]]
    before, original = status(repo), (repo / "params.yaml").read_text()
    try:
        set_param(repo, "train.lr", 0.02)
        after = status(repo)
    finally:
        (repo / "params.yaml").write_text(original)
    assert {stage for stage in after if after[stage] != before.get(stage)} == set(folds)
    assert all("train" in changed_params(after[stage]) for stage in folds)

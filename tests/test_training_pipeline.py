"""The training half through real `dvc repro` in a temp repo: resume after a crash, a rerun that
does nothing, and params changes that rerun exactly the affected stages."""

import json
import os
import shutil
import signal
import subprocess

import numpy as np
import pytest
import yaml

from conftest import DVC_REMOTE, run, small_clone, stages_run, venv_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crashed_and_resumed(tmp_path_factory, published):
    """A small clone (digits plus one published dataset, 3 folds, 1 epoch) whose first `dvc repro`
    is killed while fold 2 trains, then resumed by a second `dvc repro`, and committed."""
    if not DVC_REMOTE.is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}")
    repo = small_clone(tmp_path_factory.mktemp("train"), published=["roman-numeral"])
    run(["dvc", "pull", "-q", "data/published"], repo)
    process = subprocess.Popen(["dvc", "repro"], cwd=repo, env={**venv_env(), "PYTHONPATH": str(repo)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Running stage 'crossval@digits-test_resnet-2'" in line:
            os.killpg(process.pid, signal.SIGKILL)  # a crash while fold 2 trains
            break
    process.wait()
    fold_2_after_crash = (repo / "data/crossval/digits/test_resnet/fold_2").exists()
    resumed = run(["dvc", "repro"], repo).stdout
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "trained"], repo)
    return repo, "".join(seen), fold_2_after_crash, resumed


@pytest.fixture
def repo(crashed_and_resumed):
    return crashed_and_resumed[0]


def test_crash_in_fold_2_resumes_there(crashed_and_resumed):
    repo, output, fold_2_after_crash, resumed = crashed_and_resumed
    assert "crossval@digits-test_resnet-1" in output, output
    assert not fold_2_after_crash
    ran = stages_run(resumed)
    assert "crossval@digits-test_resnet-0" not in ran and "crossval@digits-test_resnet-1" not in ran, resumed
    assert ran[0] == "crossval@digits-test_resnet-2", ran
    assert {"assemble@digits", "evaluate", "benchmark", "report"} <= set(ran)
    pred_probs = np.load(repo / "data/trained/digits/pred_probs/test_resnet.npy")
    assert pred_probs.shape == (1797, 10)
    assert "digits" in (repo / "reports/benchmark.md").read_text()


def test_issues_stage_lists_every_dataset_with_an_image_grid_where_images_exist(repo):
    """The issues stage of that run: a ranked CSV per dataset (the published roman-numeral, digits trained here) and
    a PNG grid of the top-ranked images for digits, whose raw images are in the repository."""
    from PIL import Image

    from labelbench.evaluation.issues import read_issues

    assert sorted(p.name for p in (repo / "reports/issues").iterdir()) == [
        "digits.csv", "digits.png", "roman-numeral.csv"]
    digits = read_issues(repo / "reports/issues/digits.csv")
    assert len(digits) == 200 and set(digits["given_label"]) <= set("0123456789")  # params.yaml's issues.rows
    assert list(digits["rank"]) == list(range(1, 201))
    assert Image.open(repo / "reports/issues/digits.png").size[0] > 400


def test_second_repro_is_a_noop_and_training_is_deterministic(repo):
    assert stages_run(run(["dvc", "repro"], repo).stdout) == []
    assert run(["git", "status", "--porcelain"], repo).stdout.strip() == ""
    # Retraining one fold from scratch gives byte-identical held-out probabilities.
    fold = repo / "data/crossval/digits/test_resnet/fold_1"
    before = (fold / "heldout_pred_probs.npy").read_bytes()
    run(["dvc", "repro", "-f", "-s", "crossval@digits-test_resnet-1"], repo)
    assert (fold / "heldout_pred_probs.npy").read_bytes() == before
    # the whole fold folder (weights, DVCLive curves, config) hashes the same: dvc.lock is unchanged
    assert run(["git", "status", "--porcelain"], repo).stdout.strip() == ""


def test_what_a_killed_stage_leaves_is_no_part_of_any_dependency(repo):
    """A stage killed by SIGKILL cannot remove its temporary output (atomic_outputs: `.<name>.<host>-<pid>.<random>.tmp`,
    removed by the next write of that output), which lies in a folder that assemble and benchmark depend on:
    .dvcignore and .gitignore leave it out."""
    leftover = repo / "data/crossval/digits/test_resnet/.fold_1.k1ll3d.tmp"
    leftover.mkdir()
    (leftover / "heldout_pred_probs.npy").write_bytes(b"half-written")
    try:
        assert run(["dvc", "status"], repo).stdout.strip() == "Data and pipelines are up to date."
        assert run(["git", "status", "--porcelain"], repo).stdout.strip() == ""
    finally:
        shutil.rmtree(leftover)


def test_epochs_change_reruns_training_not_the_data_stages(repo):
    ran = stages_run(run(["dvc", "exp", "run", "-S", "train.epochs=2"], repo).stdout)
    assert {f"crossval@digits-test_resnet-{f}" for f in range(3)} <= set(ran)
    assert not {"raw@digits", "dedupe@digits", "noise@digits", "folds@digits"} & set(ran), ran
    assert {"assemble@digits", "evaluate"} <= set(ran)
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout", "-q"], repo)


def test_adding_a_dataset_leaves_every_stage_of_the_others_current(repo):
    """A second dataset in `crossval.datasets`: its own stages and the evaluation stages are stale, none of digits'
    (noise@D declares `crossval.datasets.D`, not the whole mapping)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["crossval"]["datasets"]["digits-copy"] = {"source": "digits", "noise": "instance", "noise_amount": 0.1,
                                                     "noise_seed": 1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = set(json.loads(run(["dvc", "status", "--json"], repo).stdout))
    finally:
        run(["git", "checkout", "--", "params.yaml"], repo)
    assert {"raw@digits-copy", "noise@digits-copy", "folds@digits-copy", "evaluate"} <= stale, stale
    assert not {stage for stage in stale if stage.endswith("@digits") or stage.startswith("crossval@digits-")
                if "digits-copy" not in stage}, stale


def test_adding_a_model_trains_only_the_new_model(repo):
    ran = stages_run(run(["dvc", "exp", "run", "-S", "crossval.models=[test_resnet,test_efficientnet]"], repo).stdout)
    assert {f"crossval@digits-test_efficientnet-{f}" for f in range(3)} == {s for s in ran if s.startswith("crossval@")}
    assert not {"raw@digits", "folds@digits"} & set(ran), ran
    assert {"assemble@digits", "evaluate", "benchmark"} <= set(ran)
    assert (repo / "data/trained/digits/pred_probs/test_efficientnet.npy").is_file()
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout", "-q"], repo)

"""`make reproduce` stops with one clear message when the published remote is missing."""

import pytest

from conftest import DVC_REMOTE, run
from labelbench.ops.remote_check import remote_problem


@pytest.fixture
def dvc_repo(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    return tmp_path


def test_missing_remote_names_the_fix(dvc_repo):
    run(["dvc", "remote", "add", "published", "../../nowhere/dvc-remote"], dvc_repo)
    problem = remote_problem(dvc_repo)
    assert "does not exist" in problem
    assert "dvc remote modify --local published url" in problem


def test_no_remote_configured(dvc_repo):
    assert "no DVC remote named 'published'" in remote_problem(dvc_repo)


def test_local_override_to_a_real_copy_passes(dvc_repo):
    if not DVC_REMOTE.is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    run(["dvc", "remote", "add", "published", "../../nowhere"], dvc_repo)
    run(["dvc", "remote", "modify", "--local", "published", "url", str(DVC_REMOTE)], dvc_repo)
    assert remote_problem(dvc_repo) is None


def test_wrong_folder_is_reported(dvc_repo, tmp_path_factory):
    empty = tmp_path_factory.mktemp("empty-remote")
    run(["dvc", "remote", "add", "published", str(empty)], dvc_repo)
    assert "does not hold the published tree" in remote_problem(dvc_repo)

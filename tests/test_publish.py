"""`make publish` pushes only what the commit names: real dvc in a temporary clone, pushing into an
empty folder that stands in for the public remote's writable location."""

import pytest

from conftest import make, run, small_clone

pytestmark = pytest.mark.slow


def objects(remote) -> list[str]:
    return sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """roman-numeral evaluated, nothing trained, reproduced and committed; `published` points at an empty folder."""
    root = small_clone(tmp_path_factory.mktemp("publish") / "clone", published=["roman-numeral"], trained=False)
    run(["dvc", "pull", "-q", "data/published"], root)
    run(["dvc", "repro", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "reproduced"], root)
    remote = root.parent / "public-remote"
    remote.mkdir()
    run(["dvc", "remote", "modify", "--local", "published", "url", str(remote)], root)
    return root, remote


def test_refused_when_dvc_lock_differs_from_the_commit(repo):
    root, remote = repo
    try:
        params = (root / "params.yaml").read_text()
        (root / "params.yaml").write_text(params.replace("lift_k: 100", "lift_k: 50"))
        run(["dvc", "repro", "-q"], root)  # this machine's outputs of an uncommitted change
        result = make("publish", root, check=False)
        assert result.returncode != 0
        assert "make publish: refused: not committed (git status): dvc.lock " in result.stderr
        assert objects(remote) == []
    finally:
        run(["git", "checkout", "-q", "--", "."], root)
        run(["dvc", "repro", "-q"], root)
    assert run(["git", "status", "--porcelain"], root).stdout == ""


def test_refused_when_a_dvc_file_is_not_committed(repo):
    """`dvc add notes.txt` just now: a bare `dvc push` would push its bytes too."""
    root, remote = repo
    try:
        (root / "notes.txt").write_text("private notes\n")
        run(["dvc", "add", "-q", "notes.txt"], root)
        result = make("publish", root, check=False)
        assert result.returncode != 0
        assert "make publish: refused: not committed (git status): " in result.stderr
        assert "notes.txt.dvc" in result.stderr
        assert objects(remote) == []
    finally:
        (root / "notes.txt.dvc").unlink(missing_ok=True)
        (root / "notes.txt").unlink(missing_ok=True)
        run(["git", "checkout", "-q", "--", "."], root)
    assert run(["git", "status", "--porcelain"], root).stdout == ""


def test_refused_when_the_pipeline_is_not_reproduced(repo):
    root, remote = repo
    script = root / "stages" / "report.py"
    head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    try:
        script.write_text(script.read_text() + "\n# a committed change not reproduced yet\n")
        run(["git", "commit", "-qam", "report edited"], root)
        result = make("publish", root, check=False)
        assert result.returncode != 0
        assert "make publish: refused: `dvc status` lists stages" in result.stderr
        assert objects(remote) == []
    finally:
        run(["git", "reset", "-q", "--hard", head], root)
    assert run(["dvc", "status", "-q"], root, check=False).returncode == 0


def test_publishes_the_committed_outputs(repo):
    root, remote = repo
    make("publish", root)
    pushed = objects(remote)
    assert "files/md5/d4/15820314fa1007e4144762b9b1995f.dir" in pushed  # data/published
    assert not [p for p in pushed if p.startswith("runs/")]  # no run-cache

"""The project as a data and model registry for other DVC projects (README "Reuse from another project").

A new user's project (`git init && dvc init`) reads the published pred_probs from a git clone of this
repository addressed by URL (`file://`, so that DVC clones it into a temporary folder as it would the
GitHub URL): `dvc ls`, `dvc get`, `dvc import` and `dvc artifacts get`, with the public remote given
once per command, as an absolute path or served over HTTP (127.0.0.1, read-only). Every file that
arrives is checked against the authors' SHA256SUMS. The committed remote URL is relative
(``../../shared/dvc-remote``), so without the remote given these commands cannot find it.

DVC 3.67 facts these tests pin (README relies on them):
- `--remote-config url=<absolute path>` works for all four commands;
- for a URL with a scheme (http, s3, ...) `--remote-config url=...` is merged after DVC filled in the
  local-path defaults of the committed remote (`protected`, `slow_link_warning`), which the http
  schema refuses; `--config FILE` (merged before validation) works for ls / get / artifacts get, and
  `dvc import --remote published --remote-config url=...` (stored as such a config in the .dvc file);
- `dvc artifacts get` finds an artifact only through an annotated git tag `<name>@v<semver>`
  (`gto register`), newest version unless `--rev`.
Only the published data is guaranteed in the remote: digits' trained outputs are not tested here.
"""

import hashlib
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import DATASETS, DVC_REMOTE, PUBLISHED, REPO_ROOT, clone_repo, run, venv_env

VERSION = "v1.0.0"
PUBLISHED_ARTIFACTS = {f"pred-probs-{d}": f"data/published/{d}/pred_probs" for d in DATASETS}
TRAINED_ARTIFACTS = {"digits-test-resnet": "data/crossval/digits/test_resnet",
                     "pred-probs-digits": "data/trained/digits",
                     "digits-hard-test-resnet": "data/crossval/digits-hard/test_resnet",
                     "pred-probs-digits-hard": "data/trained/digits-hard"}


def sums() -> dict[str, str]:
    """Relative path under data/published -> sha256, from the authors' SHA256SUMS."""
    lines = (PUBLISHED / "SHA256SUMS").read_text().splitlines()
    return {rel.strip(): digest for digest, rel in (line.split(None, 1) for line in lines if line.strip())}


def assert_published_bytes(folder: Path, prefix: str) -> int:
    """``folder`` holds exactly the published files under ``prefix`` (e.g. roman-numeral/pred_probs),
    byte for byte; returns how many."""
    expected = {rel[len(prefix) + 1:]: digest for rel, digest in sums().items() if rel.startswith(prefix + "/")}
    assert expected, prefix
    got = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
           for p in folder.rglob("*") if p.is_file()}
    assert got == expected, f"{folder} differs from SHA256SUMS under {prefix}"
    return len(got)


def user_env() -> dict:
    env = venv_env()
    env["DVC_NO_ANALYTICS"] = "1"  # a fresh `dvc init` has analytics on; nothing leaves 127.0.0.1
    return env


def dvc(args: list[str], cwd: Path, check: bool = True):
    return run(["dvc", *args], cwd, check=check, env=user_env())


def new_user_project(path: Path) -> Path:
    path.mkdir(parents=True)
    run(["git", "init", "-q"], path)
    dvc(["init", "-q"], path)
    return path


def register_published(repo: Path, version: str = VERSION) -> None:
    """What maintainers do once per release: an annotated tag per artifact (`dvc artifacts get` needs it)."""
    for name in PUBLISHED_ARTIFACTS:
        run(["gto", "register", name, "--version", version], repo, env=user_env())


def test_artifacts_declared_in_dvc_yaml():
    """The top-level `artifacts:` of dvc.yaml, as DVC reads it: valid names, each published dataset's
    pred_probs and digits' trained model and pred_probs, with type, description and labels."""
    from dvc.repo import Repo
    from dvc.repo.artifacts import check_name_format

    with Repo(str(REPO_ROOT)) as repo:
        artifacts = repo.artifacts.read()["dvc.yaml"]
    assert {name: a.path for name, a in artifacts.items()} == PUBLISHED_ARTIFACTS | TRAINED_ARTIFACTS
    for name, artifact in artifacts.items():
        check_name_format(name)
        assert artifact.type in ("dataset", "model") and artifact.desc and artifact.labels, name
    assert artifacts["digits-test-resnet"].type == "model"
    published_files = sums()
    for dataset in DATASETS:
        assert any(rel.startswith(f"{dataset}/pred_probs/") for rel in published_files), dataset
    # the trained ones are outputs of the pipeline: data/trained/digits itself, the folds under test_resnet
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    outs = [stages["assemble"]["do"]["outs"][0].replace("${key}", "digits"),
            stages["crossval"]["outs"][0]]
    assert outs[0] == TRAINED_ARTIFACTS["pred-probs-digits"]
    assert outs[1].startswith("data/crossval/${item.dataset}/${item.model}/")


# ---------------------------------------------------------------------------------------------------
# With the real public remote (slow: real dvc, git clones)

@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A committed copy of this repository as others see it on GitHub: the relative remote URL only
    (no .dvc/config.local), the published artifacts registered as v1.0.0."""
    if not (DVC_REMOTE / "files").is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    if not (PUBLISHED / "SHA256SUMS").is_file():
        pytest.fail(f"no SHA256SUMS at {PUBLISHED}", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    root = clone_repo(tmp_path_factory.mktemp("registry") / "labelbench")
    (root / ".dvc" / "config.local").unlink()
    register_published(root)
    return root


class _Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet; requests are recorded on the server instead
        self.server.requested.append(self.path)


@pytest.fixture(scope="module")
def http_remote():
    """The public remote served read-only (GET / HEAD only) over HTTP on 127.0.0.1, stopped at the end."""
    if not (DVC_REMOTE / "files").is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(DVC_REMOTE)))
    server.requested = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def http_url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def object_requests(server) -> int:
    return sum(path.startswith("/files/md5/") for path in server.requested)


def check_ls(user: Path, url: str, remote_args: list[str]) -> None:
    top = dvc(["ls", url, "data/published/roman-numeral", *remote_args], user).stdout.split()
    assert {"pred_probs", "given_labels.npy", "label_errors.npy"} <= set(top)
    listed = dvc(["ls", "-R", url, "data/published", *remote_args], user).stdout.split()
    assert set(listed) == set(sums()) | {"SHA256SUMS"}  # every published file, nothing else


@pytest.mark.slow
def test_plain_path_remote(registry, tmp_path):
    """The clone's URL with the remote given as an absolute local path: `--remote-config url=PATH`."""
    user = new_user_project(tmp_path / "user")
    url = registry.as_uri()  # file:// -> DVC clones it into a temporary folder
    remote = ["--remote-config", f"url={DVC_REMOTE}"]

    check_ls(user, url, remote)

    dvc(["get", url, "data/published/roman-numeral/pred_probs", "-o", "rn", *remote], user)
    assert_published_bytes(user / "rn", "roman-numeral/pred_probs") == 5

    dvc(["import", url, "data/published/roman-numeral/pred_probs", "-o", "rn_import", *remote], user)
    assert_published_bytes(user / "rn_import", "roman-numeral/pred_probs")
    assert yaml.safe_load((user / "rn_import.dvc").read_text())["deps"][0]["repo"]["remote"] == {
        "url": str(DVC_REMOTE)}

    dvc(["artifacts", "get", url, "pred-probs-roman-numeral", "-o", "rn_artifact", *remote], user)
    assert_published_bytes(user / "rn_artifact", "roman-numeral/pred_probs")


@pytest.mark.slow
def test_http_remote_given_once(registry, http_remote, tmp_path):
    """The clone's URL with the remote served over HTTP: `--config FILE` naming it (ls, get, artifacts
    get) and `dvc import --remote published --remote-config url=HTTP` (kept in the .dvc file: a later
    `dvc pull` of the import needs nothing more)."""
    user = new_user_project(tmp_path / "user")
    url, remote_url = registry.as_uri(), http_url(http_remote)
    conf = tmp_path / "labelbench-remote.conf"
    conf.write_text(f'[\'remote "published"\']\n    url = {remote_url}\n')
    remote = ["--config", str(conf)]

    check_ls(user, url, remote)

    before = object_requests(http_remote)
    dvc(["get", url, "data/published/roman-numeral/pred_probs", "-o", "rn", *remote], user)
    assert_published_bytes(user / "rn", "roman-numeral/pred_probs")
    assert object_requests(http_remote) > before  # the bytes came over HTTP

    dvc(["import", url, "data/published/roman-numeral", "-o", "rn_import",
         "--remote", "published", "--remote-config", f"url={remote_url}"], user)
    assert_published_bytes(user / "rn_import", "roman-numeral")
    repo_dep = yaml.safe_load((user / "rn_import.dvc").read_text())["deps"][0]["repo"]
    assert repo_dep["config"]["remote"]["published"]["url"] == remote_url
    shutil.rmtree(user / "rn_import")
    shutil.rmtree(user / ".dvc" / "cache")
    before = object_requests(http_remote)
    dvc(["pull", "rn_import.dvc"], user)
    assert_published_bytes(user / "rn_import", "roman-numeral")
    assert object_requests(http_remote) > before

    for dataset in DATASETS:  # the newest registered version of each
        dvc(["artifacts", "get", url, f"pred-probs-{dataset}", "-o", f"artifacts/{dataset}", *remote], user)
        assert_published_bytes(user / "artifacts" / dataset, f"{dataset}/pred_probs")
    dvc(["artifacts", "get", url, "pred-probs-roman-numeral", "--rev", VERSION, "-o", "rn_v1", *remote], user)
    assert_published_bytes(user / "rn_v1", "roman-numeral/pred_probs")


@pytest.mark.slow
def test_http_public_deployment(registry, http_remote, tmp_path):
    """A public deployment commits the HTTP URL as `published`'s url: plain `dvc pull` of data/published
    in a clone, and ls / get / import / artifacts get from its URL with no remote option at all."""
    deployed = tmp_path / "deployed"
    run(["git", "clone", "-q", str(registry), str(deployed)], tmp_path)
    for key, value in (("user.email", "test@example.com"), ("user.name", "test")):
        run(["git", "config", key, value], deployed)
    dvc(["remote", "modify", "published", "url", http_url(http_remote)], deployed)
    run(["git", "commit", "-qam", "public remote over HTTP"], deployed)
    register_published(deployed, "v1.1.0")  # the clone brought v1.0.0 (relative url); newest wins

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(deployed), str(clone)], tmp_path)
    before = object_requests(http_remote)
    dvc(["pull", "data/published"], clone)
    assert object_requests(http_remote) > before
    folder = clone / "data" / "published"
    for dataset in DATASETS:
        assert_published_bytes(folder / dataset, dataset)
    run(["python", "-m", "labelbench.ops.remote_check"], clone)  # the pre-pull check accepts the HTTP url

    user = new_user_project(tmp_path / "user")
    url = deployed.as_uri()
    check_ls(user, url, [])
    dvc(["get", url, "data/published/cifar-10s/pred_probs", "-o", "c10s"], user)
    assert_published_bytes(user / "c10s", "cifar-10s/pred_probs")
    dvc(["import", url, "data/published/roman-numeral/pred_probs", "-o", "rn_import"], user)
    assert_published_bytes(user / "rn_import", "roman-numeral/pred_probs")
    dvc(["artifacts", "get", url, "pred-probs-cifar-10n-worst", "-o", "worst"], user)
    assert_published_bytes(user / "worst", "cifar-10n-worst/pred_probs")

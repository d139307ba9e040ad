import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import labelbench.train.host  # noqa: F401  before any test imports torch: pins its CPU kernels (same bytes on any host)
from labelbench.evaluation import numerics  # before any test imports numpy: the evaluation stages' numerics

numerics.check()  # in-process results are then the stages' (tests compare them with the committed outputs)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
PUBLISHED = SHARED / "published"
DVC_REMOTE = SHARED / "dvc-remote"
DATASETS = ["roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s"]
MODELS = ["resnet18", "resnet50d", "efficientnet_b1", "twins_pcpvt_base", "swin_base_patch4_window7_224"]


@pytest.fixture(scope="session")
def published() -> Path:
    if not (PUBLISHED / "roman-numeral" / "given_labels.npy").is_file():
        pytest.fail(f"published artifacts not found at {PUBLISHED}: the tests need the authors' data beside the "
                    "checkout (../shared/published)", pytrace=False)
    return PUBLISHED


@pytest.fixture(scope="module")
def no_aws_settings_of_the_caller(tmp_path_factory):
    """dvc runs without the caller's AWS variables and credentials files: keys come from .dvc/config.local
    only (AWS_CONFIG_FILE, for one, would hide the embedded server's profile)."""
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("AWS_")}
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path_factory.mktemp("aws") / "no-credentials")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    yield
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(saved)


def venv_env() -> dict:
    """Environment whose PATH starts with this interpreter's bin (dvc, python of the venv)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("DVC_SITE_CACHE_DIR", None)
    return env


def run(cmd, cwd, check=True, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` with the venv first on PATH; the stages there import the ``labelbench``
    of ``cwd`` (not this checkout's editable install), so a test can edit a clone's package."""
    env = kwargs.pop("env", None) or venv_env()
    env["PYTHONPATH"] = str(cwd)
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True,
                            capture_output=True, shell=isinstance(cmd, str), **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def clone_repo(dest: Path) -> Path:
    """A temp git repo holding this checkout's tracked and untracked-but-not-ignored files,
    committed, with the published remote pointed at the absolute shared path and ``../shared`` beside it."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    template = REPO_ROOT / ".dvc" / "plots_template.html"
    if template.is_file():
        shutil.copy2(template, dest / ".dvc" / "plots_template.html")
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "test@example.com"], dest)
    run(["git", "config", "user.name", "test"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "clone"], dest)
    run(["dvc", "remote", "modify", "--local", "published", "url", str(DVC_REMOTE)], dest)
    beside = dest.parent / "shared"  # beside ../shared, as a checkout is: the `published` stage's source resolves
    if not beside.exists():
        beside.symlink_to(SHARED)
    return dest


def make(target: str, repo: Path, **kwargs) -> subprocess.CompletedProcess:
    """``make <target>`` in ``repo`` with this interpreter's virtualenv (no set-up of a new one)."""
    return run(["make", "-s", "-o", "setup", f"VENV={Path(sys.prefix)}", target], repo, **kwargs)


def load_stage(name: str):
    """Import ``stages/<name>.py`` as a module (stage scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO_ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stages_run(output: str) -> list[str]:
    """Stage names that `dvc repro` / `dvc exp run` output says it ran."""
    return re.findall(r"Running stage '([^']+)'", output)


def small_clone(dest: Path, *, published: list[str], trained: bool = True, folds: int | None = 3) -> Path:
    """:func:`clone_repo` with a quick configuration, committed: ``published`` replaces the evaluated
    published datasets; digits (alone of ``crossval.datasets``) is trained (``folds`` folds of 1 epoch at 8 px;
    None: unchanged) or, with ``trained=False``, not at all. dvc.lock keeps only the ``published`` stage (the authors' bytes, which
    `dvc pull data/published` fetches by it), since the rest records the full configuration."""
    root = clone_repo(dest)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["published"]["datasets"] = published
    datasets = params["crossval"]["datasets"]
    params["crossval"]["datasets"] = {"digits": datasets["digits"]} if trained else {}
    if folds is not None:
        params["crossval"]["folds"] = list(range(folds))
        params["train"].update(epochs=1, image_size=8)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    lock["stages"] = {"published": lock["stages"]["published"]}
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "small configuration"], root)
    return root


def roman_numeral_clone(dest: Path) -> Path:
    """:func:`small_clone` evaluating roman-numeral only, nothing trained, ``data/published`` pulled from the public
    remote (fails when there is none): the quick repository of the evaluation-half tests."""
    if not DVC_REMOTE.is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}: the tests need the public remote beside the checkout "
                    "(../shared/dvc-remote)", pytrace=False)
    root = small_clone(dest, published=["roman-numeral"], trained=False)
    run(["dvc", "pull", "-q", "data/published"], root)
    return root

"""`python -m labelbench add-dataset`: a generated dataset goes through `dvc repro` into every output;
each kind of bad input is refused with one error naming the file, and leaves the repository unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import roman_numeral_clone, run, stages_run


def make_dataset(folder: Path, *, n: int = 300, k: int = 4, models: int = 2, seed: int = 0,
                 images: bool = False) -> dict[str, Path]:
    """A generated dataset in ``folder``: ~15% of the labels flipped, ``models`` noisy but
    informative pred_probs (N, K) each; files named unlike the contract (the user's names)."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % k
    rng.shuffle(true)
    flip = rng.random(n) < 0.15
    given = np.where(flip, (true + rng.integers(1, k, n)) % k, true)
    (folder / "probs").mkdir(parents=True)
    for m in range(models):
        logits = 2.5 * np.eye(k)[true] + rng.normal(0, 1, (n, k))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        np.save(folder / "probs" / f"net{m}.npy", probs)
    files = {"pred_probs": folder / "probs", "labels": folder / "labels.npy", "errors": folder / "mask.npy",
             "true_labels": folder / "truth.npy", "image_ids": folder / "ids.txt", "classes": folder / "names.txt"}
    np.save(files["labels"], given)
    np.save(files["errors"], given != true)
    np.save(files["true_labels"], true)
    ids = [f"img/{c}/{i:04d}.png" for i, c in enumerate(true)]
    files["image_ids"].write_text("".join(f"{i}\n" for i in ids))
    files["classes"].write_text("".join(f"class_{c}\n" for c in "abcd"[:k]))
    if images:
        files["images"] = folder / "pictures"
        for i, image_id in enumerate(ids):
            path = files["images"] / image_id
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
    return files


def cli_args(name: str, files: dict[str, Path], *options: str) -> list[str]:
    """add-dataset arguments for ``name`` with ``--pred-probs`` and ``--labels`` and each option given."""
    args = ["add-dataset", name, "--pred-probs", str(files["pred_probs"]), "--labels", str(files["labels"])]
    for option in options:
        args += [f"--{option.replace('_', '-')}", str(files[option])]
    return args


def without_added(text: str) -> list[str]:
    """The lines of a params.yaml text but its top-level ``added:`` block."""
    lines, inside = [], False
    for line in text.splitlines():
        inside = line.startswith("added:") or (inside and line.startswith(" "))
        if not inside:
            lines.append(line)
    return lines


def tree_hash(root: Path) -> str:
    """Every file under ``root`` (its path and bytes), but git's and DVC's own stores."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".git/", ".dvc/cache/", ".dvc/tmp/")):
            continue
        digest.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"link") + b"\0")
    return digest.hexdigest()


pytestmark = pytest.mark.slow  # real git and dvc in a temporary clone


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    return roman_numeral_clone(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return make_dataset(tmp_path_factory.mktemp("inputs"), images=True)


def test_added_datasets_reach_every_output(repo, inputs, tmp_path):
    plain = make_dataset(tmp_path / "plain", seed=1, models=1, images=True)
    run(["python", "-m", "labelbench"] + cli_args("toy", inputs, "errors", "true_labels", "classes"), repo)
    out = run(["python", "-m", "labelbench"] + cli_args("toy-unlabelled", plain, "image_ids", "images"), repo).stdout
    assert "ranked label issues only" in out
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["added"] == {"toy": {"models": ["net0", "net1"], "label_errors": True},
                               "toy-unlabelled": {"models": ["net0"], "label_errors": False}}
    # only the `added:` block changed; every comment kept
    assert without_added(run(["git", "show", "HEAD:params.yaml"], repo).stdout) == \
        without_added((repo / "params.yaml").read_text())
    assert (repo / "data/added/toy/classes.txt").read_bytes() == inputs["classes"].read_bytes()
    assert (repo / "data/added/toy/pred_probs/net1.npy").read_bytes() == (inputs["pred_probs"] / "net1.npy").read_bytes()
    assert "/toy\n" in (repo / "data/added/.gitignore").read_text()
    assert (repo / "data/added/toy.dvc").is_file() and (repo / "data/added/toy-unlabelled.dvc").is_file()
    assert not (repo / "data/added/toy-unlabelled/label_errors.npy").exists()

    ran = stages_run(run(["dvc", "repro"], repo).stdout)
    # a first run (small_clone drops dvc.lock): multiannotator too, skipped as cifar-10n-agg is not evaluated
    assert set(ran) == {"evaluate", "benchmark", "issues", "multiannotator", "report"}, ran
    benchmark = pd.read_csv(repo / "metrics/benchmark.csv")
    assert list(dict.fromkeys(benchmark["dataset"])) == ["roman-numeral", "toy"]
    assert set(benchmark.loc[benchmark["dataset"] == "toy", "model"]) >= {"net0", "net1",
                                                                          "ensemble:avg_scores_weighted_by_inv_log_loss"}
    assert set(pd.read_csv(repo / "metrics/filters.csv")["dataset"]) == {"roman-numeral", "toy"}
    toy = json.loads((repo / "metrics/models/toy.json").read_text())
    assert toy["num_examples"] == 300 and toy["num_errors"] == int(np.load(inputs["errors"]).sum())
    assert toy["models"]["net0"]["auroc"] > 0.8  # informative pred_probs find the flipped labels
    assert not (repo / "metrics/models/toy-unlabelled.json").exists()
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert set(headline["auroc"]) == {"roman-numeral", "toy"}
    assert (repo / "plots/pr/toy.csv").is_file()
    report = (repo / "reports/benchmark.md").read_text()
    assert "## toy\n" in report and "## toy-unlabelled\n" in report
    unlabelled = report[report.index("## toy-unlabelled\n"):]
    assert "Not benchmarked: no known label errors" in unlabelled
    assert "(`reports/issues/toy-unlabelled.csv`)" in unlabelled

    issues = pd.read_csv(repo / "reports/issues/toy.csv")
    assert set(issues["given_label"]) <= {"class_a", "class_b", "class_c", "class_d"}
    assert {"score:net0", "score:net1", "true_label", "is_label_error"} <= set(issues.columns)
    assert issues["is_label_error"].head(20).mean() > 0.8
    plain_issues = pd.read_csv(repo / "reports/issues/toy-unlabelled.csv")
    assert "is_label_error" not in plain_issues and set(plain_issues["given_label"].astype(str)) <= {"0", "1", "2", "3"}
    assert (repo / "reports/issues/toy-unlabelled.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (repo / "reports/issues/toy.png").exists()  # added without --images
    assert sorted(p.name for p in (repo / "reports/issues").iterdir()) == [
        "roman-numeral.csv", "toy-unlabelled.csv", "toy-unlabelled.png", "toy.csv"]

    assert stages_run(run(["dvc", "repro"], repo).stdout) == []
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "two datasets added"], repo)
    # a name already registered is refused, nothing written
    state = tree_hash(repo)
    again = run(["python", "-m", "labelbench"] + cli_args("toy", inputs), repo, check=False)
    assert again.returncode == 1 and "dataset name 'toy': already in params.yaml" in again.stderr
    assert tree_hash(repo) == state and run(["git", "status", "--porcelain"], repo).stdout == ""


def _pickled(path: Path) -> None:
    np.save(path, np.array([{"a": 1}] * 300, dtype=object), allow_pickle=True)


def _rewrite(file: str, change):
    """A fault: ``change`` applied to the array in ``file`` (saved back to the same path)."""
    def apply(files):
        path = files[file] if file in files else files["pred_probs"] / file
        if change is _pickled:
            _pickled(path)
        else:
            np.save(path, change(np.load(path)))
    return apply


def _write(file: str, text: str):
    def apply(files):
        files[file].write_text(text)
    return apply


REFUSALS = [
    # (fault applied to fresh inputs, extra options, expected message, file named)
    (None, ["errors"], "name 'bad.name' must match", None, "bad.name"),
    (None, ["errors"], "name 'cifar-10s' is a published dataset", None, "cifar-10s"),
    (None, ["errors"], "name 'roman-numeral' is a published dataset", None, "roman-numeral"),
    (lambda f: [p.unlink() for p in f["pred_probs"].glob("*.npy")], [], "holds no <model>.npy file", "probs", None),
    (lambda f: (f["pred_probs"] / "net0.npy").rename(f["pred_probs"] / "net0.NPY"), [],
     r"holds ['net0.NPY']: --pred-probs takes a folder of <model>.npy files only", "probs", None),
    (lambda f: np.save(f["pred_probs"] / "a.b.npy", np.load(f["pred_probs"] / "net0.npy")), [],
     "model name 'a.b' must match", "a.b.npy", None),
    (_rewrite("net0.npy", _pickled), [], "pickled Python objects", "net0.npy", None),
    (_rewrite("net0.npy", lambda p: np.where(np.arange(p.size).reshape(p.shape) == 5, np.nan, p)), [],
     "rows hold NaN or inf", "net0.npy", None),
    (_rewrite("net1.npy", lambda p: p * 0.9), [], "do not sum to 1", "net1.npy", None),
    (_rewrite("net1.npy", lambda p: p * 1.5), [], "probabilities outside [0, 1]", "net1.npy", None),
    (lambda f: (f["pred_probs"] / "net0.npy").write_bytes((f["pred_probs"] / "net0.npy").read_bytes()[:300]), [],
     "not a readable .npy array", "net0.npy", None),
    (lambda f: f["labels"].write_bytes(b""), [], "not a readable .npy array", "labels.npy", None),
    (_rewrite("net1.npy", lambda p: p[:-1]), [], "has 299 rows but labels.npy has 300", "net1.npy", None),
    (_rewrite("net1.npy", lambda p: np.hstack([p, np.zeros((p.shape[0], 1))])), [],
     "models disagree on the number of classes: [4, 5]", "probs", None),
    (_rewrite("labels", lambda y: np.where(np.arange(y.size) == 0, 4, y)), [], r"labels outside [0, 4)",
     "labels.npy", None),
    (_rewrite("labels", lambda y: y.astype(float)), [], "labels must be integers", "labels.npy", None),
    (_rewrite("labels", lambda y: y.astype("m8[D]")), [], "labels must be integers", "labels.npy", None),  # numpy:
    # a timedelta64 is an np.integer
    (None, ["errors"], "at most 64", None, "a" * 65),
    (_rewrite("labels", lambda y: np.where(y == 3, 2, y)), [], "classes [3] of the 4 in the pred_probs never occur",
     "labels.npy", None),
    (_rewrite("errors", lambda e: e.astype(np.int64)), ["errors"], "expected dtype bool, got int64", "mask.npy", None),
    (_rewrite("errors", lambda e: e[:10]), ["errors"], "has 10 rows but labels.npy has 300", "mask.npy", None),
    (_rewrite("errors", lambda e: np.zeros_like(e)), ["errors"], "marks 0 of 300 examples as label errors", "mask.npy", None),
    (_rewrite("errors", lambda e: ~e), ["errors", "true_labels"], "disagrees with given_labels != true_labels",
     "mask.npy", None),
    (_rewrite("true_labels", lambda t: t + 4), ["true_labels"], "labels outside [0, 4)", "truth.npy", None),
    (_write("image_ids", "a.png\nb.png\n"), ["image_ids"], "has 2 lines but labels.npy has 300 labels", "ids.txt", None),
    (_write("image_ids", "same.png\n" * 300), ["image_ids"], "1 repeated image id(s), e.g. ['same.png']", "ids.txt", None),
    (None, ["images"], "--images needs --image-ids", "pictures", None),
    (lambda f: (f["images"] / Path(f["image_ids"].read_text().split()[7])).unlink(), ["image_ids", "images"],
     "no file for 1 image id(s) listed in", "pictures", None),
    (lambda f: (f["images"] / Path(f["image_ids"].read_text().split()[7])).write_text("text"), ["image_ids", "images"],
     "not a readable image", "pictures", None),
    (_write("classes", "x\ny\nz\n"), ["classes"], "names 3 classes but the pred_probs have 4", "names.txt", None),
    (_write("classes", "x\nx\ny\nz\n"), ["classes"], "repeats a class name", "names.txt", None),
]


@pytest.mark.parametrize("fault, options, message, named, name", REFUSALS,
                         ids=[r[2][:40] for r in REFUSALS])
def test_bad_inputs_are_refused_and_nothing_is_written(repo, tmp_path, monkeypatch, capsys,
                                                       fault, options, message, named, name):
    from labelbench.__main__ import main

    files = make_dataset(tmp_path, images="images" in options)
    if fault is not None:
        fault(files)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PYTHONPATH", str(repo))
    state, status = tree_hash(repo), run(["git", "status", "--porcelain"], repo).stdout
    assert main(cli_args(name or "fresh", files, *options)) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err, err
    if named is not None:
        assert named in err.split(":", 2)[1], err  # the file is named first
    assert tree_hash(repo) == state
    assert run(["git", "status", "--porcelain"], repo).stdout == status


def test_small_benchmarked_dataset_needs_lift_k_examples(repo, tmp_path, monkeypatch, capsys):
    from labelbench.__main__ import main

    files = make_dataset(tmp_path, n=60)
    monkeypatch.chdir(repo)
    state = tree_hash(repo)
    assert main(cli_args("small", files, "errors")) == 1
    assert "has 60 examples; the benchmark's lift_k = 100 needs at least that many" in capsys.readouterr().err
    assert tree_hash(repo) == state


def test_a_failure_after_dvc_add_rolls_it_back(repo, tmp_path, monkeypatch):
    import labelbench.data.add_dataset as module

    files = make_dataset(tmp_path)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PYTHONPATH", str(repo))
    state, status = tree_hash(repo), run(["git", "status", "--porcelain"], repo).stdout

    def disk_full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(module, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        module.add_dataset(name="rolled-back", pred_probs=files["pred_probs"], labels=files["labels"],
                           errors=files["errors"])
    assert tree_hash(repo) == state
    assert run(["git", "status", "--porcelain"], repo).stdout == status


def test_registration_keeps_every_other_line(tmp_path):
    from labelbench.data.add_dataset import registered_params
    from labelbench.data.files import parse_yaml
    from conftest import REPO_ROOT

    path = tmp_path / "params.yaml"
    text = (REPO_ROOT / "params.yaml").read_text()
    path.write_text(text)
    new = registered_params(path, "mine", models=["yes", "1e3"], label_errors=False)
    # names, as DVC reads them (YAML 1.2: `1e3` unquoted would be a number)
    assert parse_yaml(new, path)["added"] == {"mine": {"models": ["yes", "1e3"], "label_errors": False}}
    assert without_added(new) == without_added(text) and len(without_added(text)) > 50
    assert "# label_errors true: a known error mask" in new
    again = registered_params(_written(tmp_path, new), "second", models=["m"], label_errors=True)
    assert list(parse_yaml(again, path)["added"]) == ["mine", "second"]


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "again.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("added, message", [
    ({"digits": {"models": ["m"], "label_errors": True}}, "datasets ['digits'] are both trained here and added"),
    ({"cifar-10s": {"models": ["m"], "label_errors": True}}, "name 'cifar-10s' is a published dataset"),
    ({"my.data": {"models": ["m"], "label_errors": True}}, "added.my.data.[key] = 'my.data': Value error, name"),
    ({"mine": {"models": ["m"]}}, "added.mine.label_errors = (missing): Field required"),
    ({"mine": {"models": ["m/x"], "label_errors": False}}, "name 'm/x' must match"),
    ({"mine": {"models": ["m"], "label_errors": "yes"}}, "added.mine.label_errors = 'yes': Input should be a valid boolean"),
    ([], "added = []: Input should be a valid dictionary"),
])
def test_bad_added_params_are_refused_naming_the_key(tmp_path, added, message):
    from conftest import REPO_ROOT
    from labelbench.config import ParamsError, load_params
    from labelbench.evaluation.params import IssuesParams

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["added"] = added
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ParamsError) as info:
        load_params(IssuesParams, tmp_path / "params.yaml")
    assert message in str(info.value)


@pytest.mark.parametrize("flag", [["--noise-amount", "0.3"], ["--noise", "uniform"], ["--sparsity", "0.2"],
                                  ["--noise-seed", "1"]])
def test_noise_options_with_pred_probs_are_refused_not_dropped(tmp_path, capsys, flag):
    from labelbench.__main__ import main

    files = make_dataset(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(cli_args("fresh", files) + flag)
    assert done.value.code == 2
    assert f"add-dataset --pred-probs takes no {flag[0]}: noise is injected into images" in capsys.readouterr().err


def test_a_failed_dvc_add_says_why(repo, tmp_path, monkeypatch, capsys):
    """DVC's own reason (here: the folder is in .dvcignore) is shown, and everything is undone."""
    from labelbench.__main__ import main

    files = make_dataset(tmp_path)
    (repo / ".dvcignore").write_text("data/added/fresh\n")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PYTHONPATH", str(repo))
    state = tree_hash(repo)
    assert main(cli_args("fresh", files, "errors")) == 1
    err = capsys.readouterr().err
    assert "`dvc add` failed: " in err and ".dvcignore" in err, err
    assert tree_hash(repo) == state


def test_help_is_plain_text(capsys):
    """`python -m labelbench --help` shows no reStructuredText markup (``literal``, :mod:`...`)."""
    from labelbench.__main__ import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr().out
    assert "add-dataset" in shown and "``" not in shown and ":mod:" not in shown

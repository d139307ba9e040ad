"""``python -m labelbench add-dataset``: a dataset of your own into the benchmark, all or nothing.

The inputs are checked with the data contract's checks (:func:`labelbench.data.io.check_files`, the
same as for the published data) plus what the stages need of a new dataset; the first problem is
one error naming the file (or the name) and nothing is written. Then, in this order:

1. ``data/added/<name>/`` in the data-contract layout (the inputs' bytes; ``image_ids.txt`` numbered
   rows when no ids are given; ``classes.txt`` and ``images/<image_id>`` where given), written to a
   temporary folder, loaded back with :func:`labelbench.data.io.load_dataset`, then renamed into place;
2. ``dvc add data/added/<name>`` (``data/added/<name>.dvc``, ``/<name>`` in ``data/added/.gitignore``);
3. ``added.<name>`` in ``params.yaml``: its lines are appended to the ``added:`` block (every comment
   and every other line keeps its bytes), and the new text is validated with every evaluation stage's
   schema before anything is written.

A failure in step 2 or 3 undoes the earlier steps. With ``--errors`` the dataset is benchmarked
(``label_errors: true``); without, it gets the ranked issues only. The next ``dvc repro`` runs the
evaluation stages (which depend on ``data/added`` and the ``added`` param) and nothing else.
"""

from __future__ import annotations

import copy
import io
import re
import shutil
from pathlib import Path

import numpy as np

from labelbench.config import FoldsParams, NoiseParams, ParamsError, Positive, load_params
from labelbench.data.files import _SHOWN, atomic_dir, check_images_present, parse_yaml, read_text
from labelbench.data.io import DataError, check_both_kinds, check_files, load_dataset, read_class_names, write_text
from labelbench.data.raw.imagefolder import read_imagefolder, write_imagefolder
from labelbench.data.raw.layout import check_image_file
from labelbench.ops.dvc_cli import dvc
from labelbench.evaluation.params import (
    BenchmarkParams, Datasets, EvaluateParams, IssuesParams, ReportParams, check_added_name, check_name,
)

ADDED_ROOT = Path("data/added")


class AddParams(Datasets):
    lift_k: Positive


#: Every evaluation stage's schema: a registered dataset must leave params.yaml valid for each.
EVALUATION_SCHEMAS = (EvaluateParams, BenchmarkParams, ReportParams, IssuesParams)


def add_dataset(*, name: str, pred_probs: Path, labels: Path, errors: Path | None = None,
                true_labels: Path | None = None, image_ids: Path | None = None, images: Path | None = None,
                classes: Path | None = None, repo: Path = Path(".")) -> dict:
    """Check, write, track and register dataset ``name`` in the repository ``repo`` (its root).

    Returns ``{"examples": N, "classes": K, "models": [...], "errors": number or None}``; raises
    DataError (a file) or ParamsError (the name, params.yaml) before writing anything."""
    repo = Path(repo)
    params, folder = _new_name(repo, name)
    arrays, models = check_inputs(pred_probs=pred_probs, labels=labels, errors=errors, true_labels=true_labels,
                                  image_ids=image_ids, images=images, lift_k=params.lift_k)
    num_classes = next(iter(arrays["pred_probs"].values())).shape[1]
    if classes is not None:
        read_class_names(classes, num_classes=num_classes)
    params_text = registered_params(repo / "params.yaml", name, models=models, label_errors=errors is not None)

    _track_and_register(repo, name, params_text, write=lambda: write_folder(
        folder, models=models, pred_probs=pred_probs, labels=labels, errors=errors,
        true_labels=true_labels, image_ids=image_ids, ids=arrays["image_ids"], images=images, classes=classes))
    return {"examples": arrays["given_labels"].shape[0], "classes": num_classes, "models": models,
            "errors": None if arrays["label_errors"] is None else int(arrays["label_errors"].sum())}


def _track_and_register(repo: Path, name: str, params_text: str, *, write) -> None:
    """``write()`` the folder data/added/<name>, ``dvc add`` it, then write ``params_text`` to params.yaml; on any
    failure, undo every step (the folder, its .dvc file, data/added/.gitignore)."""
    folder = repo / ADDED_ROOT / name
    gitignore = repo / ADDED_ROOT / ".gitignore"
    old_gitignore = gitignore.read_bytes() if gitignore.is_file() else None
    write()
    try:
        result = dvc(repo, "add", (ADDED_ROOT / name).as_posix(), check=False)  # not -q: it would hide DVC's reason
        if result.returncode != 0:
            raise DataError(folder, f"`dvc add` failed: {(result.stderr or result.stdout).strip()}")
        write_text(repo / "params.yaml", params_text)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        folder.with_name(f"{name}.dvc").unlink(missing_ok=True)
        if old_gitignore is None:
            gitignore.unlink(missing_ok=True)
        else:
            gitignore.write_bytes(old_gitignore)
        raise


def _new_name(repo: Path, name: str) -> tuple[AddParams, Path]:
    """The repository's params and the folder data/added/<name> of a new dataset; ParamsError when ``repo`` is not
    the repository root, ParamsError or DataError when ``name`` is taken or invalid."""
    for required in ("params.yaml", "dvc.yaml", ".dvc"):
        if not (repo / required).exists():
            raise ParamsError(f"{repo / required}: not found; run add-dataset from the repository root")
    params = load_params(AddParams, repo / "params.yaml")
    try:
        check_added_name(name)
    except ValueError as exc:
        raise ParamsError(f"dataset name: {exc}") from None
    if name in params.sources():
        raise ParamsError(f"dataset name {name!r}: already in params.yaml (published, trained or added); "
                          "choose another")
    folder = repo / ADDED_ROOT / name
    for path in (folder, folder.with_name(f"{name}.dvc")):
        if path.exists() or path.is_symlink():
            raise DataError(path, "already exists; remove it or choose another name")
    return params, folder


def add_image_dataset(*, name: str, images: Path, labels: Path | None = None, classes: Path | None = None,
                      errors: Path | None = None, noise: str = "instance", noise_amount: float = 0.0,
                      sparsity: float | None = None, noise_seed: int = 0, repo: Path = Path(".")) -> dict:
    """Check the images of your own (:func:`labelbench.data.raw.imagefolder.read_imagefolder`), write them to
    data/added/<name> in the raw layout, ``dvc add`` it and register ``crossval.datasets.<name>`` (source
    imagefolder) in params.yaml: the next ``dvc repro`` trains it like digits, and every family, table, interval,
    issue list and image grid includes it. Its label errors must be known: ``errors`` (the mislabeled images,
    one path per line) or injected noise (``noise_amount`` > 0 of kind ``noise``), not both. Raises DataError (a
    file) or ParamsError before writing anything; returns ``{"examples", "classes", "errors"}``."""
    repo = Path(repo)
    params, folder = _new_name(repo, name)
    if (errors is None) == (noise_amount == 0):
        raise ParamsError("a dataset trained here is benchmarked, so its label errors must be known: give --errors "
                          "(the images known to be mislabeled) or inject noise (--noise-amount > 0), not both")
    if sparsity is not None and noise != "uniform":
        raise ParamsError(f"--sparsity applies to --noise uniform only (cleanlab's noise matrix), not {noise}")
    entry = {"source": "imagefolder", "noise": noise, "noise_amount": noise_amount,
             **({"sparsity": sparsity if sparsity is not None else 0.0} if noise == "uniform" else {}),
             "noise_seed": noise_seed}
    params_text = registered(repo / "params.yaml", ("crossval", "datasets"), name, entry,
                             schemas=(NoiseParams, *EVALUATION_SCHEMAS))
    folds = len(load_params(FoldsParams, repo / "params.yaml").crossval.folds)
    table = read_imagefolder(images=images, labels=labels, classes=classes, errors=errors, min_per_class=folds)
    if len(table) < params.lift_k:
        raise DataError(images, f"has {len(table)} images; the benchmark's lift_k = {params.lift_k} needs at least "
                                "that many")
    if table.label_errors is not None:
        check_both_kinds(table.label_errors, errors, "images as mislabeled")
    _track_and_register(repo, name, params_text, write=lambda: write_imagefolder(table, images=images, out=folder))
    return {"examples": len(table), "classes": len(table.classes),
            "errors": None if table.label_errors is None else int(table.label_errors.sum())}


def check_inputs(*, pred_probs: Path, labels: Path, errors: Path | None, true_labels: Path | None,
                 image_ids: Path | None, images: Path | None, lift_k: int) -> tuple[dict, list[str]]:
    """The contract's checks on the user's files, and what the stages need of a new dataset:
    every class among the given labels (the ensembles' log loss), both kinds of example in the
    error mask (AUROC), at least ``lift_k`` examples when benchmarked, unique ids, an image per id."""
    pred_probs = Path(pred_probs)
    if not pred_probs.is_dir():
        raise DataError(pred_probs, "not a folder (--pred-probs takes a folder of <model>.npy files)")
    files = sorted(pred_probs.glob("*.npy"))
    if not files:
        raise DataError(pred_probs, "holds no <model>.npy file")
    if other := sorted(p.name for p in pred_probs.iterdir() if p.suffix != ".npy" and not p.name.startswith(".")):
        raise DataError(pred_probs, f"holds {other[:_SHOWN]}: --pred-probs takes a folder of <model>.npy files only "
                                    "(a model left out by a misnamed file would go unnoticed)")
    for file in files:
        try:
            check_name(file.stem)
        except ValueError as exc:
            raise DataError(file, f"model {exc}") from None
    if images is not None and image_ids is None:
        raise DataError(images, "--images needs --image-ids (the image of each row, relative to this folder)")
    arrays = check_files(given_labels=Path(labels), pred_probs={f.stem: f for f in files},
                         label_errors=None if errors is None else Path(errors),
                         true_labels=None if true_labels is None else Path(true_labels),
                         image_ids=None if image_ids is None else Path(image_ids))
    given = arrays["given_labels"]
    num_classes = next(iter(arrays["pred_probs"].values())).shape[1]
    absent = sorted(set(range(num_classes)) - set(np.unique(given).tolist()))
    if absent:
        raise DataError(labels, f"classes {absent[:_SHOWN]} of the {num_classes} in the pred_probs never occur as "
                                "a given label; every class must (the ensembles weigh models by log loss)")
    if arrays["label_errors"] is not None and given.shape[0] < lift_k:  # both kinds, when known (check_files)
        raise DataError(labels, f"has {given.shape[0]} examples; the benchmark's lift_k = {lift_k} needs at least "
                                "that many (or add it without --errors)")
    ids = arrays["image_ids"]  # unique (check_files)
    if images is not None:
        images = Path(images)
        if not images.is_dir():
            raise DataError(images, "not a folder")
        check_images_present(images, ids, listed_in=image_ids)
        for image_id in ids:  # the issues stage draws them: a file that is no image is refused here, not there
            check_image_file(images / image_id)
    return arrays, [f.stem for f in files]


def registered_params(path: Path, name: str, *, models: list[str], label_errors: bool) -> str:
    return registered(path, ("added",), name, {"models": list(models), "label_errors": label_errors},
                      schemas=EVALUATION_SCHEMAS)


def registered(path: Path, keys: tuple[str, ...], name: str, entry: dict, *, schemas) -> str:
    """``path``'s text with ``<keys>.<name>: entry`` appended to that block mapping (in block style, as `dvc exp run
    -S` writes params.yaml back, after the mapping's last indented line; ``: {}`` becomes ``:``), every other
    line kept byte for byte; the result must parse to the old params plus that entry and satisfy every one of
    ``schemas``."""
    from ruamel.yaml import YAML

    text, where = read_text(path), ".".join(keys)
    old, lines, head = parse_yaml(text, path), text.splitlines(keepends=True), -1
    for depth, key in enumerate(keys):  # the top-level key once, each other one the first under it
        value = r"\s*(\{\}\s*)?(#.*)?$" if depth == len(keys) - 1 else ""
        found = [i for i in range(head + 1, len(lines)) if re.match(rf"{'  ' * depth}{key}\s*:{value}", lines[i])]
        if not found or depth == 0 and len(found) > 1:
            raise ParamsError(f"{path}: expected one `{where}:` mapping in block style; add the entry by hand")
        head = found[0]
    lines[head] = re.sub(r":\s*\{\}", ":", lines[head])  # `{}` becomes a block mapping
    indent, end = "  " * len(keys), head
    for i in range(head + 1, len(lines)):
        if lines[i].strip() and not lines[i].startswith(indent) and not lines[i].lstrip().startswith("#"):
            break
        if lines[i].startswith(indent):
            end = i
    dumper, block = YAML(), io.StringIO()
    dumper.default_flow_style, dumper.width = False, 1000
    dumper.dump({name: entry}, block)
    new = "".join(lines[:end + 1] + [indent + line + "\n" for line in block.getvalue().splitlines()] + lines[end + 1:])
    expected = parent = copy.deepcopy(old)
    for key in keys[:-1]:
        parent = parent[key]
    parent[keys[-1]] = {**(parent[keys[-1]] or {}), name: entry}
    for schema in schemas:  # first: a bad value (NaN too, which equals nothing) is named as such
        load_params(schema, f"{path} (after registering)", text=new)
    if parse_yaml(new, path) != expected:
        raise ParamsError(f"{path}: `{where}` could not be extended on its own; add the entry by hand")
    return new


def write_folder(folder: Path, *, models: list[str], pred_probs: Path, labels: Path,
                 errors: Path | None, true_labels: Path | None, image_ids: Path | None, ids: list[str] | None,
                 images: Path | None, classes: Path | None) -> None:
    """The inputs' bytes in the contract layout, built beside ``folder``, loaded back, then moved in."""
    with atomic_dir(folder) as tmp:
        (tmp / "pred_probs").mkdir()
        for model in models:
            shutil.copyfile(Path(pred_probs) / f"{model}.npy", tmp / "pred_probs" / f"{model}.npy")
        shutil.copyfile(labels, tmp / "given_labels.npy")
        for source, target in ((errors, "label_errors.npy"), (true_labels, "true_labels.npy"),
                               (classes, "classes.txt"), (image_ids, "image_ids.txt")):
            if source is not None:
                shutil.copyfile(source, tmp / target)
        if image_ids is None:
            n = np.load(tmp / "given_labels.npy", allow_pickle=False).shape[0]
            (tmp / "image_ids.txt").write_text("".join(f"{i}\n" for i in range(n)), encoding="utf-8")
        for image_id in ids if images is not None else []:
            target = tmp / "images" / image_id
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(images) / image_id, target)
        load_dataset(tmp.parent, tmp.name, models=models, label_errors=errors is not None)

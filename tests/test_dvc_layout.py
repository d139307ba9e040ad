"""dvc.yaml against the code: every stage lists exactly the project modules its script can import
(transitively) and exactly the params keys its script reads, so no output can go stale."""

from __future__ import annotations

import ast
import copy
import importlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, run
from labelbench.config import TOP_LEVEL_KEYS, declared_keys


def module_file(name: str, root: Path) -> Path | None:
    """The file of project module ``name`` (``labelbench.x.y``), or None for third-party modules."""
    if name != "labelbench" and not name.startswith("labelbench."):
        return None
    base = root / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def project_imports(script: Path, root: Path) -> set[Path]:
    """Project files that ``script`` imports, directly or through other project modules, at module
    level or inside functions (package ``__init__`` files included)."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                    path = module_file(".".join(parts[:i]), root)
                    if path is not None and path.is_file() and path not in seen:
                        seen.add(path)
                        todo.append(path)
    return seen


def docstring_only(path: Path) -> bool:
    """A package ``__init__`` holding no code cannot change an output, so it need not be a dep."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def stage_script(cmd: str) -> str:
    match = re.search(r"python (stages/\w+\.py)", cmd)
    assert match, f"stage command does not run a stages/ script: {cmd}"
    return match.group(1)


def code_deps(deps: list[str], root: Path) -> set[Path]:
    """Project .py files covered by a stage's deps (a folder covers every file under it)."""
    files = set()
    for dep in deps:
        path = root / dep
        if dep.startswith("labelbench") and path.is_dir():  # a docstring-only __init__ changes no output
            files |= {file for file in path.rglob("*.py") if not docstring_only(file)}
        elif dep.startswith("labelbench"):
            files.add(path)
    return files


def schema_of(script: Path):
    """The params schema a stage script passes to ``load_params`` (None when it reads no params)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    imported = {alias.asname or alias.name: node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "load_params"]
    if not calls:
        return None
    (call,) = calls
    name = call.args[0].id
    return getattr(importlib.import_module(imported[name]), name)


def layout_problems(dvc_yaml: dict, root: Path = REPO_ROOT) -> list[str]:
    """Every mismatch between the stages of ``dvc_yaml`` and their scripts, one line each."""
    problems = []
    for stage_name, stage in dvc_yaml["stages"].items():
        body = stage.get("do", stage)
        script = stage_script(body["cmd"])
        deps = body.get("deps", [])
        if script not in deps:
            problems.append(f"{stage_name}: script {script} is not a dep")
        imported = {p for p in project_imports(root / script, root) if not docstring_only(p)}
        listed = code_deps(deps, root)
        for path in sorted(imported - listed):
            problems.append(f"{stage_name}: imports {path.relative_to(root)} but does not list it in deps")
        for path in sorted(listed - imported):
            problems.append(f"{stage_name}: lists {path.relative_to(root)} in deps but does not import it")
        schema = schema_of(root / script)
        reads = set(declared_keys(schema)) if schema else set()
        declared = set(body.get("params", []))
        for key in sorted(reads - declared):
            problems.append(f"{stage_name}: reads params key {key} but does not declare it")
        for key in sorted(declared - reads):
            problems.append(f"{stage_name}: declares params key {key} but does not read it")
    return problems


@pytest.fixture(scope="module")
def dvc_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())


def test_every_stage_lists_exactly_what_it_imports_and_reads(dvc_yaml):
    assert layout_problems(dvc_yaml) == []


def test_a_planted_omission_is_caught(dvc_yaml):
    planted = copy.deepcopy(dvc_yaml)
    planted["stages"]["report"]["deps"].remove("labelbench/evaluation/metrics.py")  # imported via benchmark
    planted["stages"]["evaluate"]["params"].remove("lift_k")
    planted["stages"]["crossval"]["deps"].append("labelbench/evaluation/report.py")
    assert layout_problems(planted) == [
        "crossval: lists labelbench/evaluation/report.py in deps but does not import it",
        "evaluate: reads params key lift_k but does not declare it",
        "report: imports labelbench/evaluation/metrics.py but does not list it in deps",
    ]


def test_folder_dependencies_in_dvc_lock_hold_exactly_the_files_in_git():
    """A code folder a stage depends on (labelbench/data/raw) is hashed as the files git has there: no bytecode cache
    (.dvcignore), which Python writes wherever a module was imported, so dvc.lock would differ from host to host."""
    import subprocess

    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    folders = {dep["path"]: dep["nfiles"] for stage in lock["stages"].values() for dep in stage.get("deps", [])
               if dep["path"].startswith("labelbench/") and str(dep.get("md5", "")).endswith(".dir")}
    assert folders, "no folder dependency under labelbench/ in dvc.lock"
    for folder, nfiles in folders.items():
        tracked = subprocess.run(["git", "ls-files", folder], cwd=REPO_ROOT, capture_output=True, text=True,
                                 check=True).stdout.split()
        assert nfiles == len(tracked), (folder, nfiles, tracked)


def test_params_yaml_has_exactly_the_known_top_level_keys():
    """params.yaml's blocks are TOP_LEVEL_KEYS, in order, and each is read by some stage's schema (or is runtime)."""
    from labelbench import config
    from labelbench.evaluation import params as evaluation

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert list(params) == list(TOP_LEVEL_KEYS)
    stage_schemas = {value for module in (config, evaluation) for name, value in vars(module).items()
                     if name.endswith("Params") and isinstance(value, type)}
    assert len(stage_schemas) == 10 and stage_schemas < set(evaluation.SCHEMAS)  # check_params checks each one
    assert {key for schema in evaluation.SCHEMAS for key in schema.model_fields} == set(TOP_LEVEL_KEYS)


@pytest.mark.parametrize("key", TOP_LEVEL_KEYS)
def test_check_params_refuses_a_bad_key_in_every_block(tmp_path, key):
    """`python -m labelbench check-params` (make reproduce and the Ray driver run it first): each block as the stage
    that reads it would check it, the blocks no stage reads too; an unknown key in a block, a wrong type at the top."""
    from labelbench.config import ParamsError
    from labelbench.evaluation.params import check_params

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    check_params(REPO_ROOT / "params.yaml")
    if key == "added":  # a mapping of datasets: the key inside one
        params[key], bad = {"mine": {"models": ["m"], "label_errors": True, "typo": 1}}, "added.mine.typo = 1"
    elif isinstance(params[key], dict):
        params[key]["typo"], bad = 1, f"{key}.typo = 1"
    else:
        params[key], bad = ["a list"], f"{key} = ['a list']"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ParamsError, match=re.escape(f"{tmp_path / 'params.yaml'}: {bad}: ")):
        check_params(tmp_path / "params.yaml")


def test_make_reproduce_stops_at_a_bad_key_read_last_before_anything_runs(tmp_path):
    """A stage checks only the blocks it reads, when it runs: `report.top_n` alone would stop `dvc repro` after
    every other stage. `make reproduce` checks every block first: one error line, no dvc command run."""
    from conftest import make

    shutil.copy(REPO_ROOT / "Makefile", tmp_path)
    text = (REPO_ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(text.replace("\n  top_n: 20 ", "\n  top_n: abc ", 1))
    result = make("reproduce", tmp_path, check=False)
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == ("error: params.yaml: report.top_n = 'abc': Input should be a valid "
                                             "integer"), result.stderr
    assert "dvc" not in result.stdout + result.stderr and not (tmp_path / ".dvc").exists()
    (tmp_path / "params.yaml").write_text(text)
    assert make("check-params", tmp_path).stdout == "params.yaml: every block is valid\n"


def test_a_stage_reading_part_of_a_block_has_the_whole_block_checked(tmp_path):
    from labelbench.config import NoiseParams, ParamsError, load_params
    from labelbench.evaluation.params import IssuesParams

    for block, key, value, schema in [("crossval", "fold_seed", "zero", NoiseParams), ("report", "top_n", -1, IssuesParams)]:
        params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
        params[block][key] = value  # a key the stage does not read
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        with pytest.raises(ParamsError, match=re.escape(f"{block}.{key} = {value!r}")):
            load_params(schema, tmp_path / "params.yaml")


def test_params_are_read_as_dvc_reads_them(tmp_path):
    """YAML 1.2, as DVC reads params.yaml (the oracle: DVC's public ``dvc.api.params_show``): ``lr: 1e-2`` is
    0.01, not a string to refuse; ``no`` is a string, so a boolean key refuses it; a repeated key is an error."""
    from dvc.api import params_show
    from labelbench.config import CrossvalParams, ParamsError, load_params
    from labelbench.evaluation.params import EvaluateParams

    text = (REPO_ROOT / "params.yaml").read_text()
    assert "\n  lr: 0.01\n" in text and "\nadjust_pred_probs: false\n" in text
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    (tmp_path / "params.yaml").write_text(text.replace("\n  lr: 0.01\n", "\n  lr: 1e-2\n"))
    assert load_params(CrossvalParams, tmp_path / "params.yaml").train.lr == params_show(repo=str(tmp_path))[
        "train"]["lr"] == 0.01
    (tmp_path / "params.yaml").write_text(text.replace("\nadjust_pred_probs: false\n", "\nadjust_pred_probs: no\n"))
    assert params_show(repo=str(tmp_path))["adjust_pred_probs"] == "no"
    with pytest.raises(ParamsError, match=re.escape("adjust_pred_probs = 'no': Input should be a valid boolean")):
        load_params(EvaluateParams, tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(text + "score: entropy\n")
    line = text.count("\n") + 1
    with pytest.raises(ParamsError, match=re.escape(f'params.yaml: line {line}: duplicate key "score"; each key may '
                                                    'appear once in a mapping')):
        load_params(CrossvalParams, tmp_path / "params.yaml")
    # a list's values: ruamel's own message shows both as "[]"
    (tmp_path / "params.yaml").write_text(text + "models: [x]\nmodels: [y]\n")
    with pytest.raises(ParamsError, match=re.escape(f'params.yaml: line {line + 1}: duplicate key "models"; each key')):
        load_params(CrossvalParams, tmp_path / "params.yaml")


def test_a_mapping_left_empty_is_named_with_how_to_write_it(tmp_path):
    """`added:` with nothing under it (the last added dataset deleted by hand) is null to YAML."""
    from labelbench.config import ParamsError, load_params
    from labelbench.evaluation.params import EvaluateParams

    text = (REPO_ROOT / "params.yaml").read_text()
    assert "\nadded: {}\n" in text
    (tmp_path / "params.yaml").write_text(text.replace("\nadded: {}\n", "\nadded:\n"))
    with pytest.raises(ParamsError, match=re.escape("params.yaml: added = None: Input should be a valid dictionary; "
                                                    "an empty mapping is written {}")):
        load_params(EvaluateParams, tmp_path / "params.yaml")


def _changed_lines(repo: Path) -> list[str]:
    diff = run(["git", "diff", "-U0", "params.yaml"], repo).stdout.splitlines()
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_an_experiment_changes_only_the_lines_of_the_params_it_sets(tmp_path):
    """`dvc exp run -S` writes params.yaml back in DVC's style (block lists) and drops a comment or blank line that
    follows a list: the committed params.yaml is in that style, and so is what add-dataset registers, so an
    experiment's diff of params.yaml is the keys it set and nothing else."""
    from labelbench.data.add_dataset import registered_params

    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text("stages:\n  echo:\n    cmd: cp params.yaml out.yaml\n"
                                       "    params: [score, crossval.folds, added]\n    outs: [out.yaml]\n")
    run("git add -A && git -c user.name=t -c user.email=t@t commit -qm base", tmp_path)
    run(["dvc", "exp", "run", "-S", "score=margin", "-S", "crossval.folds=[0,1,2]"], tmp_path)
    assert _changed_lines(tmp_path) == ["-score: self_confidence", "+score: margin", "-  - 3", "-  - 4"]
    (tmp_path / "params.yaml").write_text(registered_params(tmp_path / "params.yaml", "mine", models=["m1", "m2"],
                                                            label_errors=True))
    run("git add -A && git -c user.name=t -c user.email=t@t commit -qm registered", tmp_path)
    run(["dvc", "exp", "run", "-S", "score=entropy"], tmp_path)
    assert _changed_lines(tmp_path) == ["-score: margin", "+score: entropy"]


@pytest.mark.parametrize("schema, old, new, message", [
    ("EvaluateParams", "  curve_points: 101", "  curve_points: 101\n  curve_pionts: 5",
     "evaluate.curve_pionts = 5: Extra inputs are not permitted; allowed: curve_points"),
    ("BenchmarkParams", "    seed: 0 ", "    seeed: 1\n    seed: 0 ",
     "benchmark.bootstrap.seeed = 1: Extra inputs are not permitted; allowed: resamples, seed, level"),
    ("BenchmarkParams", "      noise_seed: 0\n", "      noise_seed: 0\n      noise_sed: 0\n",
     "crossval.datasets.digits.noise_sed = 0: Extra inputs are not permitted; allowed: source, noise, noise_amount, "
     "sparsity, noise_seed"),
    ("BenchmarkParams", "added: {}", "added: {mine: {models: [m], label_errors: true, extra: 1}}",
     "added.mine.extra = 1: Extra inputs are not permitted; allowed: models, label_errors"),
])
def test_an_unknown_key_inside_a_block_is_refused_with_the_keys_allowed_there(tmp_path, schema, old, new, message):
    """At any depth, through a mapping of datasets (crossval.datasets, added) too: the keys of that block."""
    from labelbench.config import ParamsError, load_params
    from labelbench.evaluation import params

    text = (REPO_ROOT / "params.yaml").read_text()
    assert old in text
    (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(getattr(params, schema), tmp_path / "params.yaml")


@pytest.mark.parametrize("name", ["../x", "a b", "-x", "x/y", "", "a" * 65])
def test_a_trained_dataset_name_that_is_no_plain_name_is_refused(tmp_path, name):
    """``crossval.datasets`` keys become folders (data/raw/<name>, data/trained/<name>): the rule of added names."""
    from labelbench.config import FoldsParams, NoiseParams, ParamsError, load_params
    from labelbench.evaluation.params import IssuesParams

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["crossval"]["datasets"][name] = params["crossval"]["datasets"]["digits"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for schema in (NoiseParams, FoldsParams, IssuesParams):  # own key, the whole block, the evaluation half
        with pytest.raises(ParamsError, match=re.escape(f"[key] = {name!r}: Value error, name {name!r} must match "
                                                        "[A-Za-z0-9][A-Za-z0-9_-]{0,63} (letters, digits, '_' and '-'; at most 64)")):
            load_params(schema, tmp_path / "params.yaml")


@pytest.mark.parametrize("block, changes, message", [
    (None, {"score": "entropy", "adjust_pred_probs": True},
     "params.yaml: Value error, adjust_pred_probs=True is not supported by method 'entropy'"),
    ("multiannotator", {"baselines": ["glad", "glad"]}, "params.yaml: multiannotator: Value error, "),
])
def test_a_rule_across_keys_names_its_block_not_a_dump_of_it(tmp_path, block, changes, message):
    from labelbench.config import ParamsError, load_params
    from labelbench.evaluation.params import EvaluateParams, MultiannotatorParams

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (params[block] if block else params).update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ParamsError) as refused:
        load_params(MultiannotatorParams if block else EvaluateParams, tmp_path / "params.yaml")
    text = str(refused.value).removeprefix(str(tmp_path) + "/")
    assert text.startswith(message) and "{" not in text, text


#: Packages a training stage must never import: a change there (an error message about pred_probs, a report
#: table) would mark every trained fold stale, up to 100 GPU-hours at the paper's scale.
NOT_FOR_TRAINING = ("labelbench/evaluation/", "labelbench/ops/", "labelbench/data/io.py")
TRAINING_STAGES = ("raw", "dedupe", "noise", "folds", "crossval")


def training_closure_problems(dvc_yaml: dict, root: Path = REPO_ROOT) -> list[str]:
    """Modules outside the training half that a training stage's script imports, one line each."""
    problems = []
    for stage_name in TRAINING_STAGES:
        body = dvc_yaml["stages"][stage_name].get("do", dvc_yaml["stages"][stage_name])
        script = root / stage_script(body["cmd"])
        for path in sorted(project_imports(script, root)):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(NOT_FOR_TRAINING):
                problems.append(f"{stage_name}: imports {rel}")
    return problems


def test_training_stages_import_nothing_of_the_evaluation_half(dvc_yaml):
    assert training_closure_problems(dvc_yaml) == []


def test_a_training_import_of_the_evaluation_half_is_caught(dvc_yaml, tmp_path):
    """Plant the fault in a copy: the crossval stage's training module imports the evaluation metrics."""
    shutil.copytree(REPO_ROOT / "labelbench", tmp_path / "labelbench")
    shutil.copytree(REPO_ROOT / "stages", tmp_path / "stages")
    module = tmp_path / "labelbench/train/crossval.py"
    module.write_text(module.read_text() + "\nfrom labelbench.evaluation.metrics import METRICS  # noqa\n")
    problems = training_closure_problems(dvc_yaml, tmp_path)
    assert "crossval: imports labelbench/evaluation/metrics.py" in problems
    assert not [p for p in problems if not p.startswith("crossval: ")]

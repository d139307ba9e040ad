"""`make sweep` / `python -m labelbench.ops.sweep`: the grid, the table, and (slow) a real queued sweep
with 2 workers in a temporary clone."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DVC_REMOTE, REPO_ROOT, run, small_clone, venv_env
from labelbench.ops import sweep
from labelbench.evaluation.scores import ADJUSTABLE, ALL_VARIANTS


# --- fast -----------------------------------------------------------------------------------


def test_grid_is_every_valid_variant_with_unique_ref_safe_names(tmp_path):
    variants = sweep.grid()
    assert [(v.method, v.adjust_pred_probs) for v in variants] == list(ALL_VARIANTS)
    assert len(variants) == 7
    assert all(v.method in ADJUSTABLE for v in variants if v.adjust_pred_probs)
    names = [v.name() for v in variants]
    assert len(set(names)) == 7
    assert "sweep-normalized-margin-adjusted" in names
    for name in names:
        check = subprocess.run(["git", "check-ref-format", f"refs/exps/ab/cdef/{name}"])
        assert check.returncode == 0, name


def test_methods_option_accepts_aliases_and_keeps_adjusted_variants():
    assert [v.name() for v in sweep.grid(["confidence", "cwe"])] == [
        "sweep-self-confidence", "sweep-self-confidence-adjusted", "sweep-confidence-weighted-entropy"]
    with pytest.raises(ValueError, match="unknown score method 'nope'"):
        sweep.grid(["nope"])


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "labelbench.ops.sweep", *args], cwd=cwd or REPO_ROOT,
                          env=venv_env(), text=True, capture_output=True)


def test_dry_run_prints_the_queue_commands_and_runs_nothing(tmp_path):
    result = cli("--dry-run", "--jobs", "2", "--repo", str(tmp_path))
    assert result.returncode == 0, result.stderr
    queued = [line for line in result.stdout.splitlines() if line.startswith("dvc exp run --queue")]
    assert len(queued) == 7
    assert ("dvc exp run --queue -S score=normalized_margin -S adjust_pred_probs=true "
            "--name sweep-normalized-margin-adjusted evaluate") in queued
    assert "dvc queue start -j 2" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_fail_clearly():
    result = cli("--dry-run", "--methods", "marginal")
    assert result.returncode == 2 and "unknown score method 'marginal'" in result.stderr
    result = cli("--dry-run", "--prefix", "bad name")
    assert result.returncode == 1 and "invalid experiment name prefix" in result.stderr


def fake_show(values):
    """A `dvc exp show --json` document: one baseline with one experiment per values item."""
    exps = []
    for name, score, adjust, aurocs in values:
        metrics = {f"metrics/{d}.json": {"data": {"auroc": a, "auprc": a / 2, "models": {}}}
                   for d, a in aurocs.items()}
        metrics["metrics/summary.json"] = {"data": {"rows": 3}}
        exps.append({"name": name, "revs": [{"rev": "f" * 40, "name": name, "error": None, "data": {
            "params": {"params.yaml": {"data": {"score": score, "adjust_pred_probs": adjust}}},
            "metrics": metrics}}]})
    return [{"rev": "workspace", "experiments": None}, {"rev": "a" * 40, "experiments": exps}]


def test_rows_sorted_by_mean_auroc_and_rendered():
    show = fake_show([
        ("sweep-entropy", "entropy", False, {"a": 0.70, "b": 0.80}),
        ("sweep-self-confidence", "self_confidence", False, {"a": 0.90, "b": 0.80}),
        ("other-exp", "entropy", False, {"a": 0.99, "b": 0.99}),
    ])
    rows = sweep.rows_from_show(show, ["sweep-entropy", "sweep-self-confidence"])
    assert [r.name for r in rows] == ["sweep-self-confidence", "sweep-entropy"]
    assert rows[0].mean_auroc == pytest.approx(0.85)
    md = sweep.markdown_table(rows, title="T")
    assert "| experiment | score | adjust_pred_probs | a AUROC | a AUPRC | b AUROC | b AUPRC | mean AUROC |" in md
    assert "| sweep-self-confidence | self_confidence | false | 0.9000 | 0.4500 | 0.8000 | 0.4000 | 0.8500 |" in md
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(sweep.rich_table(rows, title="T"))
    assert "sweep-entropy" in console.export_text()


# --- slow: a real sweep ---------------------------------------------------------------------


def queue_processes(repo: Path) -> list[str]:
    """Independent of labelbench.ops.sweep: dvc processes whose cwd is inside ``repo``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if "dvc" in cmdline and (cwd == str(repo) or cwd.startswith(f"{repo}/")):
            found.append(f"{entry.name}: {cmdline}")
    return found


def parse_markdown(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| sweep-"):
            rows[cells[0]] = cells
    return rows


def exp_show(repo) -> dict[str, dict]:
    """experiment name -> its data in `dvc exp show --json`."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    return {rev["name"]: rev["data"] for baseline in shown for exp in baseline.get("experiments") or []
            for rev in exp["revs"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    if not DVC_REMOTE.is_dir():
        pytest.skip(f"no DVC remote at {DVC_REMOTE}")
    if not Path("/proc/self/cwd").exists():
        pytest.skip("needs /proc to check for leftover worker processes")
    # published only, and only `dvc repro evaluate` below: nothing trains
    root = small_clone(tmp_path_factory.mktemp("sweep"), published=["roman-numeral"], trained=False,
                       folds=None).resolve()
    run(["dvc", "pull", "-q", "data/published.dvc"], root)
    run(["dvc", "repro", "-q", "evaluate"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    yield root
    assert not queue_processes(root), "dvc processes left behind"


def run_sweep(repo, *args):
    started = time.monotonic()
    result = cli("--repo", str(repo), "--jobs", "2", "--poll", "1", "--width", "200", *args, cwd=repo)
    return result, time.monotonic() - started


@pytest.mark.slow
def test_sweep_runs_every_experiment_and_tabulates_its_metrics(repo):
    baseline_auroc = json.loads((repo / "metrics/roman-numeral.json").read_text())["auroc"]
    result, seconds = run_sweep(repo, "--methods", "self_confidence,entropy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not queue_processes(repo), "a dvc queue worker outlived the sweep CLI"
    names = ["sweep-self-confidence", "sweep-self-confidence-adjusted", "sweep-entropy"]

    status = run(["dvc", "queue", "status"], repo).stdout
    for name in names:
        assert re.search(rf"^\S+\s+{name}\s+.*Success\s*$", status, re.M), status

    shown = exp_show(repo)
    assert set(names) <= set(shown)
    expected = {}
    for name in names:
        data = shown[name]
        params = data["params"]["params.yaml"]["data"]
        assert (params["score"], params["adjust_pred_probs"]) == {
            "sweep-self-confidence": ("self_confidence", False),
            "sweep-self-confidence-adjusted": ("self_confidence", True),
            "sweep-entropy": ("entropy", False)}[name]
        expected[name] = data["metrics"]["metrics/roman-numeral.json"]["data"]
    # the baseline is self_confidence without adjustment: same headline numbers
    assert expected["sweep-self-confidence"]["auroc"] == baseline_auroc
    aurocs = [round(m["auroc"], 4) for m in expected.values()]
    assert len(set(aurocs)) == 3, aurocs

    md = (repo / "reports/sweep.md").read_text()
    rows = parse_markdown(md)
    assert sorted(rows) == sorted(names), md
    header = next(line for line in md.splitlines() if line.startswith("| experiment"))
    assert "roman-numeral AUROC | roman-numeral AUPRC" in header
    for name, cells in rows.items():
        assert float(cells[3]) == pytest.approx(expected[name]["auroc"], abs=5e-5)
        assert float(cells[4]) == pytest.approx(expected[name]["auprc"], abs=5e-5)
    assert [float(rows[n][3]) for n in rows] == sorted((float(rows[n][3]) for n in rows), reverse=True)
    for name in names:  # the printed table, one row each
        printed = [line for line in result.stdout.splitlines() if line.startswith("│") and f" {name} " in line]
        assert len(printed) == 1 and f"{expected[name]['auroc']:.4f}" in printed[0], result.stdout
    # the sweep leaves the workspace as it was (the report is git-ignored)
    assert run(["git", "status", "--porcelain"], repo).stdout.split() == []
    assert seconds < 150, seconds


@pytest.mark.slow
def test_rerun_replaces_the_experiments_of_the_same_name(repo):
    before = exp_show(repo)
    result, _ = run_sweep(repo, "--methods", "entropy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dvc exp remove sweep-entropy" in result.stdout
    listed = run(["dvc", "exp", "list", "--name-only"], repo).stdout.split()
    assert listed.count("sweep-entropy") == 1 and "sweep-self-confidence" in listed
    after = exp_show(repo)
    assert after["sweep-entropy"]["rev"] != before["sweep-entropy"]["rev"]
    assert list(parse_markdown((repo / "reports/sweep.md").read_text())) == ["sweep-entropy"]
    assert not queue_processes(repo)


@pytest.mark.slow
def test_failed_experiment_is_reported_with_its_log(repo):
    script = repo / "stages/evaluate.py"
    original = script.read_text()
    script.write_text('raise SystemExit("evaluate broken on purpose")\n' + original)
    run(["git", "commit", "-qam", "break evaluate"], repo)
    try:
        result, _ = run_sweep(repo, "--methods", "least_confidence")
        assert result.returncode == 1
        assert "experiment sweep-least-confidence failed; dvc queue logs" in result.stderr
        assert "evaluate broken on purpose" in result.stderr
        assert "1 of 1 experiments failed: sweep-least-confidence" in result.stderr
        assert not queue_processes(repo)
    finally:
        run(["git", "reset", "-q", "--hard", "HEAD~1"], repo)

"""`make sweep` / `python -m labelbench.ops.sweep`: the variants, the table built from a hand-made
`dvc exp show --json`, and (slow) a real queued sweep in a temporary clone."""

import json
import subprocess
import sys

import pytest
from rich.console import Console

from conftest import DVC_REMOTE, REPO_ROOT, run, small_clone, venv_env
from labelbench.evaluation.scores import ALL_VARIANTS
from labelbench.ops import sweep

DATASETS = ["roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s", "digits"]


def test_variants_are_the_valid_pairs_and_the_invalid_ones_are_reported():
    planned, skipped = sweep.variants()
    assert sorted(planned.values()) == sorted(ALL_VARIANTS)
    assert planned["sweep-normalized-margin-adjusted"] == ("normalized_margin", True)
    assert len(skipped) == 3 and all("adjust_pred_probs=true" in s and "not supported" in s for s in skipped)
    for name in planned:
        assert subprocess.run(["git", "check-ref-format", f"refs/exps/ab/cdef/{name}"]).returncode == 0, name
    planned, skipped = sweep.variants(["margin", "entropy"])  # aliases
    assert list(planned) == ["sweep-normalized-margin", "sweep-normalized-margin-adjusted", "sweep-entropy"]
    assert [s.split(":")[0] for s in skipped] == ["entropy + adjust_pred_probs=true"]
    with pytest.raises(ValueError, match="unknown score method 'nope'"):
        sweep.variants(["nope"])


def fake_show(experiments, metrics=("auroc", "auprc")):
    """A `dvc exp show --json` document; experiments: (name, score, adjust, {dataset: auroc}, failed).
    Every other metric is auroc / 2; failed ones carry other numbers, as dvc shows the baseline's."""
    exps = []
    for name, score, adjust, aurocs, failed in experiments:
        data = {m: {d: (9.0 if failed else a if m == "auroc" else a / 2) for d, a in aurocs.items()} for m in metrics}
        exps.append({"revs": [{"rev": name * 2, "name": name, "error": {"msg": "failed"} if failed else None, "data": {
            "params": {"params.yaml": {"data": {"score": score, "adjust_pred_probs": adjust}}},
            "metrics": {"metrics/headline.json": {"data": data},  # and a metrics file that is not per dataset
                        "metrics/multiannotator.json": {"data": {"auroc": {"crowdlab_best": 0.1}}}}}}]})
    return [{"rev": "workspace", "experiments": None}, {"rev": "a" * 40, "experiments": exps}]


SHOW = fake_show([
    ("sweep-entropy", "entropy", False, {"a": 0.70, "b": 0.80}, False),
    ("sweep-self-confidence", "self_confidence", False, {"a": 0.90, "b": 0.80}, False),
    ("sweep-least-confidence", "least_confidence", False, {"a": 0.5, "b": 0.5}, True),
    ("other-exp", "entropy", False, {"a": 0.99, "b": 0.99}, False),
], metrics=("auroc", "auprc", "new_metric"))


def test_table_takes_metrics_and_datasets_from_the_data_sorted_by_mean_auroc():
    df = sweep.table(SHOW, ["sweep-entropy", "sweep-self-confidence", "sweep-least-confidence"])
    assert list(df[("experiment", "")]) == ["sweep-self-confidence", "sweep-entropy", "sweep-least-confidence"]
    assert list(df.columns[4:]) == [(m, d) for m in ("auroc", "auprc", "new_metric") for d in ("a", "b", "mean")]
    assert df.loc[0, ("auroc", "mean")] == pytest.approx(0.85)
    assert df.loc[1, ("new_metric", "b")] == pytest.approx(0.40)
    failed = df.iloc[2]
    assert failed[("state", "")] == "failed" and failed.iloc[4:].isna().all()  # not the baseline's numbers
    assert list(sweep.table(SHOW, ["sweep-entropy", "sweep-self-confidence"], "new_metric")[("experiment", "")]) == [
        "sweep-self-confidence", "sweep-entropy"]


def test_rich_table_shows_whole_metrics_that_fit_and_names_the_rest():
    names = [f"sweep-{m.replace('_', '-')}{'-adjusted' * a}" for m, a in ALL_VARIANTS]
    show = fake_show([(n, m, a, {d: 0.5 + i / 100 for d in DATASETS}, i == 3)
                      for i, (n, (m, a)) in enumerate(zip(names, ALL_VARIANTS))],
                     metrics=("auroc", "auprc", "lift_at_100", "lift_at_num_errors"))
    df = sweep.table(show, names)
    for width, expected_left_out in ((160, ["lift_at_100", "lift_at_num_errors"]), (120, ["auprc", "lift_at_100", "lift_at_num_errors"])):
        table, left_out = sweep.rich_table(df, width, "auroc")
        console = Console(width=width, record=True)
        console.print(table)
        text = console.export_text()
        assert left_out == expected_left_out
        assert max(map(len, text.splitlines())) <= width and "…" not in text
        assert text.count("0.5600") == 6 and text.count("failed") == 6 * (4 - len(expected_left_out))
    table, left_out = sweep.rich_table(df, 400, "auprc")
    assert left_out == [] and [c.header.split("\n")[0] for c in table.columns][3] == "auprc"


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "labelbench.ops.sweep", *args], cwd=cwd, env=venv_env(),
                          text=True, capture_output=True)


def test_unknown_method_is_refused_before_any_dvc_command(tmp_path):
    result = cli("--methods", "marginal", cwd=tmp_path)
    assert result.returncode == 2 and "unknown score method 'marginal'" in result.stderr
    assert "$ dvc" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (["-j", "0"], "argument --jobs/-j: expected an integer >= 1, got 0"),
    (["--jobs", "two"], "argument --jobs/-j: expected an integer >= 1, got 'two'"),
    (["--width", "-5"], "argument --width: expected an integer >= 1, got -5"),
    (["--sort-by", "bogus"], "--sort-by bogus: not a metric of the evaluate stage; allowed: auroc, auprc, lift_at_100, "
                             "lift_at_num_errors"),
    (["--sort-by", "lift_at_50"], "--sort-by lift_at_50: not a metric"),
    (["--methods", "self_confidence,nope"], "unknown score method 'nope'"),
    (["--repo", "elsewhere"], "elsewhere/params.yaml: file not found"),
])
def test_bad_arguments_are_refused_before_any_dvc_command(tmp_path, monkeypatch, capsys, args, message):
    """The first dvc command removes earlier experiments: nothing may run before every argument is checked."""
    (tmp_path / "params.yaml").write_bytes((REPO_ROOT / "params.yaml").read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep, "dvc", lambda *a, **k: pytest.fail(f"dvc {a[1:]} ran"))
    with pytest.raises(SystemExit) as done:
        sweep.main(args)
    assert done.value.code == 2 and message in capsys.readouterr().err


# --- slow: a real sweep ---------------------------------------------------------------------


def md_rows(text):
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return lines[0], {cells[0]: dict(zip(lines[0], cells)) for cells in lines[2:]}


@pytest.mark.slow
def test_sweep_tabulates_the_experiments_and_matches_a_direct_exp_run(tmp_path, published):
    if not DVC_REMOTE.is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}", pytrace=False)  # ../shared is part of the checkout: fail, never skip
    repo = small_clone(tmp_path, published=["roman-numeral"], trained=False, folds=None)
    run(["dvc", "pull", "-q", "data/published"], repo)
    run(["dvc", "repro", "-q", "evaluate"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)

    result = cli("--methods", "self_confidence,entropy", "--width", "160", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Not run (invalid pair): entropy + adjust_pred_probs=true" in result.stdout
    header, rows = md_rows((repo / "reports/sweep.md").read_text())
    names = ["sweep-self-confidence", "sweep-self-confidence-adjusted", "sweep-entropy"]
    assert sorted(rows) == sorted(names)
    assert "auroc roman-numeral" in header and "auroc mean" in header and "lift_at_100 roman-numeral" in header
    aurocs = [float(r["auroc mean"]) for r in rows.values()]
    assert aurocs == sorted(aurocs, reverse=True) and len(set(aurocs)) == 3
    # against the experiments' own records
    shown = {r["name"]: r for r in sweep.revs(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout), names)}
    for name in names:
        params = shown[name]["data"]["params"]["params.yaml"]["data"]
        assert (rows[name]["score"], rows[name]["adjust_pred_probs"]) == (params["score"], str(params["adjust_pred_probs"]))
        for metric, per in shown[name]["data"]["metrics"]["metrics/headline.json"]["data"].items():
            assert float(rows[name][f"{metric} roman-numeral"]) == pytest.approx(per["roman-numeral"], abs=5e-5)
    # against a direct run of the same variant in the workspace
    run(["dvc", "exp", "run", "-q", "-S", "score=entropy", "-S", "adjust_pred_probs=false", "evaluate"], repo)
    direct = json.loads((repo / "metrics/headline.json").read_text())
    for metric, per in direct.items():
        assert float(rows["sweep-entropy"][f"{metric} roman-numeral"]) == pytest.approx(per["roman-numeral"], abs=5e-5)
    printed = [line for line in result.stdout.splitlines() if line.startswith("│ sweep-entropy ")]
    assert len(printed) == 1 and f"{direct['auroc']['roman-numeral']:.4f}" in printed[0]

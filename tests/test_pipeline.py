"""The DVC workflow of the README, with real dvc commands in a temporary git repo."""

import json

import pytest

from conftest import DVC_REMOTE, run, small_clone, stages_run
from labelbench.ops.plots_template import is_offline_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    if not DVC_REMOTE.is_dir():
        pytest.skip(f"no DVC remote at {DVC_REMOTE}")
    # One dataset keeps the test quick; the stages are the same for every dataset. benchmark and
    # report depend on data/trained too, so digits trains, as small as possible.
    root = small_clone(tmp_path_factory.mktemp("repo"), datasets={"roman-numeral": "data/published"})
    run(["dvc", "pull", "-q", "data/published.dvc"], root)
    run(["dvc", "repro", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    return root



def test_pull_gives_the_published_tree(repo, published):
    for rel in ["roman-numeral/given_labels.npy", "cifar-10s/pred_probs/resnet18.npy", "SHA256SUMS"]:
        assert (repo / "data/published" / rel).read_bytes() == (published / rel).read_bytes()
    assert "d415820314fa1007e4144762b9b1995f.dir" in (repo / "data/published.dvc").read_text()


def test_repro_outputs_and_noop(repo):
    metrics = json.loads((repo / "metrics/roman-numeral.json").read_text())
    swin = metrics["models"]["swin_base_patch4_window7_224"]
    assert swin["auroc"] == pytest.approx(0.834956, abs=5e-7)
    assert metrics["num_errors"] == 372 and metrics["num_examples"] == 2831
    assert "ensemble:avg_scores_weighted_by_inv_log_loss" in metrics["models"]
    for rel in ["metrics/benchmark.csv", "metrics/filters.csv", "metrics/summary.json",
                "reports/benchmark.md", "plots/auroc_dot_plot.png", "plots/pr/roman-numeral.csv",
                "data/scores/roman-numeral.csv"]:
        assert (repo / rel).is_file(), rel
    again = run(["dvc", "repro"], repo)
    assert stages_run(again.stdout) == []
    assert run(["git", "status", "--porcelain"], repo).stdout.strip() == ""


def test_exp_run_margin_reruns_only_score_and_evaluate(repo):
    result = run(["dvc", "exp", "run", "-S", "score=margin"], repo)
    ran = stages_run(result.stdout)
    assert sorted(ran) == ["evaluate@roman-numeral", "score@roman-numeral"], result.stdout
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff["metrics/roman-numeral.json"]
    key = "models.swin_base_patch4_window7_224.auroc"
    assert changed[key]["old"] == pytest.approx(0.834956, abs=5e-7)
    assert changed[key]["new"] == pytest.approx(0.824684, abs=5e-7)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    text = json.dumps(shown)
    assert '"score": "margin"' in text and '"adjust_pred_probs": false' in text
    assert "metrics/roman-numeral.json" in text
    # plots diff renders both revisions into one offline page
    out = repo / "plots_diff"
    run(["dvc", "plots", "diff", "HEAD", "-o", str(out)], repo)
    page = (out / "index.html").read_text()
    assert "Precision" in page or "precision" in page
    if is_offline_template(repo / ".dvc/plots_template.html"):
        assert "cdn.jsdelivr" not in page and 'src="http' not in page
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout", "-q"], repo)


def test_adjust_pred_probs_run(repo):
    result = run(["dvc", "exp", "run", "-S", "score=self_confidence", "-S", "adjust_pred_probs=true"], repo)
    assert sorted(stages_run(result.stdout)) == ["evaluate@roman-numeral", "score@roman-numeral"]
    metrics = json.loads((repo / "metrics/roman-numeral.json").read_text())
    assert metrics["models"]["swin_base_patch4_window7_224"]["auroc"] == pytest.approx(0.837348, abs=5e-7)
    run(["git", "checkout", "--", "."], repo)
    run(["dvc", "checkout", "-q"], repo)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["score=marginal"], "unknown score method 'marginal'; valid: self_confidence, normalized_margin"),
        (["score=cwe", "adjust_pred_probs=true"], "adjust_pred_probs=True is not supported by method 'confidence_weighted_entropy'"),
    ],
)
def test_bad_params_fail_clearly(repo, overrides, message):
    args = ["dvc", "exp", "run"] + [a for o in overrides for a in ("-S", o)]
    result = run(args, repo, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    run(["git", "checkout", "--", "."], repo)

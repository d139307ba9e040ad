"""The DVC workflow of the README, with real dvc commands in a temporary git repo."""

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios

import pytest
import yaml

from conftest import REPO_ROOT, roman_numeral_clone, run, stages_run, venv_env
from labelbench.ops.plots_template import is_offline_template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    # One dataset and no training keep the test quick; the stages are the same for every dataset.
    root = roman_numeral_clone(tmp_path_factory.mktemp("repo"))
    run(["dvc", "repro", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "baseline"], root)
    return root


def restore(repo):
    """Back to the committed baseline: tracked files, untracked leftovers, DVC's cached outputs (data/scores,
    metrics/models, the markdown reports: `dvc checkout`), and anything a failed run deleted rebuilt."""
    run(["git", "reset", "-q"], repo)
    # every tracked file written again: `dvc exp run -S crossval.folds=[1,2,3]` leaves params.yaml edited with the
    # same size in the same second, so git's stat cache says clean and even `git checkout-index -f` skips it; an
    # old mtime makes git see every file as changed and write it back
    for name in filter(None, run(["git", "ls-files", "-z"], repo).stdout.split("\0")):
        if (repo / name).is_file():
            os.utime(repo / name, (0, 0))
    run(["git", "checkout-index", "-a", "-f"], repo)
    run(["git", "clean", "-fdq"], repo)
    run(["dvc", "checkout", "-q"], repo)
    run(["dvc", "repro", "-q"], repo)
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.fixture(autouse=True)
def restored(repo):
    """Every test starts from, and leaves, the committed baseline, whether it passed or failed."""
    yield
    restore(repo)


def test_pull_gives_the_published_tree(repo, published):
    for rel in ["roman-numeral/given_labels.npy", "cifar-10s/pred_probs/resnet18.npy", "SHA256SUMS"]:
        assert (repo / "data/published" / rel).read_bytes() == (published / rel).read_bytes()
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["published"]["outs"][0]["md5"] == "d415820314fa1007e4144762b9b1995f.dir"


def test_repro_outputs_and_noop(repo):
    metrics = json.loads((repo / "metrics/models/roman-numeral.json").read_text())
    swin = metrics["models"]["swin_base_patch4_window7_224"]
    assert swin["auroc"] == pytest.approx(0.834956, abs=5e-7)
    assert metrics["num_errors"] == 372 and metrics["num_examples"] == 2831
    ensemble = metrics["models"]["ensemble:avg_scores_weighted_by_inv_log_loss"]
    headline = json.loads((repo / "metrics/headline.json").read_text())
    assert headline == {metric: {"roman-numeral": ensemble[metric]}
                        for metric in ("auroc", "auprc", "lift_at_100", "lift_at_num_errors")}
    for rel in ["metrics/benchmark.csv", "metrics/filters.csv", "metrics/summary.json",
                "reports/benchmark.md", "plots/auroc_dot_plot.png", "plots/pr/roman-numeral.csv",
                "data/scores/roman-numeral.csv"]:
        assert (repo / rel).is_file(), rel
        assert (repo / rel).stat().st_mode & 0o777 == 0o644, rel  # the usual mode (umask 022)
    again = run(["dvc", "repro"], repo)
    assert stages_run(again.stdout) == []
    assert run(["git", "status", "--porcelain"], repo).stdout.strip() == ""


def run_in_terminal(cmd: list[str], cwd, *, columns: int, env: dict) -> str:
    """What ``cmd`` prints in a pseudo-terminal ``columns`` wide (colours and carriage returns taken out)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {name: value for name, value in env.items() if name not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=child, stdout=child, stderr=child)
    os.close(child)
    chunks = []
    while True:
        if not select.select([main], [], [], 120)[0]:  # a pager waiting for keys would hang the suite
            proc.kill()
            raise AssertionError(f"{cmd} printed nothing for 120 s:\n{b''.join(chunks).decode(errors='replace')}")
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child's side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait()
    os.close(main)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode()).replace("\r", "")


def test_exp_run_margin_reruns_only_evaluate(repo):
    result = run(["dvc", "exp", "run", "-S", "score=margin"], repo)
    assert stages_run(result.stdout) == ["evaluate"], result.stdout
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    assert set(diff) == {"metrics/headline.json"}
    assert diff["metrics/headline.json"]["auroc.roman-numeral"]["new"] == pytest.approx(0.840043, abs=5e-7)
    # per dataset and model, on request
    detail = json.loads(run(["dvc", "metrics", "diff", "--json", "--targets", "metrics/models/roman-numeral.json"],
                            repo).stdout)["metrics/models/roman-numeral.json"]
    key = "models.swin_base_patch4_window7_224.auroc"
    assert detail[key]["old"] == pytest.approx(0.834956, abs=5e-7)
    assert detail[key]["new"] == pytest.approx(0.824684, abs=5e-7)
    text = json.dumps(json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout))
    assert '"score": "margin"' in text and '"adjust_pred_probs": false' in text
    # `dvc exp show --only-changed` (what README shows) and `dvc metrics diff` at 120 columns: real numbers, no
    # cut names (`dvc exp show --no-pager` adds a hash column per stage dependency and collapses at 120)
    for cmd in (["dvc", "exp", "show", "--no-pager", "--only-changed"], ["dvc", "metrics", "diff"]):
        shown = run(cmd, repo, env={**venv_env(), "COLUMNS": "120"}).stdout
        assert "auroc.roman-numeral" in shown and "0.84" in shown, shown
        assert max(len(line) for line in shown.splitlines()) <= 120
    # plain `dvc exp show` in a 120-column terminal: DVC renders the whole table for its pager (`less -RS`, here
    # `cat`) with no cell cut; the first screen holds the names and the first metrics, the rest scrolls sideways
    shown = run_in_terminal(["dvc", "exp", "show"], repo, columns=120, env={**venv_env(), "DVC_PAGER": "cat"})
    assert "…" not in shown, shown
    screen = [line[:120] for line in shown.splitlines()]
    assert any("Experiment" in line and "auroc.roman-numeral" in line for line in screen), shown
    assert any("0.84588" in line for line in screen) and any("0.84004" in line for line in screen), shown
    # plots diff renders both revisions into one offline page
    out = repo / "plots_diff"
    rendered = run(["dvc", "plots", "diff", "HEAD", "-o", str(out)], repo)
    assert "failed to load" not in rendered.stdout + rendered.stderr, rendered.stderr
    page = (out / "index.html").read_text()
    assert "Precision-recall of the selected score" in page
    assert "workspace_plots_auroc_dot_plot.png" in page  # the report's figures, declared as the report stage's plots
    if is_offline_template(repo / ".dvc/plots_template.html"):
        assert "cdn.jsdelivr" not in page and 'src="http' not in page


def test_adjust_pred_probs_run(repo):
    result = run(["dvc", "exp", "run", "-S", "score=self_confidence", "-S", "adjust_pred_probs=true"], repo)
    assert stages_run(result.stdout) == ["evaluate"]
    metrics = json.loads((repo / "metrics/models/roman-numeral.json").read_text())
    assert metrics["models"]["swin_base_patch4_window7_224"]["auroc"] == pytest.approx(0.837348, abs=5e-7)


def _uncached_plain_outs(stage: str) -> list[str]:
    """Outputs of ``stage`` in dvc.yaml with ``cache: false`` that are neither metrics nor plots: DVC 3.67 saves no
    run-cache entry for such a stage (``dvc/stage/__init__.py``, ``Stage.run``: ``run_cache=... not
    no_cache_outs``), whatever ``persist`` says (``persist`` alone switches it off too: ``stage/cache.py``,
    ``_can_hash``)."""
    definition = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]
    outs = definition.get("do", definition).get("outs", [])
    return [path for out in outs if isinstance(out, dict) for path, flags in out.items()
            if (flags or {}).get("cache", True) is False]


NO_RUN_CACHE_FOR_EVALUATE = _uncached_plain_outs("evaluate")
EVALUATION_STAGES = ["evaluate", "benchmark", "issues", "multiannotator", "report"]


def test_every_stage_can_be_run_cached():
    """Each output of every stage is cached, or a `cache: false` metric or plot (kept in git), and none is
    `persist`: the two conditions under which DVC 3.67 saves a run-cache entry for a stage."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    bodies = {name: stage.get("do", stage) for name, stage in stages.items()}  # foreach stages: their `do`
    assert set(EVALUATION_STAGES) <= set(bodies)
    assert {name: _uncached_plain_outs(name) for name in bodies} == dict.fromkeys(bodies, [])
    persistent = [path for body in bodies.values() for section in ("outs", "metrics", "plots")
                  for out in body.get(section, []) if isinstance(out, dict)
                  for path, flags in out.items() if (flags or {}).get("persist")]
    assert persistent == []


@pytest.mark.xfail(condition=bool(NO_RUN_CACHE_FOR_EVALUATE), strict=True,
                   reason="no run-cache for evaluate while its outs "
                          f"{', '.join(NO_RUN_CACHE_FOR_EVALUATE)} are `cache: false` without being metrics or plots")
def test_flipping_score_back_restores_evaluate_from_the_run_cache(repo):
    baseline = {rel: (repo / rel).read_text()  # the committed baseline (in git, or cached: metrics/models)
                for rel in ("metrics/headline.json", "metrics/models/roman-numeral.json",
                            "plots/pr/roman-numeral.csv", "plots/lift/roman-numeral.csv",
                            "data/scores/roman-numeral.csv")}
    run(["dvc", "exp", "run", "-S", "score=margin"], repo)  # run, or restored if an earlier test ran it
    assert json.loads((repo / "metrics/headline.json").read_text()) != json.loads(baseline["metrics/headline.json"])
    back = run(["dvc", "exp", "run", "-S", "score=self_confidence"], repo)
    assert "Stage 'evaluate' is cached - skipping run" in back.stdout, back.stdout
    assert stages_run(back.stdout) == [], back.stdout  # nothing recomputed
    assert {rel: (repo / rel).read_text() for rel in baseline} == baseline  # the original outputs, to the byte
    assert run(["git", "status", "--porcelain"], repo).stdout == ""  # dvc.lock and every git-tracked output as before


def test_flipping_benchmark_params_back_restores_benchmark_from_the_run_cache(repo):
    tracked = ("metrics/benchmark.csv", "metrics/filters.csv", "plots/auroc_dot_plot.png", "dvc.lock")
    cached = ("metrics/summary.json", "reports/benchmark.md")
    baseline = {rel: (repo / rel).read_bytes() for rel in tracked + cached}
    ensembles = yaml.safe_load((repo / "params.yaml").read_text())["benchmark"]["ensembles"]
    changed = run(["dvc", "exp", "run", "-S", f"benchmark.ensembles={ensembles[:1]}"], repo)
    assert stages_run(changed.stdout) == ["benchmark", "report"], changed.stdout
    assert (repo / "metrics/benchmark.csv").read_bytes() != baseline["metrics/benchmark.csv"]
    back = run(["dvc", "exp", "run", "-S", f"benchmark.ensembles={ensembles}".replace(" ", "")], repo)
    for stage in ("benchmark", "report"):
        assert f"Stage '{stage}' is cached - skipping run" in back.stdout, back.stdout
    assert stages_run(back.stdout) == [], back.stdout
    assert {rel: (repo / rel).read_bytes() for rel in baseline} == baseline
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


def test_flipping_a_report_param_back_restores_report_from_the_run_cache(repo):
    baseline = {rel: (repo / rel).read_bytes() for rel in ("reports/benchmark.md", "plots/pr_curves.png", "dvc.lock")}
    top_n = yaml.safe_load((repo / "params.yaml").read_text())["report"]["top_n"]
    changed = run(["dvc", "exp", "run", "-S", f"report.top_n={top_n + 1}"], repo)
    assert stages_run(changed.stdout) == ["report"], changed.stdout
    assert (repo / "reports/benchmark.md").read_bytes() != baseline["reports/benchmark.md"]
    back = run(["dvc", "exp", "run", "-S", f"report.top_n={top_n}"], repo)
    assert "Stage 'report' is cached - skipping run" in back.stdout, back.stdout
    assert stages_run(back.stdout) == [], back.stdout
    assert {rel: (repo / rel).read_bytes() for rel in baseline} == baseline
    assert run(["git", "status", "--porcelain"], repo).stdout == ""


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["score=marginal"], "score = 'marginal': Value error, unknown score method 'marginal'; valid: self_confidence"),
        (["score=cwe", "adjust_pred_probs=true"],
         "adjust_pred_probs=True is not supported by method 'confidence_weighted_entropy'"),
        (["lift_k=-5"], "lift_k = -5: Input should be greater than or equal to 1"),
        (["lift_k=[100]"], "lift_k = [100]: Input should be a valid integer"),
        (["published.models=[]"], "published.models = []: List should have at least 1 item"),
        (["published.models=[swin_base]"], "unknown ['swin_base']; allowed: resnet18, resnet50d"),
        (["crossval.models=[]"], "crossval.models = []: List should have at least 1 item"),
        # DVC itself refuses these before any stage starts: a new key, and a non-list matrix axis
        (["evaluate.curve_point=5"], "Could not override 'evaluate.curve_point'"),
        (["crossval.folds=3"], "ERROR: unexpected error - 'Value' object is not iterable"),
    ],
)
def test_bad_params_are_refused_before_any_work(repo, overrides, message):
    before = {p: (repo / p).read_bytes() for p in ("dvc.lock", "metrics/headline.json", "metrics/benchmark.csv")}
    args = ["dvc", "exp", "run"] + [a for o in overrides for a in ("-S", o)]
    result = run(args, repo, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    ran = stages_run(result.stdout)
    assert ran in ([], ["evaluate"])  # refused by DVC itself, or by the first stage to read the params
    # DVC records nothing; a stage that did not run keeps its outputs; the one that refused leaves none (no
    # `persist`: DVC deletes a stage's outputs before running it), and nothing is half-written
    assert (repo / "dvc.lock").read_bytes() == before["dvc.lock"]
    assert (repo / "metrics/benchmark.csv").read_bytes() == before["metrics/benchmark.csv"]
    headline = repo / "metrics/headline.json"
    assert (not headline.exists()) if ran else headline.read_bytes() == before["metrics/headline.json"]
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout.splitlines()
    assert [line for line in status if not line.startswith((" D ", " M params.yaml"))] == [], status
    restore(repo)
    assert headline.read_bytes() == before["metrics/headline.json"]


def test_bad_fold_ids_are_refused_by_the_first_stage_that_runs(repo):
    # No stage of this clone (nothing trained) declares crossval.folds, so a plain `dvc exp run` has nothing to
    # rerun and succeeds; a stage that runs reads the whole params file and refuses it
    result = run(["dvc", "exp", "run", "-f", "-S", "crossval.folds=[1,2,3]"], repo, check=False)
    assert result.returncode != 0
    assert "must be the fold ids 0..k-1" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert stages_run(result.stdout) == ["published", "evaluate"]  # -f: the authors' copy is copied again too


def test_unknown_key_written_by_hand_is_refused(repo):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("curve_points: 101", "curve_points: 101\n  curve_point: 5"))
    result = run(["dvc", "repro"], repo, check=False)
    assert result.returncode != 0
    assert "evaluate.curve_point = 5: Extra inputs are not permitted; allowed: curve_points" in result.stderr
    assert stages_run(result.stdout) == ["evaluate"]  # the first stage to read the block refuses it

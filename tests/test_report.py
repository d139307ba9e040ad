"""The report stage refuses benchmark outputs it cannot use, naming the file."""

import itertools
import json
import re
import shutil

import pytest

from conftest import REPO_ROOT, load_stage


def committed_summary() -> dict:
    """summary.json as the benchmark stage derives it from the git-tracked metrics/benchmark.csv (summary.json
    itself is a cached output: a fresh clone has it only after `dvc pull` or `dvc repro`)."""
    import pandas as pd
    import yaml

    from labelbench.evaluation.benchmark import summarize

    table = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv", float_precision="round_trip")
    bootstrap = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["benchmark"]["bootstrap"]
    return {**summarize(table, lift_k=100), "bootstrap": bootstrap}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "metrics").mkdir()
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    for name in ("benchmark.csv", "filters.csv"):
        shutil.copy(REPO_ROOT / "metrics" / name, tmp_path / "metrics" / name)
    (tmp_path / "metrics" / "summary.json").write_text(json.dumps(committed_summary()))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("benchmark.csv", "dataset,model\nroman-numeral,resnet18\n", "metrics/benchmark.csv: missing columns"),
        ("filters.csv", "", "metrics/filters.csv: not a readable CSV"),
        ("summary.json", '{"methods": 3}', "metrics/summary.json: not a summary"),
        ("summary.json", lambda text: json.dumps({**json.loads(text), "bootstrap": {"level": 0.95}}),
         "metrics/summary.json: not a summary written by the benchmark stage (KeyError('resamples'))"),
        ("benchmark.csv", lambda text: re.sub(r"(?m)^(roman-numeral,resnet18,self_confidence,False,)[^,]*,", r"\1x,",
                                              text),
         "metrics/benchmark.csv: column(s) ['auroc'] hold other values than numbers (rerun the benchmark stage)"),
        ("filters.csv", lambda text: re.sub(r"(?m)^(roman-numeral,efficientnet_b1,both,)[^,]*,", r"\1x,", text),
         "metrics/filters.csv: column(s) ['precision'] hold other values than numbers"),
    ],
)
def test_bad_benchmark_outputs(workdir, capsys, name, content, message):
    path = workdir / "metrics" / name
    path.write_text(content(path.read_text()) if callable(content) else content)
    argv = ["--metrics", "metrics", "--issues", "reports/issues", "--out", "reports/benchmark.md", "--figures", "plots"]
    assert load_stage("report").main(argv) == 1
    assert message in capsys.readouterr().err
    assert not (workdir / "reports").exists()
    assert not (workdir / "plots").exists()


def test_markdown_tables_bold_the_best_of_each_column():
    import pandas as pd

    from labelbench.evaluation.report import _markdown_table

    frame = pd.DataFrame({"a": [0.5, 0.75], "b": [0.9, 0.1]}, index=pd.Index(["x", "y"], name="method"))
    assert _markdown_table(frame).splitlines()[2:] == ["| x        | 0.5000     | **0.9000** |",
                                                       "| y        | **0.7500** | 0.1000     |"]


def _bootstrapped_rows():
    import pandas as pd

    return pd.DataFrame({
        "dataset": "d", "model": ["m1", "m1", "m1", "m2", "m2", "m2"],
        "method": ["self_confidence", "normalized_margin", "entropy"] * 2, "adjust_pred_probs": False,
        "auroc": [0.99961, 0.99964, 0.9, 0.8, 0.7, 0.6],
        "auroc_lo": [0.9990, 0.9991, 0.88, 0.78, 0.68, 0.58], "auroc_hi": [0.9999, 0.9999, 0.92, 0.82, 0.72, 0.62],
        "auroc_vs_best": ["tied", "best", "worse", "best", "worse", "worse"],
        "auroc_vs_best_in_family": ["tied", "best", "worse", "best", "worse", "worse"],  # one family here
        "auroc_diff_lo": [-2e-4, 0, -0.1, 0, -0.12, -0.22], "auroc_diff_hi": [1e-4, 0, -0.09, 0, -0.08, -0.18],
    })


def test_variant_tables_mark_best_and_tied_with_intervals_and_enough_digits():
    from labelbench.evaluation.report import variant_tables

    table = variant_tables(_bootstrapped_rows(), "d", "auroc")
    assert list(table.index) == ["self_confidence", "normalized_margin", "entropy"]
    assert table.loc["self_confidence", "m1"] == "0.99961 † [0.99900, 0.99990]"
    assert table.loc["normalized_margin", "m1"] == "**0.99964** [0.99910, 0.99990]"
    assert table.loc["entropy", "m2"] == "0.60000 [0.58000, 0.62000]"


def test_dot_plot_of_differences_to_the_best(tmp_path, monkeypatch):
    """Each variant's dots at its difference to its pair's best (worked out by hand below) and its bars at the paired
    interval of that difference, one row per pair (m1 at y=0, m2 at y=1; three variants offset by -0.3, 0, 0.3)."""
    import numpy as np
    from matplotlib.axes import Axes

    from labelbench.evaluation.report import dot_plot

    drawn = {"scatter": [], "hlines": []}
    for name in drawn:
        original = getattr(Axes, name)

        def record(self, *args, _name=name, _original=original, **kwargs):
            drawn[_name].append((args, kwargs.get("label")))
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(Axes, name, record)
    dot_plot(_bootstrapped_rows(), tmp_path / "dots.png")
    assert (tmp_path / "dots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    expected = {  # method: (x of m1, x of m2), (bar ends of m1, of m2), y offset
        "self_confidence": ((0.99961 - 0.99964, 0.0), ((-2e-4, 1e-4), (0, 0)), -0.3),
        "normalized_margin": ((0.0, 0.7 - 0.8), ((0, 0), (-0.12, -0.08)), 0.0),
        "entropy": ((0.9 - 0.99964, 0.6 - 0.8), ((-0.1, -0.09), (-0.22, -0.18)), 0.3),
    }
    assert [label for _, label in drawn["scatter"]] == list(expected)
    for ((xs, ys), _), ((bar_ys, lo, hi), _), (dots, bars, offset) in zip(drawn["scatter"], drawn["hlines"],
                                                                          expected.values()):
        np.testing.assert_allclose(xs, dots, atol=1e-12)
        np.testing.assert_allclose(ys, [offset, 1 + offset], atol=1e-12)
        np.testing.assert_allclose(bar_ys, ys, atol=0)
        np.testing.assert_allclose(np.column_stack([lo, hi]), bars, atol=1e-12)


def test_sections_of_other_stages_are_appended_as_written(tmp_path):
    import pandas as pd

    from labelbench.evaluation.multiannotator import markdown_section
    from labelbench.evaluation.report import write_markdown

    benchmark = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv")
    filters = pd.read_csv(REPO_ROOT / "metrics" / "filters.csv")
    summary = committed_summary()
    top = pd.DataFrame(columns=["dataset", "rank", "image_id", "given_label", "suggested_label", "score"])
    section = markdown_section(table=pd.DataFrame(), summary={})  # the track switched off: its own note
    write_markdown(tmp_path / "r.md", benchmark=benchmark, filters=filters, summary=summary, top=top,
                   figures=[], lift_k=100, sections=[section])
    text = (tmp_path / "r.md").read_text()
    assert text.rstrip("\n").endswith(section.rstrip("\n"))
    assert "Not evaluated" in text


def test_unreadable_section_is_refused_naming_it(workdir, capsys):
    argv = ["--metrics", "metrics", "--issues", "reports/issues", "--out", "reports/benchmark.md", "--figures", "plots",
            "--section", "reports/missing.md"]
    assert load_stage("report").main(argv) == 1
    assert "reports/missing.md" in capsys.readouterr().err
    assert not (workdir / "reports" / "benchmark.md").exists()


def _headline_rows(metrics_dir, method, adjust):
    """The headline table of ``metrics_dir`` rendered as plain text lines."""
    from rich.console import Console

    from labelbench.evaluation.report import headline

    console = Console(width=200, record=True, color_system=None)
    console.print(headline(metrics_dir, ["roman-numeral"], lift_k=100, title="t", method=method,
                           adjust_pred_probs=adjust))
    return console.export_text()


def test_headline_intervals_come_from_the_benchmark_rows_of_the_selected_score(tmp_path, published):
    import pandas as pd

    from labelbench.data.io import load_dataset
    from labelbench.evaluation.evaluate import evaluate_table
    from labelbench.evaluation.scoring import score_dataset

    # metrics/models/roman-numeral.json as the evaluate stage writes it for self_confidence (a cached output)
    data = load_dataset(published, "roman-numeral")
    table, info = score_dataset(data, models=list(data.pred_probs), method="self_confidence", adjust_pred_probs=False,
                                ensemble="avg_scores_weighted_by_inv_log_loss")
    (tmp_path / "models").mkdir()
    (tmp_path / "models/roman-numeral.json").write_text(
        json.dumps(evaluate_table(table, lift_k=100, cv_accuracy=info["cv_accuracy"])))
    benchmark = pd.read_csv(REPO_ROOT / "metrics/benchmark.csv")
    benchmark.to_csv(tmp_path / "benchmark.csv", index=False)
    row = benchmark[(benchmark["dataset"] == "roman-numeral") & (benchmark["model"] == "resnet18")
                    & (benchmark["method"] == "self_confidence") & ~benchmark["adjust_pred_probs"]].iloc[0]
    assert f"{row['auroc_lo']:.6f}–{row['auroc_hi']:.6f}" in _headline_rows(tmp_path, "self_confidence", False)
    # another variant's rows: their AUROC is not this table's, so no interval is shown rather than a wrong one
    assert "–" not in _headline_rows(tmp_path, "entropy", False).split("resnet18", 1)[1].splitlines()[0]


def test_the_headline_names_a_missing_or_stale_metrics_file(workdir, capsys):
    """`stages/show.py` (make reproduce's last step) before `dvc repro` wrote metrics/models/<dataset>.json, or
    after params changed: one error line naming the file, not a traceback."""
    show = load_stage("show")
    models = workdir / "metrics" / "models"
    models.mkdir()
    assert show.main([]) == 1
    assert "error: metrics/models/roman-numeral.json: not found; `dvc repro` writes it" in capsys.readouterr().err
    (models / "roman-numeral.json").write_text(json.dumps({"models": {"resnet18": {"auroc": 0.9, "auprc": 0.5}}}))
    assert show.main([]) == 1
    assert ("error: metrics/models/roman-numeral.json: not the evaluate stage's metrics for these params (KeyError: "
            "'lift_at_100'); `dvc repro` rewrites it") in capsys.readouterr().err
    (models / "roman-numeral.json").write_bytes(b"\xff")
    assert show.main([]) == 1
    assert "error: metrics/models/roman-numeral.json: not UTF-8 text" in capsys.readouterr().err
    metrics = ("auroc", "auprc", "lift_at_100", "lift_at_num_errors", "cv_accuracy")  # valid: the intervals' table next
    (models / "roman-numeral.json").write_text(json.dumps({"models": {"resnet18": dict.fromkeys(metrics, 0.5)}}))
    (workdir / "metrics" / "benchmark.csv").write_text("dataset,model\n\"roman")
    assert show.main([]) == 1
    assert "error: metrics/benchmark.csv: not a readable CSV" in capsys.readouterr().err


def _table(text: str, dataset: str | None, heading: str) -> dict[str, dict[str, str]]:
    """The markdown table after ``heading`` (in ``## dataset`` when given) as row -> column -> cell, with the
    marks of the best and the tied (bold, †) and any interval dropped."""
    part = text.split(f"\n## {dataset}\n", 1)[1] if dataset else text
    after = part.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("|"))
    lines = list(itertools.takewhile(lambda line: line.startswith("|"), after[start:]))
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[re.sub(r"\*\*| †| \[.*\]", "", cell).strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(columns[1:], row[1:])) for row in rows}


def _close(shown: dict[str, dict[str, str]], values: dict[str, dict[str, float]]) -> bool:
    """The same rows and columns, each cell ``values``' number rounded to the digits it shows (at least 4)."""
    return {row: set(cells) for row, cells in shown.items()} == {row: set(cells) for row, cells in values.items()} \
        and all(len(cell.split(".")[1]) >= 4 and abs(float(cell) - values[row][column]) <= 0.5 * 10.0 ** -len(
            cell.split(".")[1]) + 1e-15 for row, cells in shown.items() for column, cell in cells.items())


def test_report_tables_are_the_committed_metrics(tmp_path):
    """reports/benchmark.md rendered from the committed metrics: each filter table is its metric of filters.csv,
    the wins / ties / losses are the counts of each variant's in-family verdicts over the single-model pairs, and the
    summary is the mean of each pair's min-max normalised metric (both recounted here from benchmark.csv)."""
    import pandas as pd

    from labelbench.evaluation.ensembles import short_model
    from labelbench.evaluation.report import write_markdown

    benchmark = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv")
    filters = pd.read_csv(REPO_ROOT / "metrics" / "filters.csv")
    top = pd.DataFrame(columns=["dataset", "rank", "image_id", "given_label", "suggested_label", "score"])
    write_markdown(tmp_path / "r.md", benchmark=benchmark, filters=filters, summary=committed_summary(), top=top,
                   figures=[], lift_k=100)
    text = (tmp_path / "r.md").read_text()
    for dataset, rows in filters.groupby("dataset"):
        for metric, title in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
            shown = _table(text, dataset, f"### cleanlab `find_label_issues` filters: {title}\n")
            assert _close(shown, {by: {short_model(row.model): getattr(row, metric) for row in group.itertuples()}
                                  for by, group in rows.groupby("filter_by")}), (dataset, metric)
    scores = ["self_confidence", "normalized_margin", "confidence_weighted_entropy", "entropy", "least_confidence"]
    single = benchmark[~benchmark["model"].str.startswith("ensemble:") & benchmark["method"].isin(scores)]
    variant = single["method"] + single["adjust_pred_probs"].map({True: "+adjust_pred_probs", False: ""})
    verdicts = _table(text, None, "Wins / ties / losses of each variant")
    means = _table(text, None, "## Summary over all dataset × model pairs")
    titles = {"auroc": "AUROC", "auprc": "AUPRC", "lift_at_100": "lift@100", "lift_at_num_errors": "lift@#errors"}
    for metric, title in titles.items():
        for name in variant.unique():
            counts = single.loc[variant == name, f"{metric}_vs_best_in_family"].value_counts()
            assert verdicts[name][title] == f"{counts.get('best', 0)} / {counts.get('tied', 0)} / " \
                                            f"{counts.get('worse', 0)}", (name, metric)
        low = single.groupby(["dataset", "model"])[metric].transform("min")
        span = single.groupby(["dataset", "model"])[metric].transform("max") - low
        normalised = ((single[metric] - low) / span).where(span > 0, 0.5)
        assert _close({name: {title: row[title]} for name, row in means.items()},
                      {name: {title: normalised[variant == name].mean()} for name in variant.unique()}), metric


def test_the_headline_refuses_metrics_of_other_params_or_other_bytes(workdir, capsys):
    """In a DVC repository `stages/show.py` checks metrics/models against dvc.lock: computed for another score than
    params.yaml's (changed since `dvc repro`), the title would misname the numbers; changed bytes, it names them."""
    import yaml

    from labelbench.config import load_params
    from labelbench.data.verify import dir_listing, listing_md5
    from labelbench.evaluation.params import EvaluateParams

    show = load_stage("show")
    metrics = ("auroc", "auprc", "lift_at_100", "lift_at_num_errors", "cv_accuracy")
    models = workdir / "metrics" / "models"
    models.mkdir()
    for name in load_params(EvaluateParams, workdir / "params.yaml").roots():
        (models / f"{name}.json").write_text(json.dumps({"models": {"resnet18": dict.fromkeys(metrics, 0.5)}}))
    (workdir / "dvc.yaml").write_text("stages: {}\n")

    def lock(score):
        entry = {"cmd": "python stages/evaluate.py", "params": {"params.yaml": {"score": score, "lift_k": 100}},
                 "outs": [{"path": "metrics/models", "hash": "md5", "md5": listing_md5(dir_listing(models))}]}
        (workdir / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"evaluate": entry}}))

    lock("entropy")
    assert show.main([]) == 1
    assert capsys.readouterr().err == ("error: metrics/models: computed with other params (score: 'entropy' in dvc.lock, "
                                       "'self_confidence' in params.yaml): run `dvc repro` first\n")
    lock("self_confidence")
    assert show.main([]) == 0
    assert "Label error detection with self_confidence" in capsys.readouterr().out
    (models / "roman-numeral.json").write_text(json.dumps({"models": {"resnet18": dict.fromkeys(metrics, 0.6)}}))
    assert show.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: metrics/models: its files are not the ones dvc.lock (outs of stage 'evaluate') "
                          "records") and "`dvc repro -f evaluate`" in err, err

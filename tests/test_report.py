"""The report stage refuses benchmark outputs it cannot use, naming the file."""

import shutil

import pytest

from conftest import REPO_ROOT, load_stage


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "metrics").mkdir()
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    for name in ("benchmark.csv", "filters.csv", "summary.json"):
        shutil.copy(REPO_ROOT / "metrics" / name, tmp_path / "metrics" / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("benchmark.csv", "dataset,model\nroman-numeral,resnet18\n", "metrics/benchmark.csv: missing columns"),
        ("filters.csv", "", "metrics/filters.csv: not a readable CSV"),
        ("summary.json", '{"methods": 3}', "metrics/summary.json: not a summary"),
    ],
)
def test_bad_benchmark_outputs(workdir, capsys, name, content, message):
    (workdir / "metrics" / name).write_text(content)
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

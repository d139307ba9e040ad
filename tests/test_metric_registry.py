"""A new metric is one function and one registry line: it then appears in every output, with no
other edit (real `dvc repro` and `dvc exp show` in a temporary clone whose registry gains a metric)."""

import json

import pandas as pd
import pytest

from conftest import DVC_REMOTE, run, small_clone

pytestmark = pytest.mark.slow

TOY = '''

def precision_at_tenth(ranking: Ranking, lift_k: int) -> float:
    """Share of real errors among the tenth of examples ranked most likely mislabeled."""
    top = ranking.order[-max(1, ranking.order.shape[0] // 10):]
    return float(ranking.is_error[top].mean())


METRICS["precision_at_tenth"] = precision_at_tenth
'''


@pytest.fixture(scope="module")
def repo(tmp_path_factory, published):
    if not DVC_REMOTE.is_dir():
        pytest.fail(f"no DVC remote at {DVC_REMOTE}")
    root = small_clone(tmp_path_factory.mktemp("registry"), published=["roman-numeral"], trained=False)
    registry = root / "labelbench/evaluation/metrics.py"
    registry.write_text(registry.read_text() + TOY)
    run(["dvc", "pull", "-q", "data/published"], root)
    run(["dvc", "repro", "-q"], root)
    return root


def test_new_metric_appears_in_every_output(repo):
    headline = json.loads((repo / "metrics/headline.json").read_text())
    value = headline["precision_at_tenth"]["roman-numeral"]
    assert 0 < value <= 1
    models = json.loads((repo / "metrics/models/roman-numeral.json").read_text())["models"]
    assert all("precision_at_tenth" in m for m in models.values())
    table = pd.read_csv(repo / "metrics/benchmark.csv")
    assert table["precision_at_tenth"].between(0, 1).all()
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert all("precision_at_tenth" in v for v in summary["methods"].values())
    assert "### precision_at_tenth" in (repo / "reports/benchmark.md").read_text()
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "precision_at_tenth" in json.dumps(shown)

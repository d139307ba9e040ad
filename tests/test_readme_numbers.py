"""README's numbers are the committed outputs' (they come from commands anyone can rerun, and go stale when an
output changes on purpose): the headline table against ``metrics/benchmark.csv`` and the HEAD column of the
``dvc metrics diff`` example against ``metrics/headline.json``, both in git, and the number of tests against
what pytest collects."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd

from conftest import REPO_ROOT
from labelbench.data.files import load_yaml
from labelbench.evaluation.ensembles import ENSEMBLE_PREFIX, short_model

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def headline_rows() -> list[list[str]]:
    """The cells of the README's headline table (the block that `make reproduce` prints), dataset filled down."""
    block = README.split("## The headline table", 1)[1].split("```", 2)[1]
    rows, dataset = [], None
    for line in block.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            dataset = cells[0] or dataset
            rows.append([dataset, *cells[1:]])
    return rows


def test_headline_table_is_the_committed_benchmark():
    params = load_yaml(REPO_ROOT / "params.yaml")
    table = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv")
    table = table[(table["method"] == params["score"]) & (table["adjust_pred_probs"] == params["adjust_pred_probs"])]
    rows = headline_rows()
    datasets = list(json.loads((REPO_ROOT / "metrics" / "headline.json").read_text())["auroc"])
    assert list(dict.fromkeys(row[0] for row in rows)) == datasets
    for dataset in datasets:
        own = table[table["dataset"] == dataset]
        ensemble = ENSEMBLE_PREFIX + params["ensemble"]  # a dataset with one model has none
        models = [m for m in own["model"] if not m.startswith(ENSEMBLE_PREFIX) or m == ensemble]
        quoted = [row for row in rows if row[0] == dataset]
        # the model column: short names, and rich cuts the ensemble's name to the column's width
        named = {cell: [m for m in models if short_model(m) == cell
                        or m.startswith(ENSEMBLE_PREFIX) and m.startswith(cell.rstrip("…"))]
                 for cell in (row[1] for row in quoted)}
        assert sorted(sum(named.values(), [])) == sorted(models), (dataset, named)
        for _, cell, auroc, interval, auprc, lift_k, lift_errors, _cv_accuracy in quoted:
            row = own[own["model"] == named[cell][0]].iloc[0]
            digits = len(auroc.split(".")[1])
            assert auroc == f"{row['auroc']:.{digits}f}", (dataset, cell)
            assert interval == f"{row['auroc_lo']:.{digits}f}–{row['auroc_hi']:.{digits}f}", (dataset, cell)
            assert [auprc, lift_k, lift_errors] == [f"{row[m]:.4f}" for m in (
                "auprc", f"lift_at_{params['lift_k']}", "lift_at_num_errors")], (dataset, cell)


def test_metrics_diff_example_head_column_is_the_committed_headline():
    headline = json.loads((REPO_ROOT / "metrics" / "headline.json").read_text())
    quoted = re.findall(r"^metrics/headline\.json\s+(\w+)\.([\w-]+)\s+([\d.]+)\s", README, re.M)
    assert len(quoted) >= 5, "README no longer shows the `dvc metrics diff` example in the form this test reads"
    for metric, dataset, head in quoted:
        assert head == f"{headline[metric][dataset]:.5f}", (metric, dataset)


def test_readme_quotes_the_number_of_tests():
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                               cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    count = re.fullmatch(r"(\d+) tests collected in [\d.]+s", collected).group(1)
    quoted = re.search(r"runs in one process\): ([\d,]+) tests \(`pytest --collect-only -q`",
                       " ".join(README.split()))
    assert quoted, "README no longer quotes the number of tests in the form this test reads"
    assert quoted.group(1).replace(",", "") == count

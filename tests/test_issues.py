"""Ranked label issues: order and scores against cleanlab, suggested labels, class names, the
PNG grid, the stage's outputs, and the report's list read from them."""

from __future__ import annotations

import collections
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from cleanlab.rank import get_label_quality_ensemble_scores
from PIL import Image

from conftest import REPO_ROOT
from labelbench.data.io import DataError, load_dataset
from labelbench.evaluation.issues import (
    CIFAR10_CLASSES, PUBLISHED_CLASSES, ROMAN_CLASSES, class_names, issue_grid, rank_issues, read_issues, top_ranked,
)
from reference import _reference_weights


@pytest.mark.parametrize("dataset", ["roman-numeral", "cifar-10s"])
def test_published_class_names_match_the_image_folders(published, dataset):
    """Each image's folder (train/<class>/...) is, for most rows, the name of its given label."""
    data = load_dataset(published, dataset, models=["resnet18"])
    names = PUBLISHED_CLASSES[dataset]
    folders = collections.Counter(i.split("/")[1] == names[g] for i, g in zip(data.image_ids, data.given_labels))
    assert folders[True] > 0.75 * len(data.image_ids)


def test_ranking_is_cleanlabs_ensemble_and_suggestion_its_weighted_average(published):
    data = load_dataset(published, "roman-numeral")
    models = list(data.pred_probs)
    table = rank_issues(data, method="self_confidence", ensemble="avg_scores_weighted_by_inv_log_loss",
                        classes=ROMAN_CLASSES, rows=300)
    labels, probs = data.given_labels, [data.pred_probs[m] for m in models]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
        expected = get_label_quality_ensemble_scores(labels, probs, method="self_confidence",
                                                     weight_ensemble_members_by="log_loss_search", verbose=False)
    order = np.argsort(1 - expected)[::-1][:300]  # the authors' ranking: last of argsort(1 - score) first
    rows = [data.image_ids.index(i) for i in table["image_id"]]
    assert rows == order.tolist()
    np.testing.assert_allclose(table["score"], expected[order], rtol=0, atol=1e-9)
    for model, p in zip(models, probs):
        np.testing.assert_array_equal(table[f"score:{model}"], p[order, labels[order]])
    averaged = np.average(np.stack(probs), axis=0, weights=_reference_weights("inv_log_loss", labels, probs))
    assert list(table["suggested_label"]) == [ROMAN_CLASSES[k] for k in averaged[order].argmax(axis=1)]
    assert list(table["given_label"]) == [ROMAN_CLASSES[k] for k in labels[order]]
    assert table["rank"].tolist() == list(range(1, 301))
    np.testing.assert_array_equal(table["is_label_error"], data.label_errors[order])
    assert "true_label" not in table  # unknown for roman-numeral


def test_one_model_suggests_its_own_argmax(published):
    data = load_dataset(published, "cifar-10s", models=["resnet18"])
    table = rank_issues(data, method="normalized_margin", ensemble="avg_pred_probs", classes=CIFAR10_CLASSES, rows=50)
    p = data.pred_probs["resnet18"]
    rows = [data.image_ids.index(i) for i in table["image_id"]]
    assert list(table["suggested_label"]) == [CIFAR10_CLASSES[k] for k in p[rows].argmax(axis=1)]
    assert list(table["true_label"]) == [CIFAR10_CLASSES[k] for k in data.true_labels[rows]]
    assert [c for c in table.columns if c.startswith("score:")] == []
    assert np.all(np.diff(table["score"]) >= 0)


def test_class_names_from_classes_txt_published_or_numbers(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    assert class_names("mine", num_classes=2, extras=tmp_path) == ["cat", "dog"]
    with pytest.raises(DataError, match="names 2 classes but the pred_probs have 3"):
        class_names("mine", num_classes=3, extras=tmp_path)
    assert class_names("roman-numeral", num_classes=10, extras=None) == ROMAN_CLASSES
    assert class_names("mine", num_classes=3, extras=tmp_path / "absent") == ["0", "1", "2"]


def test_grid_names_a_missing_image_and_draws_the_others(tmp_path):
    issues = pd.DataFrame({"rank": [1, 2], "image_id": ["a/x.png", "a/y.png"], "given_label": ["cat", "dog"],
                           "suggested_label": ["dog", "cat"], "score": [0.1, 0.2], "is_label_error": [1, 0]})
    (tmp_path / "images/a").mkdir(parents=True)
    Image.new("L", (8, 8), 128).save(tmp_path / "images/a/x.png")
    with pytest.raises(DataError, match="image file not found") as info:
        issue_grid(issues, images=tmp_path / "images", path=tmp_path / "grid.png", count=2, title="t")
    assert "a/y.png" in str(info.value) and not (tmp_path / "grid.png").exists()
    issue_grid(issues, images=tmp_path / "images", path=tmp_path / "grid.png", count=1, title="t")
    assert Image.open(tmp_path / "grid.png").size[0] > 100


def test_report_lists_come_from_the_issue_files(tmp_path):
    from labelbench.evaluation.report import write_markdown

    pd.DataFrame({"rank": [1, 2, 3], "image_id": ["p", "q", "r"], "given_label": ["ix", "v", "i"],
                  "suggested_label": ["x", "iv", "ii"], "score": [0.01, 0.02, 0.5], "is_label_error": [1, 0, 1]}
                 ).to_csv(tmp_path / "bench.csv", index=False)
    pd.DataFrame({"rank": [1], "image_id": ["u"], "given_label": ["cat"], "suggested_label": ["dog"],
                  "score": [0.25]}).to_csv(tmp_path / "mine.csv", index=False)
    top = top_ranked(tmp_path, ["bench", "mine"], top_n=2)
    assert top["dataset"].tolist() == ["bench", "bench", "mine"]
    benchmark = pd.read_csv(REPO_ROOT / "metrics/benchmark.csv").replace({"dataset": {"roman-numeral": "bench"}})
    benchmark = benchmark[benchmark["dataset"] == "bench"]
    filters = pd.DataFrame(columns=["dataset", "model", "filter_by", "f1"])
    summary = {"num_pairs": 1, "methods": {"self_confidence": {"auroc": 1.0}}}
    write_markdown(tmp_path / "report.md", benchmark=benchmark, filters=filters, summary=summary, top=top,
                   figures=[], lift_k=100)
    text = re.sub(" +", " ", (tmp_path / "report.md").read_text())  # the table's cells padded to its columns
    assert "| 1 | `p` | ix | x | yes | 0.01 |" in text and "| 2 | `q` | v | iv | no | 0.02 |" in text
    assert "`r`" not in text  # top_n = 2
    mine = text[text.index("## mine"):]
    assert "Not benchmarked: no known label errors" in mine and "| 1 | `u` | cat | dog | 0.25 |" in mine


def test_unreadable_issue_file_is_named(tmp_path):
    (tmp_path / "x.csv").write_text("rank,image_id\n1,a\n")
    with pytest.raises(DataError, match="missing columns"):
        read_issues(tmp_path / "x.csv")

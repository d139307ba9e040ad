"""The benchmark table reproduces the authors' numbers and the straightforward computation to 1e-9;
its filters, with one confident joint per pair, equal cleanlab's find_label_issues exactly.

The exactness tests need the published pred_probs: without them they fail, they do not skip."""


import os
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues
from sklearn.metrics import f1_score, precision_score, recall_score

from conftest import DATASETS, MODELS, PUBLISHED, REPO_ROOT
from labelbench.config import ParamsError
from labelbench.data.io import load_dataset
from labelbench.evaluation import benchmark as bench
from labelbench.evaluation.benchmark import FILTER_BY, run_benchmark, summarize
from reference import reference_benchmark, reference_filters

SWIN = "swin_base_patch4_window7_224"
KEY = ["dataset", "model", "method", "adjust_pred_probs"]
METRICS = ["auroc", "auprc", "lift_at_100", "lift_at_num_errors"]

# From the authors' notebook outputs (printed to 6 decimals) on their pred_probs.
AUTHORS = [
    ("roman-numeral", SWIN, "self_confidence", False, "auroc", 0.834956),
    ("roman-numeral", SWIN, "self_confidence", False, "lift_at_num_errors", 4.050598),
    ("roman-numeral", SWIN, "self_confidence", False, "lift_at_100", 5.783763),
    ("roman-numeral", SWIN, "self_confidence", True, "auroc", 0.837348),
    ("roman-numeral", SWIN, "self_confidence", True, "lift_at_num_errors", 4.111971),
    ("roman-numeral", SWIN, "self_confidence", True, "lift_at_100", 6.240376),
    ("roman-numeral", SWIN, "normalized_margin", False, "auroc", 0.824684),
    ("roman-numeral", SWIN, "normalized_margin", False, "lift_at_num_errors", 3.886938),
    ("roman-numeral", SWIN, "normalized_margin", True, "auroc", 0.821768),
    ("roman-numeral", SWIN, "normalized_margin", True, "lift_at_100", 4.337823),
    ("roman-numeral", SWIN, "confidence_weighted_entropy", False, "auroc", 0.836609),
    ("roman-numeral", SWIN, "confidence_weighted_entropy", False, "lift_at_num_errors", 4.173344),
    ("roman-numeral", SWIN, "confidence_weighted_entropy", False, "lift_at_100", 6.164274),
    ("cifar-10n-worst", "resnet18", "self_confidence", False, "auroc", 0.963435),
    ("cifar-10n-worst", "resnet18", "self_confidence", True, "auroc", 0.956146),
    ("cifar-10n-worst", "resnet18", "normalized_margin", False, "auroc", 0.966803),
    ("cifar-10n-worst", "resnet18", "normalized_margin", True, "auroc", 0.966067),
]
AUTHORS_FILTERS = [
    ("cifar-10n-worst", SWIN, "prune_by_class", "precision", 0.983322),
    ("cifar-10n-worst", SWIN, "prune_by_class", "recall", 0.897384),
    ("cifar-10n-worst", SWIN, "prune_by_class", "f1", 0.938389),
    ("cifar-10n-worst", SWIN, "predicted_neq_given", "f1", 0.952723),
    ("cifar-10s", SWIN, "both", "f1", 0.987163),
]


@pytest.fixture(scope="module")
def published():
    """The published pred_probs; missing, the exactness tests fail (conftest's fixture would skip)."""
    if not (PUBLISHED / "roman-numeral" / "given_labels.npy").is_file():
        pytest.fail(f"published artifacts not found at {PUBLISHED}: the benchmark's exactness tests need them",
                    pytrace=False)
    return PUBLISHED


@pytest.fixture(scope="module")
def tables(published):
    datasets = {name: (str(published), MODELS) for name in DATASETS}
    return run_benchmark(datasets, workers=2)


def test_shape_and_columns(tables):
    table, filters = tables
    assert list(table.columns) == ["dataset", "model", "method", "adjust_pred_probs", "auroc", "auprc",
                                   "lift_at_100", "lift_at_num_errors"]
    # 4 datasets x (5 models x 7 variants + 6 ensembles x 5 cleanlab variants)
    assert len(table) == 4 * (5 * 7 + 6 * 5)
    assert not table.duplicated(KEY).any()
    assert list(filters.columns) == ["dataset", "model", "filter_by", "precision", "recall", "f1", "num_flagged"]
    assert len(filters) == 4 * 5 * len(FILTER_BY)


@pytest.mark.parametrize("dataset, model, method, adjust, metric, expected", AUTHORS)
def test_authors_numbers(tables, dataset, model, method, adjust, metric, expected):
    table, _ = tables
    row = table[(table.dataset == dataset) & (table.model == model) & (table.method == method)
                & (table.adjust_pred_probs == adjust)]
    assert len(row) == 1
    assert row[metric].item() == pytest.approx(expected, abs=5e-7)


@pytest.mark.parametrize("dataset, model, filter_by, metric, expected", AUTHORS_FILTERS)
def test_authors_filter_numbers(tables, dataset, model, filter_by, metric, expected):
    _, filters = tables
    row = filters[(filters.dataset == dataset) & (filters.model == model) & (filters.filter_by == filter_by)]
    assert row[metric].item() == pytest.approx(expected, abs=5e-7)


def test_every_row_matches_the_straightforward_computation(tables, published):
    table, _ = tables
    reference = reference_benchmark({name: (str(published), MODELS) for name in DATASETS})
    merged = table.merge(reference, on=KEY, suffixes=("", "_ref"), validate="one_to_one")
    assert len(merged) == len(table) == len(reference)
    for metric in METRICS:
        worst = (merged[metric] - merged[f"{metric}_ref"]).abs().max()
        assert worst <= 1e-9, (metric, worst)


def test_filters_match_sklearn_on_a_sample(tables, published):
    _, filters = tables
    data = load_dataset(published, "roman-numeral", models=["resnet18"])
    for filter_by in FILTER_BY:
        flagged = find_label_issues(data.given_labels, data.pred_probs["resnet18"], filter_by=filter_by, n_jobs=1)
        row = filters[(filters.dataset == "roman-numeral") & (filters.model == "resnet18") & (filters.filter_by == filter_by)]
        assert row["num_flagged"].item() == flagged.sum()
        assert row["precision"].item() == pytest.approx(precision_score(data.label_errors, flagged), abs=1e-12)
        assert row["recall"].item() == pytest.approx(recall_score(data.label_errors, flagged), abs=1e-12)
        assert row["f1"].item() == pytest.approx(f1_score(data.label_errors, flagged), abs=1e-12)


def test_committed_tables_are_what_the_code_computes(tables):
    """metrics/benchmark.csv and filters.csv in the repository are reproduced to 1e-12."""
    table, filters = tables
    committed = pd.read_csv(REPO_ROOT / "metrics" / "benchmark.csv", float_precision="round_trip")
    committed = committed[committed.dataset.isin(DATASETS)]
    merged = table.merge(committed, on=KEY, suffixes=("", "_file"), validate="one_to_one")
    assert len(merged) == len(table) == len(committed)
    for metric in METRICS:
        assert (merged[metric] - merged[f"{metric}_file"]).abs().max() <= 1e-12, metric
    committed_filters = pd.read_csv(REPO_ROOT / "metrics" / "filters.csv", float_precision="round_trip")
    committed_filters = committed_filters[committed_filters.dataset.isin(DATASETS)]
    merged = filters.merge(committed_filters, on=["dataset", "model", "filter_by"], suffixes=("", "_file"),
                           validate="one_to_one")
    assert len(merged) == len(filters) == len(committed_filters)
    for column in ("precision", "recall", "f1"):
        assert (merged[column] - merged[f"{column}_file"]).abs().max() <= 1e-12, column
    assert (merged["num_flagged"] == merged["num_flagged_file"]).all()


def test_filters_match_the_straightforward_loop(tables, published):
    """Every filter row equals cleanlab's find_label_issues (default settings) + scikit-learn."""
    _, filters = tables
    datasets = {name: (str(published), MODELS) for name in ("roman-numeral", "cifar-10n-worst")}
    reference = reference_filters(datasets, n_jobs=1)
    ours = filters[filters.dataset.isin(datasets)]
    merged = ours.merge(reference, on=["dataset", "model", "filter_by"], suffixes=("", "_ref"), validate="one_to_one")
    assert len(merged) == len(ours) == len(reference)
    assert (merged["num_flagged"] == merged["num_flagged_ref"]).all()
    for column in ("precision", "recall", "f1"):
        assert (merged[column] - merged[f"{column}_ref"]).abs().max() <= 1e-12, column


def test_summary_normalisation(tables):
    table, _ = tables
    summary = summarize(table, lift_k=100)
    assert summary["num_pairs"] == 20
    methods = summary["methods"]
    assert len(methods) == 7
    for values in methods.values():
        assert all(0 <= v <= 1 for v in values.values())
    # Label-aware scores beat the label-agnostic baselines on real label errors (the paper's finding).
    assert methods["self_confidence"]["auroc"] > methods["entropy"]["auroc"]
    assert methods["self_confidence"]["auroc"] > methods["least_confidence"]["auroc"]
    # Recompute one entry by hand.
    single = table[~table.model.str.startswith("ensemble:")]
    values = []
    for _, pair in single.groupby(["dataset", "model"]):
        low, high = pair.auroc.min(), pair.auroc.max()
        row = pair[(pair.method == "normalized_margin") & ~pair.adjust_pred_probs]
        values.append((row.auroc.item() - low) / (high - low))
    assert methods["normalized_margin"]["auroc"] == pytest.approx(np.mean(values), abs=1e-12)


def test_parallel_equals_serial(published):
    datasets = {"roman-numeral": (str(published), MODELS)}
    a = run_benchmark(datasets, workers=1)
    b = run_benchmark(datasets, workers=2)
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])


def test_precomputed_confident_joint_filters_equal_plain_find_label_issues(published):
    """The stage computes each pair's confident joint once and hands it to find_label_issues: the
    masks equal cleanlab's find_label_issues without it, for every filter, on every published pair."""
    for name in DATASETS:
        data = load_dataset(published, name, models=MODELS[:2])
        for model in MODELS[:2]:
            labels, probs = data.given_labels, data.pred_probs[model]
            confident_joint = compute_confident_joint(labels, probs)
            for filter_by in FILTER_BY:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    plain = find_label_issues(labels, probs, filter_by=filter_by, n_jobs=1)
                ours = bench._find_label_issues(labels, probs, filter_by, confident_joint)
                assert np.array_equal(ours, plain), (name, model, filter_by)


def test_unknown_ensemble_scheme_is_a_value_error(published):
    with pytest.raises(ValueError, match="unknown ensemble scheme"):
        run_benchmark({"roman-numeral": (str(published), MODELS)}, ensembles=["nope"], workers=1)


def test_a_lift_k_beyond_a_dataset_is_refused_before_any_work(published):
    def detectors(loaded):
        raise AssertionError("work started before lift_k was checked")

    with pytest.raises(ParamsError, match=r"lift_k = 1000000: must be in \[1, 2[0-9]{3}\] \(the number of examples of "
                                          r"roman-numeral\)"):
        run_benchmark({"roman-numeral": (str(published), MODELS)}, lift_k=1_000_000, workers=1, detectors=detectors)


@pytest.fixture(scope="module")
def bootstrapped(published):
    from labelbench.evaluation.params import Bootstrap

    datasets = {"roman-numeral": (str(published), MODELS)}
    settings = Bootstrap(resamples=200, seed=0, level=0.95)
    return datasets, settings, run_benchmark(datasets, workers=2, bootstrap=settings)


def test_bootstrap_leaves_the_point_estimates_alone_and_is_deterministic(bootstrapped, published):
    datasets, settings, (table, filters) = bootstrapped
    plain, plain_filters = run_benchmark(datasets, workers=1)
    pd.testing.assert_frame_equal(table[plain.columns], plain)
    pd.testing.assert_frame_equal(filters, plain_filters)
    for metric in METRICS:
        assert [f"{metric}_lo", f"{metric}_hi"] == [c for c in table.columns if c.startswith(metric + "_") and
                                                    c.endswith(("_lo", "_hi")) and "diff" not in c]
        assert set(table[f"{metric}_vs_best"]) <= {"best", "tied", "worse"}
    serial = run_benchmark(datasets, workers=1, bootstrap=settings)[0]
    pd.testing.assert_frame_equal(table, serial)


def test_bootstrap_intervals_are_those_of_the_datasets_resamples(bootstrapped, published):
    """A row's interval recomputed from the dataset's resample weights, and each group's verdicts
    from the paired differences, equal the table's."""
    from labelbench.evaluation.bootstrap import (
        difference_intervals, paired_verdicts, percentile_interval, resample_weights, weighted_metrics,
    )
    from labelbench.evaluation.metrics import Ranking
    from labelbench.evaluation.scores import all_variant_scores

    _, settings, (table, _) = bootstrapped
    data = load_dataset(published, "roman-numeral", models=[SWIN])
    weights = resample_weights(n=data.given_labels.shape[0], resamples=200, seed=0, name="roman-numeral")
    replicates, points, expected, rows = [], [], [], []
    group = table[(table.dataset == "roman-numeral") & (table.model == SWIN)]
    for (method, adjust), scores in all_variant_scores(labels=data.given_labels, pred_probs=data.pred_probs[SWIN]).items():
        row = group[(group.method == method) & (group.adjust_pred_probs == adjust)]
        ranking = Ranking.from_scores(is_error=data.label_errors, scores=scores)
        values = weighted_metrics(ranking, weights, lift_k=100)
        for metric in METRICS:
            lo, hi = percentile_interval(values[metric], level=settings.level)
            assert (row[f"{metric}_lo"].item(), row[f"{metric}_hi"].item()) == (lo, hi)
        replicates.append(values)
        points.append(row["auroc"].item())
        expected.append(row["auroc_vs_best"].item())
        rows.append(row)
    stacked = np.stack([v["auroc"] for v in replicates])
    assert paired_verdicts(points, difference_intervals(points, stacked, level=settings.level)) == expected
    for metric in METRICS:  # each variant's paired difference to the group's first best, variant minus best
        best = next(i for i, row in enumerate(rows) if row[metric].item() == max(r[metric].item() for r in rows))
        for values, row in zip(replicates, rows):
            lo, hi = np.percentile(values[metric] - replicates[best][metric],
                                   [50 * (1 - settings.level), 50 * (1 + settings.level)])
            assert row[f"{metric}_diff_lo"].item() == pytest.approx(lo, abs=1e-12), (metric, row.method.item())
            assert row[f"{metric}_diff_hi"].item() == pytest.approx(hi, abs=1e-12), (metric, row.method.item())
            if row[f"{metric}_vs_best"].item() == "worse":
                assert hi < 0 or lo > 0
    top = group[group.auroc == group.auroc.max()]
    assert set(top["auroc_vs_best"]) == ({"best"} if len(top) == 1 else {"tied"})  # a shared first place is a tie


def test_a_shared_first_place_is_a_tie_for_each(bootstrapped):
    """lift@100 of roman-numeral often has several variants at the same top value: none of them wins."""
    _, _, (table, _) = bootstrapped
    for metric in METRICS:
        for _, group in table.groupby(["dataset", "model"]):
            top = group[group[metric] == group[metric].max()]
            assert (group[f"{metric}_vs_best"] == "best").sum() == (len(top) == 1), (metric, group.iloc[0].model)


def test_summary_counts_wins_ties_losses(bootstrapped):
    _, _, (table, _) = bootstrapped
    summary = summarize(table, lift_k=100)
    for variant, counts in summary["verdicts"].items():
        for metric in METRICS:
            assert sum(counts[metric].values()) == summary["num_pairs"], (variant, metric)
    assert summary["verdicts"]["entropy"]["auroc"]["losses"] == summary["num_pairs"]


def _sigterm_is_default(_) -> bool:
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


_AT_FORK: list[Path] = []  # where a forked child writes its SIGTERM handler, while a test asks for it


def _record_sigterm_at_fork() -> None:
    if _AT_FORK:
        (_AT_FORK[0] / str(os.getpid())).write_text(repr(signal.getsignal(signal.SIGTERM)))


os.register_at_fork(after_in_child=_record_sigterm_at_fork)  # once per process: hooks cannot be removed


def test_benchmark_workers_take_sigterms_default_action_whatever_the_stage_installed(tmp_path):
    """Leaving the pool's block stops the workers by SIGTERM; the stage's handler (sys.exit, inherited through the
    fork) must not be theirs at any moment, or one can stop holding a queue lock that another then waits on
    forever, or, stuck before the pool's initializer ran, ignore SIGTERM while the pool's exit waits on it."""
    stage_handler = lambda signum, _: sys.exit(128 + signum)  # noqa: E731  as files.stage_main installs it
    previous = signal.signal(signal.SIGTERM, stage_handler)
    _AT_FORK.append(tmp_path)
    try:
        with bench.worker_pool(2) as pool:
            assert pool.map(_sigterm_is_default, range(4), chunksize=1) == [True] * 4
        assert signal.getsignal(signal.SIGTERM) is stage_handler  # the stage's own, back
    finally:
        _AT_FORK.clear()
        signal.signal(signal.SIGTERM, previous)
    at_fork = [path.read_text() for path in tmp_path.iterdir()]
    assert at_fork == [repr(signal.SIG_DFL)] * 2  # each worker's, right after its fork

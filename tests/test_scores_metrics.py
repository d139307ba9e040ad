"""Scores match cleanlab; one-sort metrics match scikit-learn and the authors' lift; registry errors."""

import numpy as np
import pytest
from cleanlab.rank import get_label_quality_scores
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import DATASETS, MODELS, REPO_ROOT
from labelbench.config import read_yaml
from labelbench.data.io import load_dataset
from labelbench.evaluation.ensembles import (
    ENSEMBLE_SCHEMES, check_scheme, ensemble_scores, ensemble_weights, score_models, weighted_pred_probs,
)
from labelbench.evaluation.metrics import Ranking, filter_metrics, ranking_metrics
from labelbench.evaluation.scoring import score_dataset
from reference import _reference_weights, reference_lift_at_k, reference_metrics
from test_readme_numbers import headline_rows
from labelbench.evaluation.scores import (
    ALL_VARIANTS,
    CLEANLAB_VARIANTS,
    SCORE_METHODS,
    all_variant_scores,
    label_quality_scores,
    resolve_method,
)


def random_problem(seed, n=500, k=4, ties=False):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    if ties:
        logits = np.round(logits)  # many identical rows -> tied scores
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    labels[:k] = np.arange(k)
    is_error = rng.random(n) < 0.2
    is_error[:2] = [True, False]
    return labels, p, is_error


@pytest.mark.parametrize("seed", [0, 1])
def test_variants_match_cleanlab(seed):
    labels, p, _ = random_problem(seed)
    scores = all_variant_scores(labels=labels, pred_probs=p)
    for method, adjust in CLEANLAB_VARIANTS:
        expected = get_label_quality_scores(labels, p, method=method, adjust_pred_probs=adjust)
        np.testing.assert_allclose(scores[(method, adjust)], expected, rtol=0, atol=1e-12)
        single = label_quality_scores(labels=labels, pred_probs=p, method=method, adjust_pred_probs=adjust)
        np.testing.assert_array_equal(single, scores[(method, adjust)])


def test_baselines_are_label_agnostic_and_in_range():
    labels, p, _ = random_problem(3)
    for method in ("entropy", "least_confidence"):
        a = label_quality_scores(labels=labels, pred_probs=p, method=method)
        b = label_quality_scores(labels=(labels + 1) % 4, pred_probs=p, method=method)
        np.testing.assert_array_equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
    uniform = np.full((2, 4), 0.25)
    np.testing.assert_allclose(label_quality_scores(labels=np.array([0, 1]), pred_probs=uniform, method="entropy"), 0, atol=1e-12)


def test_aliases_and_unknown_method():
    assert resolve_method("margin") == "normalized_margin"
    assert resolve_method("confidence") == "self_confidence"
    assert resolve_method("cwe") == "confidence_weighted_entropy"
    with pytest.raises(ValueError) as info:
        resolve_method("marginal")
    for name in SCORE_METHODS:
        assert name in str(info.value)


@pytest.mark.parametrize("method", ["confidence_weighted_entropy", "cwe", "entropy", "least_confidence"])
def test_adjust_pred_probs_refused_where_unsupported(method):
    with pytest.raises(ValueError, match="adjust_pred_probs=True is not supported"):
        resolve_method(method, adjust_pred_probs=True)


def test_unknown_ensemble_scheme_lists_valid():
    with pytest.raises(ValueError) as info:
        check_scheme("avg")
    assert all(s in str(info.value) for s in ENSEMBLE_SCHEMES)


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_one_sort_metrics_match_sklearn(seed, ties):
    labels, p, is_error = random_problem(seed, ties=ties)
    for method, adjust in ALL_VARIANTS:
        scores = label_quality_scores(labels=labels, pred_probs=p, method=method, adjust_pred_probs=adjust)
        ours = ranking_metrics(is_error=is_error, scores=scores, lift_k=10)
        ref = reference_metrics(is_error=is_error, scores=scores, lift_k=10)
        assert ours.keys() == ref.keys()
        for key in ours:
            assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
        assert ours["auroc"] == pytest.approx(roc_auc_score(is_error, 1 - scores), abs=1e-12)
        assert ours["auprc"] == pytest.approx(average_precision_score(is_error, 1 - scores), abs=1e-12)


# lift@k's oracle, written out by hand. The authors rank by `np.argsort(1 - score)` and take the last k. numpy's
# portable quicksort sorts arrays of at most 16 elements by insertion sort, which is stable: tied error-ness keeps
# index order, so of examples tied at the cut the top k take those with the HIGHEST indices.
#   index        0    1    2    3    4    5    6    7    8    9
TIE_SCORES = [0.9, 0.2, 0.5, 0.5, 0.8, 0.5, 0.1, 0.5, 0.7, 0.5]  # error-ness 1 - score: five tied at 0.5
TIE_ERRORS = [0,   1,   1,   0,   0,   1,   1,   0,   0,   0]    # errors: 1, 2, 5, 6 (base rate 0.4)
# ranked: 6 (0.9), 1 (0.8), then the tie 9, 7, 5, 3, 2, then 8 (0.3), 4 (0.2), 0 (0.1); k = 3..7 cut the tie
TOP_K_BY_HAND = {
    1: {6}, 2: {6, 1}, 3: {6, 1, 9}, 4: {6, 1, 9, 7}, 5: {6, 1, 9, 7, 5}, 6: {6, 1, 9, 7, 5, 3},
    7: {6, 1, 9, 7, 5, 3, 2}, 8: {6, 1, 9, 7, 5, 3, 2, 8}, 9: {6, 1, 9, 7, 5, 3, 2, 8, 4}, 10: set(range(10)),
}
LIFT_BY_HAND = {3: (2 / 3) / 0.4, 4: (2 / 4) / 0.4, 5: (3 / 5) / 0.4, 6: (3 / 6) / 0.4, 7: (4 / 7) / 0.4}

# numpy >= 2 on an x86-64 host with AVX2 or AVX-512 sorts with x86-simd-sort, which is not stable even on 10
# elements: there `np.argsort`'s default tie order is the host's, not the one above (nor the authors' notebooks'),
# hence `kind="stable"` in Ranking.from_scores; HOST_TIE_ORDER says whether this host is one where it matters.
_ERRORNESS = 1 - np.array(TIE_SCORES)
HOST_TIE_ORDER = not np.array_equal(np.argsort(_ERRORNESS), np.argsort(_ERRORNESS, kind="stable"))


def test_lift_oracle_by_hand_is_consistent():
    """The hand-written sets are the stable ranking's last k (and the lifts their error rates over 0.4)."""
    stable = np.argsort(_ERRORNESS, kind="stable")
    is_error = np.array(TIE_ERRORS, dtype=bool)
    for k, top in TOP_K_BY_HAND.items():
        assert set(stable[-k:].tolist()) == top
    for k, lift in LIFT_BY_HAND.items():
        assert is_error[sorted(TOP_K_BY_HAND[k])].mean() / is_error.mean() == pytest.approx(lift, abs=1e-15)


def test_lift_tie_order_at_the_cut_matches_the_hand_written_oracle():
    is_error = np.array(TIE_ERRORS, dtype=bool)
    scores = np.array(TIE_SCORES)
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    for k, top in TOP_K_BY_HAND.items():
        assert ranking.lift_at_k(k) == pytest.approx(is_error[sorted(top)].mean() / 0.4, abs=1e-15), k
    for k, lift in LIFT_BY_HAND.items():
        assert ranking.lift_at_k(k) == pytest.approx(lift, abs=1e-15), k
    assert ranking_metrics(is_error=is_error, scores=scores, lift_k=3)["lift_at_3"] == pytest.approx(5 / 3, abs=1e-15)
    # all tied: the last k indices
    all_tied = Ranking.from_scores(is_error=np.array([1, 0, 0, 1, 0, 0, 0, 1], bool), scores=np.full(8, 0.5))
    assert [all_tied.lift_at_k(k) for k in (1, 2, 3, 4)] == pytest.approx([8 / 3, 4 / 3, 8 / 9, 2 / 3], abs=1e-15)


def test_metric_input_errors():
    with pytest.raises(ValueError, match="at least one error and one clean"):
        ranking_metrics(is_error=np.zeros(5, bool), scores=np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="shapes differ"):
        ranking_metrics(is_error=np.array([True, False]), scores=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="k must be in"):
        Ranking.from_scores(is_error=np.array([True, False]), scores=np.array([0.1, 0.2])).lift_at_k(3)


def test_filter_metrics_match_sklearn():
    from sklearn.metrics import f1_score, precision_score, recall_score

    rng = np.random.default_rng(0)
    is_error, flagged = rng.random(300) < 0.3, rng.random(300) < 0.25
    m = filter_metrics(is_error=is_error, flagged=flagged)
    assert m["precision"] == pytest.approx(precision_score(is_error, flagged), abs=1e-15)
    assert m["recall"] == pytest.approx(recall_score(is_error, flagged), abs=1e-15)
    assert m["f1"] == pytest.approx(f1_score(is_error, flagged), abs=1e-15)
    assert filter_metrics(is_error=is_error, flagged=np.zeros(300, bool))["precision"] == 0.0


@pytest.mark.parametrize("scheme", list(ENSEMBLE_SCHEMES))
@pytest.mark.parametrize("method, adjust", CLEANLAB_VARIANTS)
def test_ensembles_match_cleanlab_or_plain_average(scheme, method, adjust):
    from cleanlab.rank import get_label_quality_ensemble_scores

    labels, p1, _ = random_problem(0)
    _, p2, _ = random_problem(1)
    p2 = (p2 + p1) / 2
    pred_probs_list = [p1, p2]
    ours = ensemble_scores(scheme, labels=labels, pred_probs_list=pred_probs_list, method=method, adjust_pred_probs=adjust)
    averaged, weighting = ENSEMBLE_SCHEMES[scheme]
    if averaged == "scores":
        cleanlab_name = {"uniform": "uniform", "accuracy": "accuracy", "inv_log_loss": "log_loss_search"}[weighting]
        expected = get_label_quality_ensemble_scores(
            labels, pred_probs_list, method=method, adjust_pred_probs=adjust,
            weight_ensemble_members_by=cleanlab_name, verbose=False)
    else:

        weights = _reference_weights(weighting, labels, pred_probs_list)
        avg = np.average(np.stack(pred_probs_list), axis=0, weights=weights)
        expected = get_label_quality_scores(labels, avg, method=method, adjust_pred_probs=adjust)
    if averaged == "scores":  # the same arithmetic as cleanlab's, so the same bits
        np.testing.assert_array_equal(ours, expected)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_score_models_ensembles_two_or_more_models_or_one_when_asked():
    labels, p1, _ = random_problem(0)
    _, p2, _ = random_problem(1)
    scheme, args = "avg_pred_probs_weighted_by_accuracy", dict(labels=labels, method="self_confidence",
                                                                adjust_pred_probs=True)
    both = score_models({"a": p1, "b": p2}, ensemble=scheme, **args)
    assert list(both.columns) == ["a", "b", f"ensemble:{scheme}"]
    np.testing.assert_array_equal(both.members["b"], label_quality_scores(pred_probs=p2, **args))
    np.testing.assert_array_equal(both.ranking, ensemble_scores(scheme, pred_probs_list=[p1, p2], **args))
    np.testing.assert_array_equal(both.weights, ensemble_weights(scheme, labels=labels, pred_probs_list=[p1, p2]))
    np.testing.assert_array_equal(both.pred_probs, weighted_pred_probs(both.weights, [p1, p2]))
    one = score_models({"a": p1}, ensemble=scheme, **args)
    assert list(one.columns) == ["a"] and one.ensemble is None and one.weights is None
    assert one.ranking is one.members["a"] and one.pred_probs is p1
    forced = score_models({"a": p1}, ensemble=scheme, always_ensemble=True, **args)
    assert list(forced.columns) == ["a", f"ensemble:{scheme}"]


def test_log_loss_is_sklearns_bit_for_bit(published):
    import warnings

    from cleanlab.internal.constants import CLIPPING_LOWER_BOUND as cleanlab_bound
    from sklearn.metrics import log_loss as sklearn_log_loss

    from labelbench.evaluation.ensembles import CLIPPING_LOWER_BOUND, log_loss
    from labelbench.data.io import load_dataset

    assert CLIPPING_LOWER_BOUND == cleanlab_bound
    data = load_dataset(published, "cifar-10s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in data.pred_probs.values():
            assert log_loss(data.given_labels, p) == sklearn_log_loss(data.given_labels, p)
        labels, p, _ = random_problem(5)
        p[0] = [1.0, 0.0, 0.0, 0.0]
        labels[0] = 1  # a zero probability on the given label: clipped, as in scikit-learn
        assert log_loss(labels, p) == sklearn_log_loss(labels, p)
    with pytest.raises(ValueError, match="every one of the 4 classes"):
        log_loss(np.zeros(5, np.int64), np.full((5, 4), 0.25))


@pytest.mark.parametrize("seed, ties", [(0, False), (3, True)])
def test_curve_tables_match_sklearn(seed, ties):
    from sklearn.metrics import precision_recall_curve, roc_curve

    from labelbench.evaluation.evaluate import curve_tables

    labels, p, is_error = random_problem(seed, ties=ties)
    scores = label_quality_scores(labels=labels, pred_probs=p, method="self_confidence")
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    precision, recall = ranking.pr_curve()
    sk_precision, sk_recall, _ = precision_recall_curve(is_error, 1 - scores, drop_intermediate=False)
    # scikit-learn: ascending thresholds, stops at full recall, then appends (1, 0)
    n = sk_precision.shape[0] - 1
    np.testing.assert_allclose(precision[:n], sk_precision[:-1][::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall[:n], sk_recall[:-1][::-1], rtol=0, atol=1e-12)
    assert recall[n - 1] == 1.0
    fpr, tpr = ranking.roc_curve()
    sk_fpr, sk_tpr, _ = roc_curve(is_error, 1 - scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
    # the resampled tables DVC plots: best precision at recall >= r, best TPR at FPR <= f
    import pandas as pd

    frame = pd.DataFrame({"is_label_error": is_error.astype(int), "m": scores})
    tables = curve_tables(frame, dataset="toy", points=11)
    assert all(set(table["dataset"]) == {"toy"} for table in tables.values())  # the chart heading in `dvc plots`
    for r, value in zip(tables["pr"]["recall"], tables["pr"]["precision"]):
        assert value == pytest.approx(sk_precision[:-1][sk_recall[:-1] >= r - 1e-12].max(), abs=1e-12)
    for f, value in zip(tables["roc"]["fpr"], tables["roc"]["tpr"]):
        assert value == pytest.approx(sk_tpr[sk_fpr <= f + 1e-12].max(), abs=1e-12)
    n = len(labels)  # lift@k on about 30 k from 10 to N, spaced geometrically
    assert tables["lift"]["k"].tolist() == sorted({int(k) for k in np.geomspace(10, n, num=30)})
    assert tables["lift"]["k"].iloc[-1] == n and tables["lift"]["lift"].iloc[-1] == pytest.approx(1.0)
    for k, value in zip(tables["lift"]["k"], tables["lift"]["lift"]):
        assert value == pytest.approx(reference_lift_at_k(is_error, 1 - scores, int(k)), abs=1e-12)



@pytest.mark.parametrize("dataset", DATASETS)
def test_cv_accuracies_are_each_models_and_the_weighted_ensembles(published, dataset):
    """cv_accuracy of `scoring.score_dataset` (metrics/models/<dataset>.json, README's headline table): each model's
    share of argmax(pred_probs) equal to the given label, and the ensemble's of the pred_probs averaged with its
    scheme's weights (recomputed by the naive search; data/scores/<dataset>.json lists them)."""
    scheme = read_yaml(REPO_ROOT / "params.yaml")["ensemble"]
    assert scheme == "avg_scores_weighted_by_inv_log_loss"  # the weighting recomputed below
    data = load_dataset(published, dataset, models=MODELS)
    labels, pred_probs = data.given_labels, [data.pred_probs[m] for m in MODELS]
    accuracies = [(p.argmax(axis=1) == labels).mean() for p in pred_probs]
    weights = _reference_weights("inv_log_loss", labels, pred_probs)
    ensemble = (np.average(np.stack(pred_probs), axis=0, weights=weights).argmax(axis=1) == labels).mean()
    expected = {**dict(zip(MODELS, accuracies)), f"ensemble:{scheme}": ensemble}
    _, info = score_dataset(data, models=MODELS, method="self_confidence", adjust_pred_probs=False, ensemble=scheme)
    assert info["cv_accuracy"] == pytest.approx(expected, abs=1e-15)
    assert info["ensemble_weights"] == pytest.approx(dict(zip(MODELS, weights)), abs=1e-12)  # data/scores/<d>.json
    # README's rows of the dataset: the models in params' order, then the ensemble
    assert [row[-1] for row in headline_rows() if row[0] == dataset] == [f"{v:.4f}" for v in expected.values()]
    # the data tell the weighting apart: equal weights, or one member's accuracy, would give other numbers
    assert ensemble != (np.mean(np.stack(pred_probs), axis=0).argmax(axis=1) == labels).mean()
    assert ensemble not in accuracies

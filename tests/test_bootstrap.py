"""The paired bootstrap: exact point estimates, weighted metrics equal to scikit-learn's with
sample weights, intervals that agree with scipy.stats.bootstrap, widths that agree with DeLong's
normal approximation on the published data, and 95% coverage of a known AUROC (slow)."""

import re

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import MODELS
from labelbench.data.io import load_dataset
from labelbench.evaluation.bootstrap import (
    difference_intervals, interval_names, paired_verdicts, percentile_interval, resample_weights, weighted_metrics,
)
from labelbench.evaluation.metrics import Ranking, ranking_metrics
from labelbench.evaluation.params import Bootstrap
from labelbench.evaluation.scores import all_variant_scores
from reference import reference_lift_at_k


def _expanded_lift(is_error, ranking, counts, k):
    """lift@k of the resampled multiset written out: each example repeated by its count, in the
    ranking's order (most likely erroneous first), top k copies."""
    descending = ranking.order[::-1]
    copies = np.repeat(descending, counts[descending].astype(int))
    k = int(is_error[copies].sum()) if k is None else k
    return is_error[copies[:k]].mean() / is_error[copies].mean()


def _synthetic(n, *, seed, ties):
    rng = np.random.default_rng(seed)
    is_error = rng.random(n) < 0.25
    scores = rng.random(n) - 0.3 * is_error
    return is_error, (np.round(scores, 2) if ties else scores)


@pytest.mark.parametrize("ties", [False, True])
def test_all_ones_equal_the_point_estimates_synthetic(ties):
    is_error, scores = _synthetic(3000, seed=1, ties=ties)
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    ones = weighted_metrics(ranking, np.ones((3000, 2), np.float32), lift_k=100)
    for name, value in ranking_metrics(is_error=is_error, scores=scores, lift_k=100).items():
        assert np.abs(ones[name] - value).max() <= 1e-12, name


def test_all_ones_equal_the_point_estimates_published(published):
    """Every variant of a published pair (roman-numeral, and one CIFAR pair with its 50,000 rows)."""
    for dataset in ("roman-numeral", "cifar-10n-worst"):
        data = load_dataset(published, dataset, models=["resnet18"])
        ones = np.ones((data.given_labels.shape[0], 1), np.float32)
        for variant, scores in all_variant_scores(labels=data.given_labels, pred_probs=data.pred_probs["resnet18"]).items():
            ranking = Ranking.from_scores(is_error=data.label_errors, scores=scores)
            weighted = weighted_metrics(ranking, ones, lift_k=100)
            for name, value in ranking_metrics(is_error=data.label_errors, scores=scores, lift_k=100).items():
                assert abs(weighted[name][0] - value) <= 1e-12, (dataset, variant, name)


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_sklearn_with_sample_weights_and_the_expanded_multiset(ties):
    is_error, scores = _synthetic(1500, seed=2, ties=ties)
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    weights = resample_weights(n=1500, resamples=6, seed=3, name="toy")
    weighted = weighted_metrics(ranking, weights, lift_k=50)
    for b in range(weights.shape[1]):
        counts = weights[:, b]
        assert weighted["auroc"][b] == pytest.approx(roc_auc_score(is_error, 1 - scores, sample_weight=counts), abs=1e-12)
        assert weighted["auprc"][b] == pytest.approx(
            average_precision_score(is_error, 1 - scores, sample_weight=counts), abs=1e-12)
        assert weighted["lift_at_50"][b] == pytest.approx(_expanded_lift(is_error, ranking, counts, 50), abs=1e-12)
        assert weighted["lift_at_num_errors"][b] == pytest.approx(
            _expanded_lift(is_error, ranking, counts, None), abs=1e-12)


def test_resample_weights_are_multinomial_counts_and_deterministic():
    weights = resample_weights(n=500, resamples=600, seed=0, name="a")
    assert weights.shape == (500, 600) and weights.dtype == np.uint8 and weights.flags.c_contiguous
    assert (weights.sum(axis=0) == 500).all()
    assert abs(weights.mean() - 1) < 1e-12 and abs(weights.var() - (1 - 1 / 500)) < 0.02
    assert np.array_equal(weights, resample_weights(n=500, resamples=600, seed=0, name="a"))
    assert not np.array_equal(weights, resample_weights(n=500, resamples=600, seed=0, name="b"))
    assert not np.array_equal(weights, resample_weights(n=500, resamples=600, seed=1, name="a"))


def test_weights_are_checked():
    ranking = Ranking.from_scores(is_error=np.array([True, False, False]), scores=np.array([0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match=r"shape \(2, 4\) do not fit 3 examples"):
        weighted_metrics(ranking, np.ones((2, 4), np.uint8), lift_k=1)
    with pytest.raises(ValueError, match="integer counts in 0..255"):
        weighted_metrics(ranking, np.full((3, 4), 0.5), lift_k=1)
    with pytest.raises(ValueError, match=r"lift_k must be in \[1, 3\]"):
        weighted_metrics(ranking, np.ones((3, 4), np.uint8), lift_k=4)


def test_settings_are_validated():  # the params block's rules (benchmark.bootstrap)
    with pytest.raises(ValueError, match="resamples\n  Input should be greater than or equal to 1"):
        Bootstrap(resamples=0, seed=0, level=0.95)
    with pytest.raises(ValueError, match="level\n  Input should be less than 1"):
        Bootstrap(resamples=1, seed=0, level=1.0)
    assert interval_names(100) == ["auroc", "auprc", "lift_at_100", "lift_at_num_errors"]


def test_paired_verdicts():
    rng = np.random.default_rng(0)
    base = rng.normal(size=1000)
    replicates = np.stack([base, base - 0.01 + rng.normal(scale=0.001, size=1000),
                           base - 0.001 + rng.normal(scale=0.01, size=1000), base.copy()])
    for points, expected in [([1.0, 0.99, 0.999, 1.0], ["tied", "worse", "tied", "tied"]),
                             ([1.0, 0.99, 0.999, 0.5], ["best", "worse", "tied", "tied"])]:  # one alone at the top
        # (the last's replicates are the first's: tied whatever its point estimate)
        points = np.array(points)
        assert paired_verdicts(points, difference_intervals(points, replicates, level=0.95)) == expected


def _scipy_interval(statistic, data, *, resamples, seed):
    result = stats.bootstrap(data, statistic, paired=True, vectorized=False, method="percentile",
                             n_resamples=resamples, confidence_level=0.95, random_state=seed)
    return result.confidence_interval.low, result.confidence_interval.high


def _quantile_band(replicates: np.ndarray, q: float) -> tuple[float, float]:
    """Where the q-quantile of B replicates of the same distribution falls, from another run too:
    order statistics B q +- 4 sqrt(2 B q (1 - q)) of ours (binomial Monte-Carlo error of both runs;
    robust to the lumpy distributions of lift)."""
    ordered = np.sort(replicates)
    b = ordered.shape[0]
    spread = 4 * np.sqrt(2 * b * q * (1 - q))
    return ordered[max(0, int(np.floor(b * q - spread)))], ordered[min(b - 1, int(np.ceil(b * q + spread)))]


def test_intervals_agree_with_scipy_bootstrap():
    """N = 200 without ties: each end of scipy's 95% interval, and of ours, lies within the Monte-Carlo band of
    that quantile of our replicates."""
    n, resamples = 200, 2000
    is_error, scores = _synthetic(n, seed=4, ties=False)
    ranking = Ranking.from_scores(is_error=is_error, scores=scores)
    ours = weighted_metrics(ranking, resample_weights(n=n, resamples=resamples, seed=5, name="scipy"), lift_k=20)
    statistics = {
        "auroc": lambda e, s: roc_auc_score(e, 1 - s),
        "auprc": lambda e, s: average_precision_score(e, 1 - s),
        "lift_at_20": lambda e, s: reference_lift_at_k(e, 1 - s, 20),
        "lift_at_num_errors": lambda e, s: reference_lift_at_k(e, 1 - s, int(e.sum())),
    }
    for name, statistic in statistics.items():
        ref_lo, ref_hi = _scipy_interval(statistic, (is_error, scores), resamples=resamples, seed=6)
        lo, hi = percentile_interval(ours[name], level=0.95)
        for q, ref, end in ((0.025, ref_lo, lo), (0.975, ref_hi, hi)):
            low, high = _quantile_band(ours[name], q)
            assert low <= ref <= high and low <= end <= high, (name, q, ref, end, low, high)
        assert (hi - lo) == pytest.approx(ref_hi - ref_lo, rel=0.2), name


def delong_se(is_error: np.ndarray, errorness: np.ndarray) -> float:
    """DeLong's standard error of the AUROC (structural components via midranks; the oracle)."""
    positives, negatives = errorness[is_error], errorness[~is_error]
    m, n = positives.shape[0], negatives.shape[0]
    all_ranks = stats.rankdata(np.r_[positives, negatives])
    v10 = (all_ranks[:m] - stats.rankdata(positives)) / n  # share of negatives below each positive
    v01 = 1 - (all_ranks[m:] - stats.rankdata(negatives)) / m  # share of positives above each negative
    return float(np.sqrt(v10.var(ddof=1) / m + v01.var(ddof=1) / n))


def test_auroc_widths_agree_with_delong_on_the_published_data(published):
    """Width of the 95% percentile interval (B = 1,000) within 10% of 2 x 1.96 x DeLong's SE, for
    the self_confidence score of every published dataset × model."""
    for dataset in ("roman-numeral", "cifar-10n-agg", "cifar-10n-worst", "cifar-10s"):
        data = load_dataset(published, dataset, models=MODELS)
        weights = resample_weights(n=data.given_labels.shape[0], resamples=1000, seed=0, name=dataset)
        for model in MODELS:
            scores = all_variant_scores(labels=data.given_labels, pred_probs=data.pred_probs[model],
                                        variants=[("self_confidence", False)])[("self_confidence", False)]
            ranking = Ranking.from_scores(is_error=data.label_errors, scores=scores)
            lo, hi = percentile_interval(weighted_metrics(ranking, weights, lift_k=100)["auroc"], level=0.95)
            delong = 2 * stats.norm.ppf(0.975) * delong_se(data.label_errors, 1 - scores)
            assert abs((hi - lo) / delong - 1) <= 0.10, (dataset, model, hi - lo, delong)


@pytest.mark.slow
def test_coverage_of_a_known_auroc():
    """1,000 simulations, scores with a known AUROC (errors' error-ness ~ N(1.2, 1), clean ~ N(0, 1):
    AUROC = Phi(1.2 / sqrt 2)); the 95% intervals (B = 1,000) cover it in 95% +- 2%."""
    truth = stats.norm.cdf(1.2 / np.sqrt(2))
    rng = np.random.default_rng(7)
    n, covered, simulations = 400, 0, 1000
    weights = resample_weights(n=n, resamples=1000, seed=8, name="coverage")
    for _ in range(simulations):
        is_error = rng.random(n) < 0.3
        errorness = rng.normal(size=n) + 1.2 * is_error
        ranking = Ranking.from_scores(is_error=is_error, scores=1 - errorness)
        lo, hi = percentile_interval(weighted_metrics(ranking, weights, lift_k=10)["auroc"], level=0.95)
        covered += lo <= truth <= hi
    assert 0.93 <= covered / simulations <= 0.97, covered


@pytest.mark.parametrize("key, value, message", [
    ("resamples", 0, "benchmark.bootstrap.resamples = 0"),
    ("resamples", 10**9, "benchmark.bootstrap.resamples = 1000000000: Input should be less than or equal to 100000"),
    ("level", 1.5, "benchmark.bootstrap.level = 1.5"),
    ("seed", -1, "benchmark.bootstrap.seed = -1"),
    ("ensembles", ["avg_scores", "avg_scores"], "benchmark.ensembles = ['avg_scores', 'avg_scores']: Value error, "
                                                "names must be unique"),
])
def test_bootstrap_params_are_validated(tmp_path, key, value, message):
    """The stage that reads ``benchmark`` refuses a bad value, naming the key."""
    import yaml

    from conftest import REPO_ROOT
    from labelbench.config import ParamsError, load_params
    from labelbench.evaluation.params import BenchmarkParams

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    (params["benchmark"] if key == "ensembles" else params["benchmark"]["bootstrap"])[key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=re.escape(message)):
        load_params(BenchmarkParams, tmp_path / "params.yaml")
    good = load_params(BenchmarkParams, REPO_ROOT / "params.yaml").benchmark.bootstrap
    assert (good.resamples, good.seed, good.level) == (1000, 0, 0.95)

"""Paired bootstrap over examples: percentile intervals of the ranking metrics, and which variants
are statistically tied with the best (docs/bootstrap.md).

One resample is a multiset of the N examples drawn with replacement, stored as integer counts (sum N).
:func:`resample_weights` draws one (N, B) matrix per dataset, seeded by the params seed and the dataset's name,
and *every* score vector of that dataset is measured on the same B resamples: that makes differences paired.

The metrics of a resample come from the score vector's one sort (:class:`Ranking`), never a re-sort: one pass
down the ranking (highest error-ness first, compiled with numba) keeps, per resample, the running weight and error
weight. With all weights 1 they equal the point estimates of :mod:`labelbench.evaluation.metrics` (to 1e-12;
tested): AUROC is the weighted Mann-Whitney (ties count one half), AUPRC scikit-learn's
``average_precision_score`` with ``sample_weight``; lift@k ranks the multiset in the original order
``np.argsort(1 - scores, kind="stable")``, an example drawn c times being c consecutive copies that the cut
may split; lift@#errors takes k = the resample's own number of error copies.

A resample without errors or without clean examples has no metric (NaN; not reached at these sizes).
Percentile intervals use ``np.quantile`` (linear), as ``scipy.stats.bootstrap(method='percentile')`` does.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from labelbench.evaluation.metrics import Ranking, metric_names

#: Resamples drawn at once (bounds the int64 draws and their counts: 2 x 8 x CHUNK x N bytes).
CHUNK = 250


def resample_weights(*, n: int, resamples: int, seed: int, name: str) -> np.ndarray:
    """Multinomial counts, (n, resamples) uint8: column b holds how often each of the n examples is
    drawn in resample b (each column sums to n). Deterministic in (seed, name): the params seed and a stable
    hash of the dataset name seed the draws."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), digest]))
    counts = np.empty((resamples, n), dtype=np.uint8)
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        draws = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        draws += n * np.arange(rows)[:, None]  # row r's draws counted in bins r * n .. r * n + n - 1
        drawn = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        if drawn.max() > 255:  # P < 1e-400 at any n: Poisson(1) tail
            raise ValueError(f"bootstrap: an example drawn {drawn.max()} times does not fit uint8")
        counts[start:start + rows] = drawn
    return np.ascontiguousarray(counts.T)


def _replicates(rows, is_error, group_start, group_end, group_error, weights, lift_k, out):
    """The pass down one ranking for every resample (compiled by :func:`compiled_pass`).

    rows (n,) int64: examples in descending error-ness; is_error, group_start, group_end,
    group_error (n,) bool per position (an error; first / last of its tie group; its tie group
    holds an error); weights (n, B) uint8 counts by example; out (4, B) float64: AUROC, AUPRC,
    lift@lift_k, lift@#errors. Every sum of counts is an integer, exact in float64, so the order of
    the additions matters only for AUPRC, which adds the error copies in ranking order as
    ``Ranking``'s curve does."""
    n, resamples = weights.shape
    total = weights[rows[is_error]].sum(axis=0).astype(np.float64)  # error copies T (integers: exact in any order)
    run_all = np.zeros(resamples)
    run_err = np.zeros(resamples)
    start_all = np.zeros(resamples)
    start_err = np.zeros(resamples)
    pairs = np.zeros(resamples)  # sum over error copies of 2 x clean above + clean in its tie group
    precision_sum = np.zeros(resamples)
    top_k = np.zeros(resamples)
    top_t = np.zeros(resamples)
    first = 0
    for p in range(n):
        w = weights[rows[p]]
        if group_start[p]:
            first = p
            if group_error[p]:
                start_all[:] = run_all
                start_err[:] = run_err
        if is_error[p]:
            for c in range(resamples):
                x = np.float64(w[c])
                before = run_all[c]
                run_all[c] = before + x
                run_err[c] += x
                # the part of this example's copies inside the top k (top T) copies
                top_k[c] += min(x, max(0.0, lift_k - before))
                top_t[c] += min(x, max(0.0, total[c] - before))
        else:
            for c in range(resamples):
                run_all[c] += w[c]
        if group_end[p] and group_error[p]:
            for c in range(resamples):
                errors = run_err[c] - start_err[c]
                clean = run_all[c] - start_all[c] - errors
                pairs[c] += errors * (2.0 * (start_all[c] - start_err[c]) + clean)
            for q in range(first, p + 1):
                if is_error[q]:
                    wq = weights[rows[q]]
                    for c in range(resamples):
                        precision_sum[c] += wq[c] * (run_err[c] / max(run_all[c], 1.0))
    for c in range(resamples):
        errors = total[c]
        clean = n - errors
        out[0, c] = (clean * errors - 0.5 * pairs[c]) / (errors * clean)
        out[1, c] = precision_sum[c] / errors
        out[2, c] = (top_k[c] / lift_k) / (errors / n)
        out[3, c] = (top_t[c] / errors) / (errors / n)


@functools.cache
def compiled_pass():
    """:func:`_replicates` compiled for the argument types :func:`weighted_metrics` passes (numba's
    on-disk cache beside this module: compiled once per checkout, seconds; then loaded). Called
    before forking workers, so that they inherit it."""
    import numba

    compiled = numba.njit(cache=True, nogil=True, error_model="numpy")(_replicates)
    flags = np.ones(1, dtype=bool)
    compiled(np.zeros(1, dtype=np.int64), flags, flags, flags, flags, np.ones((1, 1), dtype=np.uint8), 1.0,
             np.empty((len(WEIGHTED), 1)))
    return compiled


#: Metrics with a weighted counterpart (same names as the registry), by row of the pass's output.
#: A registry metric without one here gets no interval columns.
WEIGHTED: dict[str, int] = {"auroc": 0, "auprc": 1, "lift_at_{k}": 2, "lift_at_num_errors": 3}


def weighted_metrics(ranking: Ranking, weights: np.ndarray, *, lift_k: int) -> dict[str, np.ndarray]:
    """Each metric of :data:`WEIGHTED` for every resample: ``weights`` (N, B) integer counts 0..255
    (rows in the examples' original order, one resample per column; :func:`resample_weights`).
    Returns ``{name: (B,) float64}``."""
    weights = np.asarray(weights)
    n = ranking.order.shape[0]
    if weights.ndim != 2 or weights.shape[0] != n:
        raise ValueError(f"bootstrap weights of shape {weights.shape} do not fit {n} examples")
    if weights.dtype != np.uint8:
        if not (np.isin(weights, np.arange(256))).all():
            raise ValueError("bootstrap weights must be integer counts in 0..255")
        weights = weights.astype(np.uint8)
    if not 0 < int(lift_k) <= n:
        raise ValueError(f"lift_k must be in [1, {n}], got {lift_k}")
    descending, group_start = ranking.ties()
    is_error = ranking.is_error[descending]
    group_end = np.r_[group_start[1:], True]
    group = np.cumsum(group_start) - 1
    group_error = np.bincount(group, weights=is_error)[group] > 0
    out = np.empty((len(WEIGHTED), weights.shape[1]))
    flags = [np.ascontiguousarray(a, dtype=bool) for a in (is_error, group_start, group_end, group_error)]
    compiled_pass()(np.ascontiguousarray(descending, dtype=np.int64), *flags, np.ascontiguousarray(weights),
                    float(lift_k), out)
    return {name.format(k=int(lift_k)): out[row] for name, row in WEIGHTED.items()}


def interval_names(lift_k: int) -> list[str]:
    """The registry metrics (names for this ``lift_k``) that get intervals, in registry order.

    >>> interval_names(100)
    ['auroc', 'auprc', 'lift_at_100', 'lift_at_num_errors']
    """
    weighted = {name.format(k=int(lift_k)) for name in WEIGHTED}
    return [name for name in metric_names(lift_k) if name in weighted]


def percentile_interval(replicates: np.ndarray, *, level: float) -> tuple[float, float]:
    """(lo, hi): the (1 - level) / 2 and (1 + level) / 2 quantiles of ``replicates`` (B,) (NaNs dropped)."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def difference_intervals(points: np.ndarray, replicates: np.ndarray, *, level: float) -> list[tuple[float, float]]:
    """Per variant, the percentile interval of its paired difference to the best (the first largest of ``points``
    (V,)): ``replicates[v] - replicates[best]`` for ``replicates`` (V, B); (0, 0) for the best itself."""
    best = int(np.argmax(points))
    return [percentile_interval(r - replicates[best], level=level) for r in replicates]


def paired_verdicts(points: np.ndarray, intervals: list[tuple[float, float]]) -> list[str]:
    """For V variants measured on the same resamples: ``points`` (V,) point estimates and ``intervals``, their
    :func:`difference_intervals`. The best is the largest point estimate: ``best`` when one variant alone has it,
    and ``tied`` for each when several share it (a shared first place is a tie, not a win for each). Any other
    variant whose paired difference to the best has an interval containing 0 is ``tied``; else ``worse``."""
    points = np.asarray(points, dtype=np.float64)
    top = points >= points.max()
    return [("best" if top.sum() == 1 else "tied") if is_top else ("tied" if lo <= 0 <= hi else "worse")
            for is_top, (lo, hi) in zip(top, intervals)]

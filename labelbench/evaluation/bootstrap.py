"""Paired bootstrap over examples: percentile intervals of the ranking metrics, and which variants
are statistically tied with the best.

One resample is a multiset of the N examples drawn with replacement; it is stored as integer
weights ``counts`` (N,), how often each example was drawn (sum N). :func:`resample_weights` draws
one (B, N) matrix per dataset, seeded by the params seed and the dataset's name, and *every*
score vector of that dataset (each model, variant and ensemble) is measured on the same B
resamples: that is what makes differences between variants paired.

The metrics of a weighted multiset come from the score vector's one sort (:class:`Ranking`),
never a re-sort: cumulative weights in that order give everything. With all weights 1 they equal
the point estimates of :mod:`labelbench.evaluation.metrics` (to 1e-12; tested):

* **AUROC**: weighted Mann-Whitney, ties in error-ness count one half (as scikit-learn).
* **AUPRC**: weighted average precision (scikit-learn's ``average_precision_score`` with
  ``sample_weight``): precision at each distinct threshold, weighted by the error weight there.
* **lift@k** (k fixed): the resampled multiset is ranked in the original order
  ``np.argsort(1 - scores)`` (so ties at the cut fall as in the point estimate); its top k copies
  (an example drawn c times is c consecutive copies; the cut may split them) hold E errors;
  lift = (E / k) / (errors in the resample / N).
* **lift@#errors**: the same with k = the resample's own number of error copies.

A resample without errors or without clean examples has no metric (NaN; not reached at these
sizes). Percentile intervals use ``np.quantile`` (linear), as ``scipy.stats.bootstrap(method=
'percentile')`` does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from labelbench.evaluation.metrics import Ranking, metric_names

#: Resamples handled at once (bounds the temporaries: about 40 x CHUNK x (errors + queries) bytes).
CHUNK = 250


@dataclass(frozen=True)
class BootstrapSettings:
    """``resamples`` B >= 1, ``seed``, ``level`` in (0, 1) (0.95: 2.5th to 97.5th percentile)."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self):
        if int(self.resamples) < 1 or not 0 < float(self.level) < 1:
            raise ValueError(f"bootstrap: resamples must be >= 1 and level in (0, 1), got {self}")


def dataset_seed(seed: int, name: str) -> np.random.SeedSequence:
    """Seed of one dataset's resamples: the params seed and a stable hash of the dataset name."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.SeedSequence([int(seed), digest])


def resample_weights(*, n: int, resamples: int, seed: int, name: str) -> tuple[np.ndarray, ...]:
    """Multinomial counts as float32 blocks of up to :data:`CHUNK` resamples, each (n, C): column b
    of a block holds how often each of the n examples is drawn in that resample (each column sums
    to n; float32 holds these counts and their sums exactly). Deterministic in (seed, name)."""
    if n >= 2 ** 22:
        raise ValueError(f"bootstrap: {n} examples; float32 sums are exact below 2**22 (x4 headroom)")
    rng = np.random.default_rng(dataset_seed(seed, name))
    blocks = []
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        draws = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        draws += (np.arange(rows, dtype=np.int64) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        blocks.append(np.ascontiguousarray(counts.T, dtype=np.float32))
    return tuple(blocks)


def _cumsum_rows(values: np.ndarray) -> np.ndarray:
    """(m + 1, C) float32: a zero row, then the running sum of the rows of ``values`` (m, C)
    (blocked: numpy's accumulate along axis 0 is several times slower)."""
    m, columns = values.shape
    size = max(1, int(np.sqrt(m)))
    blocks = -(-m // size)
    out = np.zeros((1 + blocks * size, columns), dtype=np.float32)
    body = out[1:].reshape(blocks, size, columns)
    out[1:m + 1] = values
    for i in range(1, size):
        np.add(body[:, i], body[:, i - 1], out=body[:, i])
    offsets = np.cumsum(body[:, -1], axis=0)
    body[1:] += offsets[:-1, None, :]
    return out[:m + 1]


class _Layout:
    """One ranking's positions in descending error-ness (the order of ``Ranking._curve``) and the
    sparse matrix that sums a resample's weights between consecutive query positions."""

    def __init__(self, ranking: Ranking):
        import scipy.sparse

        descending = ranking.order[::-1]
        values = ranking.errorness[descending]
        hits = ranking.is_error[descending]
        n = values.shape[0]
        errors = np.flatnonzero(hits)  # (n1,) positions of the errors
        new_group = np.r_[True, values[1:] != values[:-1]]
        group_id = np.cumsum(new_group) - 1
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:] - 1, n - 1]
        end = ends[group_id[errors]]  # last position of each error's tie group
        before = starts[group_id[errors]] - 1  # last position before the group (-1: none)
        # Query positions: every error, every error group's end and the position before it.
        # no error shares its error-ness with another example: the queries are the errors themselves
        self.ties = bool((end != errors).any() or (before != errors - 1).any())
        queries = np.unique(np.r_[errors, end, before[before >= 0]]) if self.ties else errors
        position = np.empty(n, dtype=np.int64)
        position[descending] = np.arange(n)
        bins = np.searchsorted(queries, position, side="left")  # bin t: (queries[t-1], queries[t]]
        kept = np.flatnonzero(bins < queries.shape[0])
        self.sums = scipy.sparse.csr_matrix(
            (np.ones(kept.shape[0], dtype=np.float32), (bins[kept], kept)), shape=(queries.shape[0], n))
        self.n = n
        self.error_rows = descending[errors]  # original row of each error, in ranking order
        # index into the zero-padded running sums: all weight / error weight at positions <= q
        self.all_end = np.searchsorted(queries, end) + 1
        self.all_before = np.where(before >= 0, np.searchsorted(queries, before) + 1, 0)
        self.err_end = np.searchsorted(errors, end, side="right")
        self.err_before = np.searchsorted(errors, before, side="right")
        # for lift@k: per query t, errors at positions <= queries[t - 1], and the error at queries[t]
        self.err_prev_query = np.searchsorted(errors, np.r_[-1, queries[:-1]], side="right")
        query_error = np.searchsorted(errors, queries)
        self.query_is_error = (query_error < errors.shape[0]) & (errors[query_error.clip(max=errors.shape[0] - 1)] == queries)
        self.query_error = query_error.clip(max=errors.shape[0] - 1)


@dataclass
class _Sums:
    """One chunk of C resamples of one ranking: ``all`` (m + 1, C) running weight at the query
    positions, ``err`` (n1 + 1, C) running error weight at the errors, ``w`` (n1, C) error weights."""

    layout: _Layout
    all: np.ndarray
    err: np.ndarray
    w: np.ndarray

    @property
    def total_errors(self) -> np.ndarray:
        return self.err[-1].astype(np.float64)


def weighted_metrics(ranking: Ranking, weights, *, lift_k: int, only: tuple[str, ...] | None = None
                     ) -> dict[str, np.ndarray]:
    """Each metric of :data:`WEIGHTED` (or those named in ``only``) for every resample of
    ``weights``: blocks (N, C) of counts (rows in the examples' original order, one resample per
    column; :func:`resample_weights`, or one (N, B) array). Returns ``{name: (B,) float64}``."""
    blocks = [weights] if isinstance(weights, np.ndarray) else list(weights)
    layout = _Layout(ranking)
    chosen = {name: fn for name, fn in WEIGHTED.items() if only is None or name.format(k=int(lift_k)) in only}
    values = {name.format(k=int(lift_k)): [] for name in chosen}
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.shape[0] != layout.n:
            raise ValueError(f"bootstrap weights of shape {block.shape} do not fit {layout.n} examples")
        w = block[layout.error_rows]
        sums = _Sums(layout, _cumsum_rows(layout.sums @ block), _cumsum_rows(w), w)
        for name, fn in chosen.items():
            values[name.format(k=int(lift_k))].append(fn(sums, int(lift_k)))
    return {name: np.concatenate(parts) for name, parts in values.items()}


def _auroc(s: _Sums, k: int) -> np.ndarray:
    """U / (T F): U = sum over error copies of the clean weight ranked below (+ half the clean
    weight in the same tie group); clean weight at positions <= q = all - errors there."""
    lay, total = s.layout, s.total_errors
    clean = lay.n - total
    # float32 is exact here: sums < 2 * 2**22 and count x sum < 2**24 checked, else float64
    exact = float(s.w.max(initial=0)) * 2 * lay.n < 2 ** 24
    kind = np.float32 if exact else np.float64
    if not lay.ties:  # the queries are the errors: rows 1.. of both running sums, no gather
        clean_end = np.subtract(s.all[1:], s.err[1:], dtype=kind)
        clean_end *= s.w
        with np.errstate(divide="ignore", invalid="ignore"):
            return (clean * total - clean_end.sum(axis=0, dtype=np.float64)) / (total * clean)
    clean_end = s.all[lay.all_end].astype(kind) - s.err[lay.err_end]
    clean_end += s.all[lay.all_before]
    clean_end -= s.err[lay.err_before]
    clean_end *= s.w
    u = clean * total - 0.5 * clean_end.sum(axis=0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return u / (total * clean)


def _auprc(s: _Sums, k: int) -> np.ndarray:
    """sum over error copies of the precision at their threshold (tie group end), over T."""
    lay = s.layout
    # the flagged weight is 0 only where the error weight is 0 too
    hits, flagged = (s.err[1:], s.all[1:]) if not lay.ties else (s.err[lay.err_end], s.all[lay.all_end])
    precision = np.divide(hits, np.maximum(flagged, 1), dtype=np.float64)
    precision *= s.w
    with np.errstate(divide="ignore", invalid="ignore"):
        return precision.sum(axis=0) / s.total_errors


def _lift(s: _Sums, k: np.ndarray) -> np.ndarray:
    """lift@k per resample for k (C,): the top k copies in the ranking's order (the cut may split
    the copies of one example); errors among them over k, over the resample's error rate."""
    lay = s.layout
    columns = np.arange(k.shape[0])
    row = (s.all < k[None, :]).sum(axis=0)  # first padded row reaching k; m + 1: past the last query
    t = np.minimum(row - 1, lay.err_prev_query.shape[0] - 1)  # query index
    errors = s.err[lay.err_prev_query[t], columns].astype(np.float64)
    at_query = lay.query_error[t]
    inside = np.where(lay.query_is_error[t],
                      np.maximum(0, k - (s.all[t + 1, columns] - s.w[at_query, columns])), 0)
    errors = np.where(row > lay.err_prev_query.shape[0], s.total_errors, errors + inside)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (errors / k) / (s.total_errors / lay.n)


def _lift_at_k(s: _Sums, k: int) -> np.ndarray:
    return _lift(s, np.full(s.w.shape[1], float(k)))


def _lift_at_num_errors(s: _Sums, k: int) -> np.ndarray:
    return _lift(s, s.total_errors)


#: Weighted counterparts of the metric registry (same names). A registry metric without one here
#: gets no interval columns.
WEIGHTED: dict[str, Callable[[_Sums, int], np.ndarray]] = {
    "auroc": _auroc,
    "auprc": _auprc,
    "lift_at_{k}": _lift_at_k,
    "lift_at_num_errors": _lift_at_num_errors,
}


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


def paired_verdicts(points: np.ndarray, replicates: np.ndarray, *, level: float) -> list[str]:
    """For V variants measured on the same resamples: ``points`` (V,) point estimates,
    ``replicates`` (V, B). The best is the largest point estimate (every variant equal to it is
    ``best``); a variant whose paired difference to the best, ``replicates[v] - replicates[best]``,
    has a percentile interval containing 0 is ``tied``; else ``worse``."""
    points = np.asarray(points, dtype=np.float64)
    best = int(np.argmax(points))
    verdicts = []
    for v in range(points.shape[0]):
        if points[v] >= points[best]:
            verdicts.append("best")
            continue
        lo, hi = percentile_interval(replicates[v] - replicates[best], level=level)
        verdicts.append("tied" if lo <= 0 <= hi else "worse")
    return verdicts

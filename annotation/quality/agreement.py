"""Inter-rater agreement: Gwet's AC1/AC2, Fleiss' kappa, Krippendorff's alpha, bootstrap CIs.

Pure Python + numpy. A ratings table is a sequence of items; each item is a sequence of ratings,
one per rater slot, where ``None`` (or a float NaN) marks a missing rating. Items may have any
number of ratings. ``categories`` lists the possible ratings in their order (low to high for
ordinal data); when omitted it is the sorted set of observed ratings, as in irrCAC's default.
When every category is a real number its value is used as the score for weights / the interval
metric (as irrCAC does); otherwise its position 1..q in ``categories`` is used.

Undefined results: every coefficient returns ``None`` (never NaN, never ZeroDivisionError) when
no item has at least two ratings, or when chance agreement is total (p_e == 1, or Krippendorff's
expected disagreement D_e == 0, e.g. all ratings identical), where (p_a - p_e)/(1 - p_e) is 0/0.
Note Gwet's p_e is < 1 for the built-in weights whenever q >= 2 (p_e <= T_w/q**2), so AC1 of
unanimous data with q >= 2 declared categories is 1.0; with a single category it is ``None``.

References: Gwet, K.L. (2014) *Handbook of Inter-Rater Reliability*, 4th ed., and the irrCAC R
package (kgwet/irrCAC, ``R/agree.coeff3.raw.r``: ``gwet.ac1.raw``, ``fleiss.kappa.raw``;
``R/weights.gen.r``); Krippendorff, K. (2011) *Computing Krippendorff's Alpha-Reliability*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from numbers import Real
from typing import Literal

import numpy as np

Rating = Hashable | None
Items = Sequence[Sequence[Rating]]
Weights = Literal["unweighted", "identity", "linear", "quadratic"]
Level = Literal["nominal", "ordinal", "interval"]

__all__ = ["bootstrap_ci", "fleiss_kappa", "gwet_ac", "gwet_ac1", "gwet_ac2", "gwet_components",
           "krippendorff_alpha", "weight_matrix"]  # fmt: skip


def _missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _categories(items: Items, categories: Sequence[Rating] | None) -> list:
    if categories is not None:
        cats = list(categories)
    else:
        seen = list(dict.fromkeys(r for item in items for r in item if not _missing(r)))
        try:
            cats = sorted(seen)
        except TypeError:  # mixed, unorderable labels: keep first-seen order
            cats = seen
    if len(set(cats)) != len(cats):
        raise ValueError("categories must be distinct")
    return cats


def _counts(items: Items, cats: list) -> np.ndarray:
    """n x q matrix r_ik: how many raters put item i in category k (irrCAC's ``agree.mat``)."""
    index = {c: k for k, c in enumerate(cats)}
    counts = np.zeros((len(items), len(cats)))
    for i, item in enumerate(items):
        for r in item:
            if _missing(r):
                continue
            if r not in index:
                raise ValueError(f"rating {r!r} is not one of the categories {cats!r}")
            counts[i, index[r]] += 1
    return counts


def _scores(cats: list) -> np.ndarray:
    if cats and all(isinstance(c, Real) and not isinstance(c, bool) for c in cats):
        return np.array(cats, dtype=float)
    return np.arange(1, len(cats) + 1, dtype=float)


def weight_matrix(categories: Sequence[Rating], weights: Weights = "unweighted") -> np.ndarray:
    """q x q agreement weights w_kl as in irrCAC ``R/weights.gen.r`` (Gwet 2014, ch. 3).

    identity: w = 1 if k == l else 0; linear: 1 - |x_k - x_l| / (x_max - x_min);
    quadratic: 1 - (x_k - x_l)**2 / (x_max - x_min)**2, with x the category scores.
    """
    cats = list(categories)
    q = len(cats)
    if weights in ("unweighted", "identity") or q < 2:
        return np.eye(q)
    x = _scores(cats)
    diff = np.abs(x[:, None] - x[None, :]) / (x.max() - x.min())
    if weights == "linear":
        return 1.0 - diff
    if weights == "quadratic":
        return 1.0 - diff**2
    raise ValueError(f"unknown weights {weights!r}")


def _pa_pi(counts: np.ndarray, w: np.ndarray) -> tuple[float, np.ndarray] | None:
    """p_a over items with r_i >= 2, and pi_k = mean over rated items of r_ik / r_i."""
    ri = counts.sum(axis=1)
    rated = counts[ri >= 1]
    if not (ri >= 2).any():
        return None
    multi, rm = counts[ri >= 2], ri[ri >= 2]
    weighted = multi @ w.T  # r*_ik = sum_l w_kl r_il
    pa = float(np.mean((multi * (weighted - 1)).sum(axis=1) / (rm * (rm - 1))))
    pi = (rated / rated.sum(axis=1, keepdims=True)).mean(axis=0)
    return pa, pi


def gwet_components(
    items: Items, *, categories: Sequence[Rating] | None = None, weights: Weights = "unweighted"
) -> tuple[float, float] | None:
    """(p_a, p_e) of Gwet's AC1/AC2, exactly as irrCAC ``gwet.ac1.raw`` (Gwet 2014, ch. 2-3; Gwet 2008).

    p_a = mean over items with r_i >= 2 of sum_k r_ik (r*_ik - 1) / (r_i (r_i - 1)),
          r*_ik = sum_l w_kl r_il;
    p_e = T_w / (q (q - 1)) * sum_k pi_k (1 - pi_k), pi_k = (1/n) sum_i r_ik / r_i over the n items
          with at least one rating, T_w = sum of all weights.
    None if no item has two ratings or q < 2 (p_e undefined).
    """
    cats = _categories(items, categories)
    q = len(cats)
    w = weight_matrix(cats, weights)
    got = _pa_pi(_counts(items, cats), w)
    if got is None or q < 2:
        return None
    pa, pi = got
    pe = float(w.sum() / (q * (q - 1)) * np.sum(pi * (1 - pi)))
    return pa, pe


def _chance_corrected(pa_pe: tuple[float, float] | None) -> float | None:
    if pa_pe is None:
        return None
    pa, pe = pa_pe
    if math.isclose(pe, 1.0, rel_tol=0, abs_tol=1e-12):
        return None
    return (pa - pe) / (1 - pe)


def gwet_ac(
    items: Items, *, categories: Sequence[Rating] | None = None, weights: Weights = "unweighted"
) -> float | None:
    """Gwet's AC (AC1 unweighted, AC2 weighted) = (p_a - p_e) / (1 - p_e); see ``gwet_components``."""
    return _chance_corrected(gwet_components(items, categories=categories, weights=weights))


def gwet_ac1(items: Items, *, categories: Sequence[Rating] | None = None) -> float | None:
    """Gwet's AC1 for nominal ratings (irrCAC ``gwet.ac1.raw(ratings)``)."""
    return gwet_ac(items, categories=categories, weights="unweighted")


def gwet_ac2(
    items: Items, *, categories: Sequence[Rating] | None = None, weights: Weights = "quadratic"
) -> float | None:
    """Gwet's AC2 for ordinal ratings (irrCAC ``gwet.ac1.raw(ratings, weights=...)``)."""
    return gwet_ac(items, categories=categories, weights=weights)


def fleiss_kappa(
    items: Items, *, categories: Sequence[Rating] | None = None, weights: Weights = "unweighted"
) -> float | None:
    """Fleiss' generalized kappa as irrCAC ``fleiss.kappa.raw`` (Fleiss 1971; Gwet 2014, ch. 2).

    p_a as for Gwet's AC; p_e = sum_{k,l} w_kl pi_k pi_l. None if undefined (p_e == 1).
    """
    cats = _categories(items, categories)
    w = weight_matrix(cats, weights)
    got = _pa_pi(_counts(items, cats), w)
    if got is None:
        return None
    pa, pi = got
    return _chance_corrected((pa, float(pi @ w @ pi)))


def krippendorff_alpha(
    items: Items, *, categories: Sequence[Rating] | None = None, level: Level = "nominal"
) -> float | None:
    """Krippendorff's alpha = 1 - D_o / D_e from the coincidence matrix (Krippendorff 2011).

    Only pairable values count: items with fewer than two ratings are dropped.
    o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1); n_c = sum_k o_ck; n = sum_c n_c;
    alpha = 1 - (n - 1) sum o_ck delta_ck / sum n_c n_k delta_ck, with delta
    nominal: [c != k]; interval: (x_c - x_k)**2; ordinal: (sum_{g=c..k} n_g - (n_c + n_k)/2)**2.
    None if no item has two ratings or D_e == 0 (no variation).
    """
    cats = _categories(items, categories)
    counts = _counts(items, cats)
    mu = counts.sum(axis=1)
    counts, mu = counts[mu >= 2], mu[mu >= 2]
    if len(mu) == 0:
        return None
    o = (counts / (mu - 1)[:, None]).T @ counts - np.diag((counts / (mu - 1)[:, None]).sum(axis=0))
    nc = o.sum(axis=1)
    n = nc.sum()
    q = len(cats)
    if level == "nominal":
        delta = 1.0 - np.eye(q)
    elif level == "interval":
        x = _scores(cats)
        delta = (x[:, None] - x[None, :]) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(nc)])
        lo, hi = np.minimum.outer(range(q), range(q)), np.maximum.outer(range(q), range(q))
        delta = (cum[hi + 1] - cum[lo] - (nc[:, None] + nc[None, :]) / 2) ** 2
    else:
        raise ValueError(f"unknown level {level!r}")
    expected = float(np.outer(nc, nc).ravel() @ delta.ravel())
    if expected <= 0 or n <= 1:
        return None
    return 1.0 - (n - 1) * float((o * delta).sum()) / expected


def bootstrap_ci(
    statistic: Callable[[list], float | None],
    items: Items,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI (Efron & Tibshirani 1993, ch. 13) resampling items with replacement.

    Deterministic for a given ``seed`` (numpy ``default_rng``). Resamples where ``statistic``
    returns None or NaN (undefined, e.g. p_e == 1) are skipped; None if every one is undefined.
    Pass ``categories=`` inside ``statistic`` so q does not change between resamples.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    items = list(items)
    if not items or n_resamples < 1:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        picks = rng.integers(0, len(items), size=len(items))
        value = statistic([items[i] for i in picks])
        if value is not None and not math.isnan(value):
            values.append(value)
    if not values:
        return None
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)

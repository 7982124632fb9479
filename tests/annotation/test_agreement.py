"""Agreement coefficients checked against worked examples with published values.

Sources (all values quoted to the digits the source prints; we compare to three decimals):

* irrCAC R package, kgwet/irrCAC: README.md / vignettes/overview.Rmd (``gwet.ac1.raw``,
  ``fleiss.kappa.raw``, ``krippen.alpha.raw`` on ``cac.raw4raters``; ``gwet.ac1.dist`` etc. on
  ``distrib.6raters``) and vignettes/weighting.html (quadratic weights; the weight matrices).
* afergadis/irrCAC (the Python port of irrCAC), test/unit/irrCAC/raw/test_gwet.py and
  test_krippendorff.py, for linear-weighted AC2 and for the ``cac.raw5obser``, ``cac.raw.g1g2`` and
  ``cac.ben.gerry`` data sets (tables transcribed from its irrCAC/datasets.py).
* The Python ``krippendorff`` package, pln-fing-udelar/fast-krippendorff tests/test_krippendorff.py,
  for ordinal alpha of Krippendorff's (2011) 4-observer x 12-unit example and for the 3-coder x
  15-unit example (also the Wikipedia "Krippendorff's alpha" computational example).

``cac.raw4raters`` (Gwet 2014, p. 120) is the same table as Krippendorff's 2011 worked example.
"""

import math

import numpy as np
import pytest

from annotation.quality.agreement import (
    bootstrap_ci,
    fleiss_kappa,
    gwet_ac,
    gwet_ac1,
    gwet_ac2,
    gwet_components,
    krippendorff_alpha,
    weight_matrix,
)

N = None


def approx3(value):
    return pytest.approx(value, abs=5e-4)


# irrCAC ``cac.raw4raters``: 4 raters (columns) x 12 subjects (rows), categories 1..5.
# Gwet (2014) Handbook, 4th ed., p. 120; = Krippendorff (2011) "Computing Krippendorff's
# Alpha-Reliability", observers A-D x units 1-12. Published (irrCAC README / vignettes):
#   gwet.ac1.raw            pa 0.8181818  pe 0.1903212  AC1 0.77544
#   gwet.ac1.raw quadratic  pa 0.9753788  pe 0.7137044  AC2 0.914
#   fleiss.kappa.raw        0.76117;  quadratic 0.86494 (pe 0.8177083)
#   krippen.alpha.raw       0.74342;  quadratic 0.84911 (= interval alpha 0.849)
# afergadis/irrCAC tests: gwet linear pa 0.939 pe 0.571 AC2 0.859.
# fast-krippendorff tests: ordinal alpha 0.815.
RAW4RATERS = [
    [1, 1, N, 1],
    [2, 2, 3, 2],
    [3, 3, 3, 3],
    [3, 3, 3, 3],
    [2, 2, 2, 2],
    [1, 2, 3, 4],
    [4, 4, 4, 4],
    [1, 1, 2, 1],
    [2, 2, 2, 2],
    [N, 5, 5, 5],
    [N, N, 1, 1],
    [N, N, 3, N],
]
CATS5 = [1, 2, 3, 4, 5]

# irrCAC ``distrib.6raters`` (Fleiss 1971): counts of 6 raters per category per subject.
# Published (irrCAC README): gwet.ac1.dist AC1 0.4448007 (pa 0.5511111, pe 0.1914815);
# fleiss.kappa.dist 0.4139265; krippen.alpha.dist 0.4204384.
DISTRIB_6RATERS = [
    [0, 0, 0, 6, 0],
    [0, 3, 0, 0, 3],
    [0, 1, 4, 0, 1],
    [0, 0, 0, 0, 6],
    [0, 3, 0, 3, 0],
    [2, 0, 4, 0, 0],
    [0, 0, 4, 0, 2],
    [2, 0, 3, 1, 0],
    [2, 0, 0, 4, 0],
    [0, 0, 0, 0, 6],
    [1, 0, 0, 5, 0],
    [1, 1, 0, 4, 0],
    [0, 3, 3, 0, 0],
    [1, 0, 0, 5, 0],
    [0, 2, 0, 3, 1],
]
DIAGNOSES = ["Depression", "Personality Disorder", "Schizophrenia", "Neurosis", "Other"]

# irrCAC ``cac.raw5obser``: 5 observers x 15 units, scores 0..3 (Gwet 2014, after p. 125).
# Published (afergadis/irrCAC tests): AC1 0.497 (pa 0.616, pe 0.236); alpha 0.481.
RAW5OBSER = [
    [1, 1, 2, N, 2],
    [1, 1, 0, 1, N],
    [2, 3, 3, 3, N],
    [N, 0, 0, N, 0],
    [0, 0, 0, N, 0],
    [0, 0, 0, N, 0],
    [1, 0, 2, N, 1],
    [1, N, 2, 0, N],
    [2, 2, 2, N, 2],
    [2, 1, 1, 1, N],
    [N, 1, 0, 0, N],
    [0, 0, 0, 0, N],
    [1, 2, 2, 2, N],
    [3, 3, 2, 2, 3],
    [1, 1, 1, N, 1],
]

# irrCAC ``cac.raw.g1g2``: 4 raters x 14 units, categories a..e.
# Published (afergadis/irrCAC tests): AC1 0.685 (pa 0.744, pe 0.187); alpha 0.632.
RAW_G1G2 = [
    ["a", "a", N, "a"],
    ["b", "b", "c", "b"],
    ["c", "c", "c", "c"],
    ["c", "c", "c", "c"],
    ["b", "b", "b", "b"],
    ["a", "b", "c", "d"],
    ["d", "d", "d", "d"],
    ["a", "a", "b", "a"],
    ["b", "b", "b", "b"],
    [N, "e", "e", "e"],
    [N, N, "a", "a"],
    [N, N, "c", N],
    ["b", "b", "c", "b"],
    ["b", "a", "c", "b"],
]

# irrCAC ``cac.ben.gerry``: 2 raters (Ben, Gerry) x 12 units, nominal labels, one missing.
# Published (afergadis/irrCAC tests): AC1 0.661 (pa 0.727, pe 0.194); alpha 0.665.
BEN_GERRY = [
    ["a", "b"], ["a", "a"], ["b", "b"], ["b", "b"], ["d", "b"], ["c", "c"],
    ["c", "c"], ["c", "c"], ["e", "e"], ["d", N], ["d", "d"], ["a", "d"],
]  # fmt: skip

# Krippendorff's 3 coders x 15 units example (Wikipedia "Krippendorff's alpha", computational
# example). Published (fast-krippendorff tests): nominal 0.691358, interval 0.810845.
WIKI_3X15 = [
    [N, 1, N], [N, N, N], [N, 2, 2], [N, 1, 1], [N, 3, 3], [3, 3, 4], [4, 4, 4], [1, 3, N],
    [2, N, 2], [1, N, 1], [1, N, 1], [3, N, 3], [3, N, 3], [N, N, N], [3, N, 4],
]  # fmt: skip


def _dist_to_items(table, labels):
    return [[label for label, count in zip(labels, row) for _ in range(count)] for row in table]


# ---------------------------------------------------------------- Gwet's AC1 / AC2


def test_ac1_raw4raters_irrcac_readme():
    pa, pe = gwet_components(RAW4RATERS, categories=CATS5)
    assert (pa, pe) == (approx3(0.8181818), approx3(0.1903212))
    assert gwet_ac1(RAW4RATERS, categories=CATS5) == approx3(0.77544)
    assert gwet_ac1(RAW4RATERS) == approx3(0.77544)  # categories default to observed, sorted


def test_ac2_quadratic_raw4raters_irrcac_weighting_vignette():
    pa, pe = gwet_components(RAW4RATERS, categories=CATS5, weights="quadratic")
    assert (pa, pe) == (approx3(0.9753788), approx3(0.7137044))
    assert gwet_ac2(RAW4RATERS, categories=CATS5, weights="quadratic") == approx3(0.914)


def test_ac2_linear_raw4raters_irrcac_python_port():
    pa, pe = gwet_components(RAW4RATERS, categories=CATS5, weights="linear")
    assert (pa, pe) == (approx3(0.939), approx3(0.571))
    assert gwet_ac2(RAW4RATERS, categories=CATS5, weights="linear") == approx3(0.859)


def test_ac2_string_categories_use_their_order():
    # irrCAC scores non-numeric categories by position 1..q, so relabelling 1..5 -> a..e is neutral.
    labels = dict(zip(CATS5, "abcde"))
    relabelled = [[labels.get(r) for r in item] for item in RAW4RATERS]
    assert gwet_ac2(relabelled, categories=list("abcde"), weights="quadratic") == approx3(0.914)
    assert gwet_ac(relabelled, categories=list("abcde"), weights="identity") == approx3(0.77544)


def test_ac1_distrib_6raters_irrcac_readme():
    items = _dist_to_items(DISTRIB_6RATERS, DIAGNOSES)
    pa, pe = gwet_components(items, categories=DIAGNOSES)
    assert (pa, pe) == (approx3(0.5511111), approx3(0.1914815))
    assert gwet_ac1(items, categories=DIAGNOSES) == approx3(0.4448007)


@pytest.mark.parametrize(
    "table, pa, pe, ac1",
    [
        (RAW5OBSER, 0.616, 0.236, 0.497),
        (RAW_G1G2, 0.744, 0.187, 0.685),
        (BEN_GERRY, 0.727, 0.194, 0.661),
    ],
    ids=["cac.raw5obser", "cac.raw.g1g2", "cac.ben.gerry"],
)
def test_ac1_other_irrcac_datasets(table, pa, pe, ac1):
    assert gwet_components(table) == (approx3(pa), approx3(pe))
    assert gwet_ac1(table) == approx3(ac1)


def test_ac1_hand_derived_choice_ab():
    # Derived by hand (no published value): 2 raters choose A/B; the last item has one rating.
    # p_a over the 4 doubly-rated items = (1 + 0 + 1 + 1) / 4 = 0.75.
    # pi_A over all 5 rated items = (1 + 1/2 + 0 + 1 + 0) / 5 = 0.5, pi_B = 0.5.
    # p_e = T_w/(q(q-1)) * sum pi(1-pi) = 2/2 * (0.25 + 0.25) = 0.5; AC1 = 0.25 / 0.5 = 0.5.
    items = [["A", "A"], ["A", "B"], ["B", "B"], ["A", "A"], ["B", None]]
    assert gwet_components(items, categories=["A", "B"]) == (pytest.approx(0.75), pytest.approx(0.5))
    assert gwet_ac1(items, categories=["A", "B"]) == pytest.approx(0.5)
    # Any number of raters per item; NaN counts as missing like None.
    assert gwet_ac1([["A", "A", "A"], ["A", "B"], ["B", "B", math.nan]]) is not None


def test_weight_matrices_irrcac_weighting_vignette():
    # linear.weights(1:3) and quadratic.weights(1:3) as printed in vignettes/weighting.html.
    np.testing.assert_allclose(weight_matrix([1, 2, 3], "linear"), [[1, 0.5, 0], [0.5, 1, 0.5], [0, 0.5, 1]])
    np.testing.assert_allclose(
        weight_matrix([1, 2, 3], "quadratic"), [[1, 0.75, 0], [0.75, 1, 0.75], [0, 0.75, 1]]
    )
    np.testing.assert_allclose(weight_matrix(["x", "y", "z"], "unweighted"), np.eye(3))


# ---------------------------------------------------------------- Fleiss' kappa


def test_fleiss_kappa_irrcac():
    assert fleiss_kappa(RAW4RATERS, categories=CATS5) == approx3(0.76117)
    assert fleiss_kappa(RAW4RATERS, categories=CATS5, weights="quadratic") == approx3(0.86494)
    items = _dist_to_items(DISTRIB_6RATERS, DIAGNOSES)
    assert fleiss_kappa(items, categories=DIAGNOSES) == approx3(0.4139265)


# ---------------------------------------------------------------- Krippendorff's alpha


def test_alpha_krippendorff_2011_example():
    assert krippendorff_alpha(RAW4RATERS, level="nominal") == approx3(0.743)  # irrCAC 0.74342
    assert krippendorff_alpha(RAW4RATERS, level="ordinal") == approx3(0.815)
    assert krippendorff_alpha(RAW4RATERS, level="interval") == approx3(0.849)  # irrCAC 0.84911


def test_alpha_ordinal_string_domain_fast_krippendorff():
    domain = ["very low", "low", "mid", "high", "very high"]
    relabelled = [[None if r is None else domain[r - 1] for r in item] for item in RAW4RATERS]
    assert krippendorff_alpha(relabelled, categories=domain, level="ordinal") == approx3(0.815)


def test_alpha_wikipedia_3x15_example():
    assert krippendorff_alpha(WIKI_3X15, level="nominal") == approx3(0.691358)
    assert krippendorff_alpha(WIKI_3X15, level="interval") == approx3(0.810845)


@pytest.mark.parametrize(
    "table, categories, alpha",
    [
        (None, DIAGNOSES, 0.4204384),  # distrib.6raters, irrCAC README
        (RAW5OBSER, None, 0.481),
        (RAW_G1G2, None, 0.632),
        (BEN_GERRY, None, 0.665),
    ],
    ids=["distrib.6raters", "cac.raw5obser", "cac.raw.g1g2", "cac.ben.gerry"],
)
def test_alpha_nominal_irrcac_datasets(table, categories, alpha):
    table = table or _dist_to_items(DISTRIB_6RATERS, DIAGNOSES)
    assert krippendorff_alpha(table, categories=categories) == approx3(alpha)


# ---------------------------------------------------------------- degenerate inputs


@pytest.mark.parametrize(
    "items",
    [[], [[None, None]], [["A", None], [None, "B"], ["A"]]],
    ids=["empty", "unrated", "no-item-with-two-ratings"],
)
def test_undefined_without_a_pair_returns_none(items):
    assert gwet_ac1(items, categories=["A", "B"]) is None
    assert gwet_ac2(items, categories=["A", "B"], weights="linear") is None
    assert fleiss_kappa(items, categories=["A", "B"]) is None
    assert krippendorff_alpha(items, categories=["A", "B"]) is None


def test_unanimous_ratings():
    items = [["A", "A"], ["A", "A", "A"]]
    # Two declared categories: Gwet's p_e = 0, so AC1 = p_a = 1 (documented).
    assert gwet_ac1(items, categories=["A", "B"]) == 1.0
    # Fleiss' p_e == 1 and Krippendorff's D_e == 0: undefined, None rather than 0/0.
    assert fleiss_kappa(items, categories=["A", "B"]) is None
    assert krippendorff_alpha(items, categories=["A", "B"]) is None
    # A single category: q(q-1) == 0, Gwet's p_e is undefined.
    assert gwet_ac1(items) is None


def test_unknown_rating_or_option_raises():
    with pytest.raises(ValueError, match="not one of the categories"):
        gwet_ac1([["A", "C"]], categories=["A", "B"])
    with pytest.raises(ValueError):
        gwet_ac2(RAW4RATERS, weights="cubic")
    with pytest.raises(ValueError):
        krippendorff_alpha(RAW4RATERS, level="ratio")


# ---------------------------------------------------------------- bootstrap


def _ac1(items):
    return gwet_ac1(items, categories=CATS5)


def test_bootstrap_deterministic_and_brackets_estimate():
    first = bootstrap_ci(_ac1, RAW4RATERS, n_resamples=500, seed=7)
    again = bootstrap_ci(_ac1, RAW4RATERS, n_resamples=500, seed=7)
    assert first == again
    low, high = first
    assert -1 <= low <= _ac1(RAW4RATERS) <= high <= 1
    assert bootstrap_ci(_ac1, RAW4RATERS, n_resamples=500, seed=8) != first
    low50, high50 = bootstrap_ci(_ac1, RAW4RATERS, n_resamples=500, seed=7, confidence=0.5)
    assert low <= low50 <= high50 <= high


def test_bootstrap_alpha_brackets_estimate():
    def stat(items):
        return krippendorff_alpha(items, categories=CATS5, level="interval")

    low, high = bootstrap_ci(stat, RAW4RATERS, n_resamples=300)
    assert low <= stat(RAW4RATERS) <= high


def test_bootstrap_skips_undefined_resamples():
    # Unanimous items make Fleiss' p_e == 1 in the resamples that draw only them (-> None);
    # the NaN-returning statistic must be skipped the same way.
    items = [["A", "A"], ["A", "A"], ["A", "B"], ["B", "B"]]
    calls = []

    def stat(sample):
        value = fleiss_kappa(sample, categories=["A", "B"])
        calls.append(value)
        return math.nan if value is None and len(calls) % 2 else value

    low, high = bootstrap_ci(stat, items, n_resamples=200, seed=1)
    assert None in calls and not math.isnan(low) and low <= high
    assert bootstrap_ci(lambda sample: None, items, n_resamples=10) is None
    assert bootstrap_ci(_ac1, [], n_resamples=10) is None

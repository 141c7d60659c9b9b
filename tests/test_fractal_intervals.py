"""Intervals of the fractal dimensions that respect the dependence of pairs, and the bounded,
validated options of the dimension estimators."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff.fractal.windows import ResolutionWarning

from fractal_sets import cube, embed, embed_random, henon, koch, sierpinski_carpet


def test_henon_interval_covers_the_reference():
    """Grassberger & Procaccia (1983): 1.21 +- 0.01. The old interval (formal fit stderr,
    ± 0.004) excluded it; the jackknife over points does not."""
    est = fd.correlation_dimension(embed(henon(1500), 200))
    terms = est.details["stderr_terms"]
    assert terms["jackknife"] > 3 * terms["fit"]  # dependent pairs: the scatter understates
    assert abs(est.dimension - 1.21) < 2 * est.stderr + 0.01
    assert est.takens_stderr > 3 * est.takens / math.sqrt(est.details["takens_pairs"])
    assert "jackknife" in est.details["resampling"]


def test_self_similar_sets_in_high_dimension():
    rng = np.random.default_rng(3)
    for points, truth in ((koch(1500, 1), math.log(4) / math.log(3)),
                          (sierpinski_carpet(1500, 2), math.log(8) / math.log(3))):
        est = fd.correlation_dimension(embed_random(points, 300, rng))
        assert abs(est.dimension - truth) < 2 * est.stderr


def test_resolution_limit_is_flagged_and_one_sided():
    X = embed(cube(400, 4, 0), 50)  # 4-D cube from 400 points: 0.4 * 2 log10(400) = 2.1
    with pytest.warns(ResolutionWarning, match="Eckmann-Ruelle") as record:
        est = fd.correlation_dimension(X)  # this line
    assert record[0].filename == __file__
    assert est.details["resolution_limited"] and est.details["takens_is_lower_bound"]
    lo, hi = est.details["interval"]
    assert hi == math.inf and lo < 4


def test_box_counting_resolution_flag():
    X = embed(cube(3000, 3, 0), 40)
    with pytest.warns(ResolutionWarning, match="occupancy limit"):
        est = fd.box_counting_dimension(X)
    assert est.details["resolution_limited"] and est.details["interval"][1] == math.inf
    assert est.details["interval"][0] < 3


def test_box_counting_rejects_min_coverage_below_half():
    X = embed(cube(2000, 1, 0), 10)
    with pytest.raises(ValueError, match="min_coverage must be >= 0.5"):
        fd.box_counting_dimension(X, min_coverage=0)


def test_n_radii_is_bounded():
    X = embed(cube(300, 2, 0), 10)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="n_radii must be <= 512"):
        fd.correlation_dimension(X, n_radii=10**4)
    assert time.perf_counter() - start < 1.0


def test_nan_is_reported_by_the_called_function():
    X = embed(cube(100, 2, 0), 10)
    X[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"correlation_dimension needs finite") as info:
        fd.correlation_dimension(X)
    assert "pairwise_sqdist" not in str(info.value)

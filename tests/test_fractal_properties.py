"""Validation on sets of known dimension, embedded in high D by a random orthonormal map.

Measured values (seeded, this file's sizes) are listed next to each case; the targets
are +-0.1 for the correlation dimension (4096 points, dimension <= 2) and +-0.15 for box
counting (50 000 points). Where box counting misses that (Brownian trace in D = 64, filled
3-cube), the test checks the documented low bias and that the reported standard error is of
the size of the error.
"""

import numpy as np
import pytest

import fractaldiff as fd

from fractal_sets import DIMENSIONS, brownian3, brownian3_times, cantor, cube, embed, sierpinski

N_CORR = 4096
N_BOX = 50_000
D_EMBED = 64

CORR_CASES = {
    # name: (points, true dimension, tolerance)       measured slope / Takens
    "cantor": (lambda n: cantor(n), DIMENSIONS["cantor"], 0.1),  # 0.634 / 0.656
    "sierpinski": (lambda n: sierpinski(n), DIMENSIONS["sierpinski"], 0.1),  # 1.573 / 1.538
    "segment": (lambda n: cube(n, 1), 1.0, 0.1),  # 1.007 / 0.967
    "square": (lambda n: cube(n, 2), 2.0, 0.1),  # 1.962 / 1.807
    "cube": (lambda n: cube(n, 3), 3.0, 0.2),  # 2.849 / 2.577 (dimension 3: not in contract)
    # seeds 0-3 of the path: 1.932 / 1.747, 1.896, 1.951, 1.941 (default theiler = 1)
    "brownian": (lambda n: brownian3_times(n), 2.0, 0.1),
}


@pytest.mark.parametrize("name", list(CORR_CASES))
def test_correlation_dimension_of_known_sets(name):
    make, true, tol = CORR_CASES[name]
    X = embed(make(N_CORR), D_EMBED, seed=1)
    est = fd.correlation_dimension(X)
    assert abs(est.dimension - true) < tol, est
    assert est.window[1] / est.window[0] > 4
    assert abs(est.takens - true) < max(0.25, 0.15 * true), est


def test_correlation_dimension_of_a_line_in_10k_dimensions():
    rng = np.random.default_rng(4)
    t = rng.uniform(size=(2048, 1))
    X = embed(t, 10_000, seed=4).astype(np.float32) + rng.standard_normal(10_000).astype(
        np.float32)  # plus a large offset, as weights have
    est = fd.correlation_dimension(X)
    assert abs(est.dimension - 1.0) < 0.1, est


def test_correlation_dimension_of_an_equal_step_walk():
    # A 4096-step random walk in 3-D (snapshots at equal time steps, as a recorder takes
    # them) has no scaling region: below the step the Gaussian steps give slope 3, the path's
    # extent is only sqrt(T) = 64 steps, and the local slope falls from 3 to 1.5 without a
    # plateau. Over the physical window (a few steps to a fraction of the extent) the slope is
    # 2 with a large, honest stderr. Measured: 1.97 +- 0.35.
    X = embed(brownian3(N_CORR), D_EMBED, seed=2)
    est = fd.correlation_dimension(X, theiler=10, window=(3.0, 30.0))
    assert abs(est.dimension - 2.0) < 0.1 + est.stderr, est
    assert est.stderr > 0.2
    # A Theiler window w depletes pairs closer than the displacement over w steps (C(r)
    # there follows the embedding dimension, ~2.8): the automatic window starts above it.
    auto = fd.correlation_dimension(X, theiler=10)
    rms = float(np.sqrt(auto.details["msd"][10]))
    assert auto.details["theiler_radius"] == pytest.approx(rms)
    assert auto.window[0] >= rms
    assert auto.dimension < 2.3, auto


def test_theiler_radius_is_not_applied_to_unordered_samples():
    X = embed(cube(2048, 2), D_EMBED, seed=5)  # i.i.d. points: the lag-w RMS is the set's size
    est = fd.correlation_dimension(X, theiler=5)
    assert est.details["theiler_radius"] == 0.0
    assert abs(est.dimension - 2.0) < 0.1, est


BOX_CASES = {
    # name: (points, true dimension)  measured with the default Chao1 correction, 4 grids,
    #                                 estimate +- reported stderr
    "cantor": (lambda n: embed(cantor(n), D_EMBED, seed=3), DIMENSIONS["cantor"]),  # 0.634 +- 0.007
    "sierpinski": (lambda n: embed(sierpinski(n), D_EMBED, seed=3),
                   DIMENSIONS["sierpinski"]),  # 1.643 +- 0.115
    "segment": (lambda n: embed(cube(n, 1), D_EMBED, seed=3), 1.0),  # 0.991 +- 0.041
    "square": (lambda n: embed(cube(n, 2), D_EMBED, seed=3), 2.0),  # 1.871 +- 0.146
    "square-4d": (lambda n: embed(cube(n, 2), 4, seed=3), 2.0),  # 1.881 +- 0.066
}


@pytest.mark.parametrize("name", list(BOX_CASES))
def test_box_counting_dimension_of_known_sets(name):
    make, true = BOX_CASES[name]
    est = fd.box_counting_dimension(make(N_BOX), n_grids=4)
    assert abs(est.dimension - true) < 0.15, est
    assert abs(est.dimension - true) < 2 * est.stderr + 0.02, est  # the stderr is honest
    assert est.stderr < 0.15


@pytest.mark.parametrize(
    "name,make,true,low",
    [
        # measured: estimate +- stderr (error in stderrs), raw-count slope
        # brownian: 1.77 +- 0.16 (-1.5), raw 1.70; cube: 2.48 +- 0.22 (-2.4), raw 2.39
        ("brownian", lambda n: embed(brownian3(n), D_EMBED, seed=3), 2.0, 1.6),
        ("cube", lambda n: embed(cube(n, 3), D_EMBED, seed=3), 3.0, 2.2),
    ],
)
def test_box_counting_known_misses_are_low_and_flagged(name, make, true, low):
    # KNOWN MISSES of the +-0.15 target with 50 000 points: the Brownian trace (coarse scales
    # bent by the embedding in R^64, fine ones under-sampled) and the 3-cube (too few points
    # for dimension 3). The estimate is low, never high; the Chao1 correction moves it towards
    # the truth, and the reported stderr carries a finite-sample term of that size.
    est = fd.box_counting_dimension(make(N_BOX), n_grids=4)
    assert low < est.details["raw_dimension"] < est.dimension < true, est
    assert est.details["stderr_terms"]["sampling"] > 0.1
    assert true - est.dimension < 3 * est.stderr, est

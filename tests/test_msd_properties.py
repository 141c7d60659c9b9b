"""Hypothesis properties of the MSD and displacement kernels."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fractaldiff as fd

from reference import displacement_direct, msd_direct

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False,
                   width=64)


@st.composite
def trajectories(draw, max_t=70, max_d=40, dtype=np.float64):
    T = draw(st.integers(2, max_t))
    D = draw(st.integers(1, max_d))
    return draw(arrays(dtype, (T, D), elements=finite if dtype == np.float64 else
                       st.floats(-1e3, 1e3, width=32)))


def close(a, b, X=None, rtol=1e-9):
    """Compare MSD curves. With X given, allow an absolute slack at the rounding level of the
    data's squared excursions (the FFT's float64 error is relative to sum_t sum_d x^2)."""
    atol = 0.0
    if X is not None and X.size:
        Xf = np.asarray(X, dtype=np.float64)
        atol = 1e-13 * Xf.shape[1] * float(np.max(np.abs(Xf - Xf[0]))) ** 2
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@st.composite
def dyadic_trajectories(draw, max_t=60, max_d=30):
    """Values k / 1024 with |k| < 2**20: sums with dyadic shifts stay exact in float64."""
    T = draw(st.integers(2, max_t))
    D = draw(st.integers(1, max_d))
    k = draw(arrays(np.int64, (T, D), elements=st.integers(-(2**20), 2**20)))
    return k / 1024.0


@SETTINGS
@given(trajectories())
def test_equals_direct_reference(device, X):
    got = fd.msd(X, device=device)
    assert got[0] == 0.0 and np.all(got >= 0)
    close(got, msd_direct(X), X)


@SETTINGS
@given(trajectories(dtype=np.float32))
def test_float32_equals_reference_of_same_values(device, X):
    close(fd.msd(X, device=device), msd_direct(X.astype(np.float64)), X)


@SETTINGS
@given(dyadic_trajectories(), st.data())
def test_invariant_under_column_translation(X, data):
    shift = data.draw(arrays(np.int64, X.shape[1], elements=st.integers(-(2**30), 2**30)))
    Y = X + shift / 1024.0  # exact: no bits of X are lost
    close(fd.msd(Y), fd.msd(X), X)


@SETTINGS
@given(trajectories(), st.randoms(use_true_random=False))
def test_invariant_under_column_permutation(X, rnd):
    perm = list(range(X.shape[1]))
    rnd.shuffle(perm)
    close(fd.msd(X[:, perm]), fd.msd(X), X)


@SETTINGS
@given(trajectories(), st.integers(-20, 20))
def test_scaling_by_power_of_two_is_exact(X, k):
    # exact only while every product stays a normal float: drop magnitudes whose squares
    # would be subnormal
    X = np.where(np.abs(X) < 1e-100, 0.0, X)
    c = 2.0**k
    np.testing.assert_array_equal(fd.msd(c * X), c**2 * fd.msd(X))


@SETTINGS
@given(dyadic_trajectories(), st.floats(1e-3, 1e3))
def test_scaling_gives_c_squared(X, c):
    close(fd.msd(c * X), c**2 * fd.msd(X), c * X, rtol=1e-8)


@SETTINGS
@given(trajectories())
def test_time_reversal(X):
    close(fd.msd(X[::-1]), fd.msd(X), X)


@SETTINGS
@given(trajectories(max_d=60), st.data())
def test_additive_over_column_blocks(X, data):
    k = data.draw(st.integers(0, X.shape[1]))
    parts = [X[:, :k], X[:, k:]]
    total = sum(fd.msd(p) for p in parts if p.shape[1])
    close(total, fd.msd(X), X)


@SETTINGS
@given(trajectories(), st.data())
def test_selected_lags_equal_all_lags(device, X, data):
    T = X.shape[0]
    lags = data.draw(st.lists(st.integers(0, T - 1), unique=True, max_size=T))
    got = fd.msd(X, lags=lags, device=device)
    assert got.shape == (len(lags),)
    if lags:
        close(got, fd.msd(X)[np.asarray(lags, dtype=int)], X)
        close(got, msd_direct(X, lags), X, rtol=1e-12)


@SETTINGS
@given(trajectories(), st.data())
def test_displacement_matches_reference(device, X, data):
    ref = data.draw(st.integers(-X.shape[0], X.shape[0] - 1))
    got = fd.displacement(X, ref=ref, device=device)
    np.testing.assert_allclose(got, displacement_direct(X, ref), rtol=1e-12, atol=1e-300)
    assert got[ref] == 0.0


@SETTINGS
@given(trajectories(max_t=40, max_d=20))
def test_displacement_is_msd_lag_sum_for_two_snapshots(X):
    # with two snapshots, msd[1] is the squared distance between them
    Y = X[:2]
    np.testing.assert_allclose(fd.msd(Y)[1], fd.displacement(Y)[1] ** 2, rtol=1e-12)

"""fractaldiff.msd and fractaldiff.displacement against the direct numpy reference."""

import numpy as np
import pytest

import fractaldiff as fd

from reference import displacement_direct, msd_direct, weight_like


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b) / np.abs(b))


@pytest.mark.parametrize("T,D", [(2, 1), (3, 2), (5, 17), (33, 31), (64, 16), (129, 40)])
def test_small_shapes_match_reference(simd_level, rng, T, D, device):
    X = rng.standard_normal((T, D)) * 3 + rng.standard_normal(D) * 100
    got = fd.msd(X, device=device)
    ref = msd_direct(X)
    assert got.dtype == np.float64 and got.shape == (T,)
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1:], ref[1:], rtol=1e-10)


# Required accuracy: weight-like float32 data, steps 1e-3..1e-5, T 1000..4096 (not only powers of
# two), D >= 1000; max relative error over lags >= 1 must be <= 1e-6 against an exact float64
# reference. The reference is O(T^2 D), so the largest T checks every lag up to 48 and a
# log-spaced spread of larger lags.
@pytest.mark.parametrize(
    "T,D,step",
    [(1000, 1000, 1e-3), (1000, 1024, 1e-4), (1000, 1001, 1e-5), (2500, 1000, 1e-4),
     (4096, 1000, 1e-5), (3001, 1003, 1e-3)],
)
def test_accuracy_on_weight_like_data(T, D, step, device):
    X = weight_like(T, D, step, seed=T + D)
    got = fd.msd(X, device=device)
    if T <= 1000:
        lags = np.arange(T)
    else:
        lags = np.unique(np.concatenate([np.arange(49), np.geomspace(49, T - 1, 60).astype(int)]))
    ref = msd_direct(X, lags)
    assert got[0] == 0.0
    assert np.all(got >= 0)
    assert rel_err(got[lags[1:]], ref[1:]) <= 1e-6


def test_accuracy_all_simd_levels(simd_level):
    X = weight_like(1200, 1000, 1e-5, seed=7)
    lags = np.unique(np.concatenate([np.arange(1, 40), np.geomspace(40, 1199, 30).astype(int)]))
    assert rel_err(fd.msd(X)[lags], msd_direct(X, lags)) <= 1e-6


def test_selected_lags_match_reference(simd_level, rng, device):
    X = weight_like(300, 70, 1e-4, seed=3)
    lags = np.array([299, 0, 1, 7, 150, 2])
    got = fd.msd(X, lags=lags, device=device)
    np.testing.assert_allclose(got, msd_direct(X, lags), rtol=1e-12, atol=0)
    assert got[1] == 0.0


def test_selected_lags_equal_all_lags(rng, device):
    X = weight_like(500, 200, 1e-3, seed=4)
    lags = np.arange(0, 500, 7)
    np.testing.assert_allclose(fd.msd(X, lags=lags, device=device),
                               fd.msd(X, device=device)[lags], rtol=1e-9)


def test_empty_lags_gives_empty_result(rng):
    out = fd.msd(rng.standard_normal((10, 3)), lags=[])
    assert out.shape == (0,) and out.dtype == np.float64


def test_constant_columns_give_zero(device):
    X = np.full((50, 20), 3.25, dtype=np.float32)
    np.testing.assert_array_equal(fd.msd(X, device=device), np.zeros(50))


def test_ballistic_motion_is_exact(device):
    # x_d(t) = v_d t  ->  msd(tau) = |v|^2 tau^2
    v = np.array([0.5, -1.0, 2.0])
    t = np.arange(200.0)
    X = t[:, None] * v
    tau = np.arange(200.0)
    np.testing.assert_allclose(fd.msd(X, device=device)[1:], (v @ v) * tau[1:] ** 2, rtol=1e-10)


def test_one_dimensional_input_is_one_coordinate(rng, device):
    x = np.cumsum(rng.standard_normal(100))
    np.testing.assert_allclose(fd.msd(x, device=device), fd.msd(x[:, None], device=device),
                               rtol=0, atol=0)
    np.testing.assert_allclose(fd.msd(x, device=device)[1:], msd_direct(x)[1:], rtol=1e-10)


def test_threads_give_the_same_answer(rng):
    X = weight_like(700, 333, 1e-4, seed=9)
    one = fd.msd(X, n_threads=1)
    np.testing.assert_allclose(fd.msd(X, n_threads=2), one, rtol=1e-12)
    np.testing.assert_allclose(fd.msd(X, n_threads=3), one, rtol=1e-12)
    np.testing.assert_array_equal(fd.msd(X, n_threads=2), fd.msd(X, n_threads=2))


@pytest.mark.parametrize("ref", [0, 5, -1])
def test_displacement_matches_reference(simd_level, rng, ref, device):
    X = weight_like(90, 37, 1e-3, seed=ref + 10)
    got = fd.displacement(X, ref=ref, device=device)
    assert got.dtype == np.float64 and got.shape == (90,)
    np.testing.assert_allclose(got, displacement_direct(X, ref), rtol=1e-12)
    assert got[ref] == 0.0


def test_displacement_single_snapshot(device):
    np.testing.assert_array_equal(fd.displacement(np.ones((1, 4)), device=device), [0.0])


def test_msd_accumulator_merges_blocks(rng):
    X = weight_like(257, 90, 1e-3, seed=11)
    whole = fd.MSDAccumulator(257)
    assert whole.fold(X) == 0
    left, right = fd.MSDAccumulator(257), fd.MSDAccumulator(257)
    left.fold(np.ascontiguousarray(X[:, :41]))
    right.fold(np.ascontiguousarray(X[:, 41:]))
    merged = left.merge(right)
    assert merged.n_cols == 90
    np.testing.assert_allclose(merged.result(), whole.result(), rtol=1e-10)
    with pytest.raises(ValueError, match="cannot merge"):
        whole.merge(fd.MSDAccumulator(256))

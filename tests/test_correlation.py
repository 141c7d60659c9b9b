"""Pairwise distances, correlation dimension, MSD cross-check and trajectory PCA."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fractaldiff as fd

from reference import msd_direct, sqdist_direct, weight_like

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_sqdist_close(got, X, rtol=1e-9):
    ref = sqdist_direct(X)
    Xf = np.asarray(X, dtype=np.float64).reshape(len(ref), -1)
    spread = np.sum((Xf - Xf.mean(axis=0)) ** 2, axis=1)
    # the documented bound is relative to the spread about the mean (centred Gram)
    atol = 1e-13 * (Xf.shape[1] + 300) * (spread[:, None] + spread[None, :] + 1e-300)
    assert np.all(np.abs(got - ref) <= rtol * ref + atol)
    assert np.all(got == got.T) and np.all(np.diag(got) == 0) and np.all(got >= 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (25, 7), (49, 300), (100, 513)])
def test_equals_pdist(simd_level, rng, dtype, shape):
    X = rng.standard_normal(shape).astype(dtype)
    assert_sqdist_close(fd.pairwise_sqdist(X), X)


@pytest.mark.parametrize(
    "view", [lambda X: X[::2, ::3], lambda X: X[::-1, ::-1], np.asfortranarray,
             lambda X: X.astype(">f4"), lambda X: X[:, 0]]
)
def test_layouts(rng, view):
    X = rng.standard_normal((90, 70)).astype(np.float32)
    Y = view(X)
    assert_sqdist_close(fd.pairwise_sqdist(Y), np.asarray(Y, dtype=np.float64))


def test_weight_like_accuracy():
    # large offsets, tiny steps: float64-accurate distances relative to the distances themselves
    X = weight_like(300, 3000, 1e-4, seed=3)
    ref = sqdist_direct(X)
    got = fd.pairwise_sqdist(X)
    off = ~np.eye(len(ref), dtype=bool)
    assert np.max(np.abs(got - ref)[off] / ref[off]) < 1e-10


def test_thread_count_does_not_change_bits(rng):
    X = rng.standard_normal((130, 900))
    a = fd.pairwise_sqdist(X, n_threads=1)
    b = fd.pairwise_sqdist(X, n_threads=2)
    np.testing.assert_array_equal(a, b)


def test_gram_adds_over_column_blocks(rng):
    X = rng.standard_normal((60, 400))
    g = fd.centered_gram(X)
    parts = fd.centered_gram(X[:, :150]) + fd.centered_gram(X[:, 150:])
    np.testing.assert_allclose(parts, g, rtol=1e-12, atol=1e-10)
    Xc = X - X.mean(axis=0)
    np.testing.assert_allclose(g, Xc @ Xc.T, rtol=1e-10, atol=1e-9)


finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


@st.composite
def clouds(draw):
    t = draw(st.integers(1, 40))
    d = draw(st.integers(1, 30))
    return draw(arrays(np.float64, (t, d), elements=finite))


@SETTINGS
@given(clouds())
def test_properties(X):
    got = fd.pairwise_sqdist(X)
    assert_sqdist_close(got, X)
    # translation invariance (the centred Gram removes any offset; compare against the
    # reference of the shifted values, since rounding in X + shift itself may lose digits)
    Y = X + np.linspace(-5, 5, X.shape[1])
    assert_sqdist_close(fd.pairwise_sqdist(Y), Y)
    Z = X + 2.0**20  # a large offset: distances stay float64-accurate relative to the spread
    assert_sqdist_close(fd.pairwise_sqdist(Z), Z)
    perm = np.random.default_rng(0).permutation(X.shape[1])
    assert_sqdist_close(fd.pairwise_sqdist(X[:, perm]), X)  # permutation invariance


def test_msd_cross_check(rng):
    X = np.cumsum(rng.standard_normal((200, 30)), axis=0)
    m = fd.msd_from_sqdist(fd.pairwise_sqdist(X))
    np.testing.assert_allclose(m[1:], msd_direct(X)[1:], rtol=1e-9)
    np.testing.assert_allclose(m[1:], fd.msd(X)[1:], rtol=1e-9)
    est = fd.correlation_dimension(X, theiler=5)
    np.testing.assert_allclose(est.details["msd"], m)


def test_trajectory_pca(rng):
    X = np.cumsum(rng.standard_normal((150, 60)), axis=0) + 10.0
    pca = fd.trajectory_pca(X, n_components=5)
    Xc = X - X.mean(axis=0)
    s = np.linalg.svd(Xc, compute_uv=False)
    np.testing.assert_allclose(pca.explained_variance, s[:5] ** 2 / 149, rtol=1e-9)
    np.testing.assert_allclose(pca.explained_variance_ratio, s[:5] ** 2 / np.sum(s**2),
                               rtol=1e-9)
    # scores are the centred snapshots projected on the principal axes
    np.testing.assert_allclose(np.abs(pca.scores.T @ pca.scores), np.diag(s[:5] ** 2),
                               rtol=1e-8, atol=1e-6 * s[0] ** 2)
    assert pca.scores.shape == (150, 5)
    assert "TrajectoryPCA" in repr(pca)


def test_pca_projection_box_counting(rng):
    # a segment in 40-D: one principal component carries everything
    X = rng.uniform(size=(3000, 1)) @ rng.standard_normal((1, 40))
    pca = fd.trajectory_pca(X, n_components=2)
    assert pca.explained_variance_ratio[0] > 0.999
    est = pca.box_counting_dimension(min_count=4, max_fill=0.125)
    assert abs(est.dimension - 1) < 0.15


def test_plane_dimension_and_plot(rng, tmp_path):
    Q = np.linalg.qr(rng.standard_normal((50, 2)))[0].T
    X = rng.uniform(size=(2000, 2)) @ Q
    est = fd.correlation_dimension(X)
    assert abs(est.dimension - 2) < 0.1
    assert est.takens == pytest.approx(2, abs=0.25)
    assert est.takens_stderr > 0 and est.stderr > 0
    assert est.window_rule.startswith("auto")
    manual = fd.correlation_dimension(X, window=est.window)
    assert manual.dimension == pytest.approx(est.dimension)
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = est.plot()
    ax.figure.savefig(tmp_path / "corr.png")
    assert "correlation" in repr(est)


def test_theiler_window_removes_time_neighbours(rng):
    # a slow random walk: without a Theiler window, consecutive snapshots dominate small r
    X = np.cumsum(rng.standard_normal((600, 3)) * 0.01, axis=0)
    small = fd.correlation_dimension(X, theiler=1, window=(1e-3, 1e-2))
    assert small.details["n_pairs"] == 600 * 599 // 2
    wide = fd.correlation_dimension(X, theiler=50, window=(0.05, 0.2))
    assert wide.details["n_pairs"] == (600 - 50) * (600 - 49) // 2


# ---------------------------------------------------------------------------- bad input
def test_bad_input(rng):
    X = rng.standard_normal((30, 4))
    with pytest.raises(ValueError, match="theiler=30 must be smaller than .* T=30"):
        fd.correlation_dimension(X, theiler=30)
    with pytest.raises(ValueError, match="theiler must be >= 1"):
        fd.correlation_dimension(X, theiler=0)
    with pytest.raises(TypeError, match="theiler must be an integer"):
        fd.correlation_dimension(X, theiler=2.5)
    with pytest.raises(ValueError, match="needs at least 3"):
        fd.correlation_dimension(X[:2])
    with pytest.raises(ValueError, match="a fit needs at least 3"):
        fd.correlation_dimension(X[:6])
    with pytest.raises(ValueError, match="identical"):
        fd.correlation_dimension(np.ones((10, 3)))
    with pytest.raises(ValueError, match="window must satisfy"):
        fd.correlation_dimension(X, window=(1.0, 0.5))
    for func in (fd.pairwise_sqdist, fd.correlation_dimension, fd.trajectory_pca):
        with pytest.raises(ValueError, match="3-D array"):
            func(np.zeros((3, 3, 3)))
        with pytest.raises(ValueError, match="D=0 parameters"):
            func(np.zeros((5, 0)))
        Y = X.copy()
        Y[7, 2] = np.inf
        with pytest.raises(ValueError, match="t=7, parameter d=2"):
            func(Y)
        with pytest.raises(TypeError, match="unexpected keyword"):
            func(X, bogus=1)
    with pytest.raises(ValueError, match="device must be"):
        fd.pairwise_sqdist(X, device="gpu")
    from fractaldiff.engine.gpu import cuda_usable

    if not cuda_usable()[0]:  # a clear error naming the argument, never a crash
        for func in (fd.pairwise_sqdist, fd.centered_gram, fd.correlation_dimension,
                     fd.trajectory_pca):
            with pytest.raises(RuntimeError,
                               match=r"device='cuda'.*(without CUDA|no CUDA device)"):
                func(X, device="cuda")
    with pytest.raises(ValueError, match="too large"):
        fd.pairwise_sqdist(np.array([[1e300, 0.0], [-1e300, 0.0]]))


def test_correlation_dimension_peak_memory_near_its_distance_matrix():
    # the (T, T) squared-distance matrix plus the sorted pair distances (half of it) and
    # smaller work arrays: at most 2.2x the matrix (index arrays of the triangle took 3x)
    import tracemalloc

    rng = np.random.default_rng(0)
    T = 1500
    X = np.cumsum(rng.standard_normal((T, 20)), axis=0)
    tracemalloc.start()
    try:
        est = fd.correlation_dimension(X, theiler=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(est.dimension)
    assert peak <= 2.2 * T * T * 8, peak / (T * T * 8)

"""Box counting: the kernel against np.unique over quantized rows, invariances, bad input."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fractaldiff as fd
import fractaldiff._core as core
from fractaldiff.fractal.boxcount import chao1, grid_offsets

from reference import box_counts_direct, box_occupancy_direct

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def kernel_counts(X, origin, eps0, n_scales, col_start=0, seed=7, n_threads=0):
    X = np.asarray(X)
    ids = np.zeros((X.shape[0], n_scales, 2), dtype=np.uint64)
    assert core.fold_box_ids(X, col_start, np.asarray(origin, float), eps0, n_scales, seed, ids,
                             n_threads) == core.STATUS_OK
    return ids, np.array([np.unique(ids[:, k, :], axis=0).shape[0] for k in range(n_scales)])


def random_origin(X, coarsest, seed=0):
    return X.min(axis=0) - grid_offsets(np.arange(X.shape[1]), coarsest, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (200, 37), (333, 1031)])
def test_kernel_equals_unique_reference(simd_level, rng, dtype, shape):
    X = rng.standard_normal(shape).astype(dtype)
    eps0, k = 0.01, 12
    origin = random_origin(X.astype(np.float64), eps0 * 2 ** (k - 1))
    _, got = kernel_counts(X, origin, eps0, k)
    np.testing.assert_array_equal(got, box_counts_direct(X, origin, eps0, k))


def test_public_counts_equal_reference(rng):
    X = rng.standard_normal((500, 40))
    eps, counts = fd.box_counts(X, eps0=0.05, n_scales=9, seed=3)
    np.testing.assert_allclose(eps, 0.05 * 2.0 ** np.arange(9))
    origin = X.min(axis=0) - grid_offsets(np.arange(40), 0.05 * 2**8, seed=3, grid=0)
    np.testing.assert_array_equal(counts, box_counts_direct(X, origin, 0.05, 9))


def test_ids_add_over_column_blocks_and_threads(rng):
    X = rng.standard_normal((300, 700))
    origin = random_origin(X, 0.1 * 2**9)
    whole, _ = kernel_counts(X, origin, 0.1, 10)
    parts = np.zeros_like(whole)
    for a, b in [(0, 123), (123, 500), (500, 700)]:
        ids, _ = kernel_counts(X[:, a:b], origin[a:b], 0.1, 10, col_start=a)
        parts += ids
    np.testing.assert_array_equal(parts, whole)
    one_thread, _ = kernel_counts(X, origin, 0.1, 10, n_threads=1)
    np.testing.assert_array_equal(one_thread, whole)


@pytest.mark.parametrize(
    "view", [lambda X: X[::2, ::3], lambda X: X[::-1, ::-1], np.asfortranarray,
             lambda X: X.astype(">f8")]
)
def test_layouts(rng, view):
    X = rng.standard_normal((120, 50))
    Y = view(X)
    ref = np.ascontiguousarray(Y, dtype=np.float64)
    np.testing.assert_array_equal(fd.box_counts(Y, n_scales=10)[1],
                                  fd.box_counts(ref, n_scales=10)[1])


@st.composite
def dyadic_clouds(draw, max_t=60, max_d=12):
    t = draw(st.integers(1, max_t))
    d = draw(st.integers(1, max_d))
    k = draw(arrays(np.int64, (t, d), elements=st.integers(-(2**12), 2**12)))
    return k / 64.0


@SETTINGS
@given(dyadic_clouds(), st.integers(0, 2**20), st.integers(0, 5))
def test_properties(X, seed, n_grids):
    eps, counts = fd.box_counts(X, n_grids=n_grids + 1, seed=seed, n_scales=12)
    # counts are non-increasing with eps and at most T (per grid, hence on average)
    assert np.all(np.diff(counts) <= 1e-12)
    assert counts.max() <= X.shape[0] and counts.min() >= 1
    distinct = np.unique(X, axis=0).shape[0]
    assert counts[0] <= distinct
    # translation: a dyadic shift keeps x - min exact, so the counts are identical
    shift = np.arange(X.shape[1]) * 0.5 - 3.25
    np.testing.assert_array_equal(
        fd.box_counts(X + shift, n_grids=n_grids + 1, seed=seed, n_scales=12)[1], counts)


@SETTINGS
@given(dyadic_clouds(), st.randoms(use_true_random=False))
def test_permutation_of_coordinates(X, rnd):
    # permuting coordinates together with their grid offsets leaves the counts unchanged
    perm = np.arange(X.shape[1])
    rnd.shuffle(perm)
    origin = random_origin(X, 1.0 / 64 * 2**11, seed=5)
    _, a = kernel_counts(X, origin, 1.0 / 64, 12)
    _, b = kernel_counts(X[:, perm], origin[perm], 1.0 / 64, 12, seed=99)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, box_counts_direct(X, origin, 1.0 / 64, 12))


def test_random_offsets_restore_power_law_in_high_d(rng):
    # a rotated segment in D = 2000 spans ~1/sqrt(D) of its length
    # per axis; anchored at each coordinate's minimum, N(eps) jumps from 1 to ~T in an octave
    t, d = 8000, 2000
    u = rng.uniform(size=(t, 1))
    direction = rng.standard_normal((1, d))
    X = (u @ (direction / np.linalg.norm(direction))).astype(np.float32)
    est = fd.box_counting_dimension(X, n_grids=2)
    assert abs(est.dimension - 1.0) < 0.15
    assert est.window[1] / est.window[0] >= 8  # a real scaling range
    eps0, k = float(est.eps[0]), len(est.eps)
    _, anchored = kernel_counts(X, X.min(axis=0).astype(np.float64), eps0, k)
    ratios = anchored[:-1] / anchored[1:]
    assert ratios.max() > 10  # degenerate: a 1-D set should double N per octave at most
    assert np.all(anchored[-3:] == 1)  # ... after sitting in one box for the coarse octaves


def test_identical_points():
    X = np.ones((10, 4))
    eps, counts = fd.box_counts(X)
    assert np.all(counts == 1)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("func", [fd.box_counts, fd.box_counting_dimension])
def test_bad_input(func):
    with pytest.raises(ValueError, match="3-D array"):
        func(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="T=0 snapshot"):
        func(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="D=0 parameters"):
        func(np.zeros((3, 0)))
    with pytest.raises(TypeError, match="complex"):
        func(np.zeros((3, 2), complex))
    X = np.random.default_rng(0).standard_normal((20, 5))
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="eps0 must be a finite number > 0"):
            func(X, eps0=bad)
    with pytest.raises(TypeError, match="eps0 must be a positive number"):
        func(X, eps0="1")
    with pytest.raises(ValueError, match="eps0=.* is too small"):
        func(X, eps0=1e-12)
    with pytest.raises(ValueError, match="n_scales must be <= 31"):
        func(X, n_scales=40)
    with pytest.raises(ValueError, match="n_grids must be >= 1"):
        func(X, n_grids=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        func(X, bogus=1)
    with pytest.raises(ValueError, match="device must be"):
        func(X, device="gpu")
    from fractaldiff.engine.gpu import cuda_usable

    if not cuda_usable()[0]:  # a clear error naming the argument, never a crash
        with pytest.raises(RuntimeError, match=r"device='cuda'.*(without CUDA|no CUDA device)"):
            func(X, device="cuda")
    Y = X.astype(np.float32)
    Y[4, 3] = np.nan
    with pytest.raises(ValueError, match="t=4, parameter d=3"):
        func(Y)


@SETTINGS
@given(
    X=arrays(np.float64, st.tuples(st.integers(20, 200), st.integers(1, 6)),
             elements=st.floats(-4, 4, allow_nan=False, width=64)),
    seed=st.integers(0, 50),
)
def test_occupancy_and_chao1_equal_reference(X, seed):
    # counts, singletons and doubletons per scale against np.unique(return_counts=True)
    eps0, k = 0.05, 9
    origin = X.min(axis=0) - grid_offsets(np.arange(X.shape[1]), eps0 * 2 ** (k - 1), seed=seed)
    est = fd.box_counting_dimension(X, eps0=eps0, n_scales=k, seed=seed, window=(0.05, 12.8))
    ref = box_occupancy_direct(X, origin, eps0, k)
    np.testing.assert_array_equal(est.details["raw_counts"], ref[:, 0])
    np.testing.assert_array_equal(est.details["singletons"][0], ref[:, 1])
    np.testing.assert_array_equal(est.details["doubletons"][0], ref[:, 2])
    n, f1, f2 = ref.T.astype(float)
    np.testing.assert_allclose(est.counts, n + f1 * (f1 - 1) / (2 * (f2 + 1)))
    assert np.all(est.counts >= est.details["raw_counts"])  # never fewer than seen
    np.testing.assert_allclose(est.details["coverage"], 1 - f1 / X.shape[0])
    raw = fd.box_counting_dimension(X, eps0=eps0, n_scales=k, seed=seed, window=(0.05, 12.8),
                                    correction=None)
    np.testing.assert_array_equal(raw.counts, ref[:, 0])
    assert raw.details["stderr_terms"]["sampling"] == 0.0


def test_chao1_recovers_unseen_boxes_of_equal_mass():
    # M equally likely boxes, T draws: Chao1 is nearly unbiased; the raw count is not
    rng = np.random.default_rng(1)
    m, t = 5000, 5000
    est, seen = [], []
    for _ in range(20):
        c = np.bincount(rng.integers(0, m, size=t), minlength=m)
        c = c[c > 0]
        seen.append(c.size)
        est.append(chao1(c.size, np.sum(c == 1), np.sum(c == 2)))
    assert np.mean(seen) < 0.65 * m  # ~ m (1 - 1/e)
    assert abs(np.mean(est) / m - 1) < 0.03
    assert chao1(10, 0, 3) == 10  # no singletons: nothing unseen


def test_correction_lifts_low_bias_of_a_filled_square():
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(20000, 2)) @ np.linalg.qr(rng.standard_normal((8, 2)))[0].T
    corrected = fd.box_counting_dimension(X, n_grids=2)
    raw = fd.box_counting_dimension(X, n_grids=2, correction=None, window=corrected.window)
    assert raw.dimension < corrected.dimension <= 2.05
    assert corrected.details["raw_dimension"] == pytest.approx(raw.dimension)
    assert corrected.stderr >= corrected.details["stderr_terms"]["sampling"] > 0


def test_bad_fit_options():
    X = np.random.default_rng(0).standard_normal((200, 3))
    with pytest.raises(ValueError, match="correction must be 'chao1' or None"):
        fd.box_counting_dimension(X, correction="jackknife")
    with pytest.raises(ValueError, match=r"min_coverage must lie in \[0, 1\]"):
        fd.box_counting_dimension(X, min_coverage=1.5)
    with pytest.raises(TypeError, match="min_coverage must be a number"):
        fd.box_counting_dimension(X, min_coverage="high")
    with pytest.raises(ValueError, match=r"max_fill must lie in \(0, 1\]"):
        fd.box_counting_dimension(X, max_fill=0)
    with pytest.raises(ValueError, match=r"tolerance must lie in \(0, 1\)"):
        fd.box_counting_dimension(X, tolerance=0)


def test_too_few_scales_message():
    X = np.random.default_rng(0).standard_normal((30, 3))
    with pytest.raises(ValueError, match="needs at least 3"):
        fd.box_counting_dimension(X)


def test_manual_window_and_plot(rng, tmp_path):
    X = rng.uniform(size=(20000, 1)) @ rng.standard_normal((1, 10))
    est = fd.box_counting_dimension(X)
    assert est.window_rule.startswith("auto")
    lo, hi = est.window
    manual = fd.box_counting_dimension(X, window=(lo, hi))
    assert manual.window_rule == "manual"
    assert manual.dimension == pytest.approx(est.dimension)
    with pytest.raises(ValueError, match="holds 0 scale"):
        fd.box_counting_dimension(X, window=(1e-9, 1.1e-9))
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    ax = est.plot()
    ax.figure.savefig(tmp_path / "box.png")
    assert (tmp_path / "box.png").stat().st_size > 0
    assert "box counting" in repr(est)


def test_n_grids_is_bounded():
    X = np.random.default_rng(0).standard_normal((32, 4))
    with pytest.raises(ValueError, match="n_grids must be <= 1024"):
        fd.box_counts(X, n_grids=10**30)
    with pytest.raises(ValueError, match="n_grids must be <= 1024"):
        fd.box_counting_dimension(X, n_grids=1025)

"""Properties of the fold engine: parameter groups, streaming within memory_limit, snapshot
ranges, and the shared option checks, for every analysis that goes through it."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fractaldiff as fd
from fractaldiff.engine.sources import SlicedSource

from reference import displacement_direct, msd_direct, sqdist_direct

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Lazy:
    """An out-of-core array: shape, dtype and numpy slicing, nothing else (read per block)."""

    def __init__(self, a, layout=None):
        self._a, self.shape, self.dtype = a, a.shape, a.dtype
        if layout is not None:
            self.layout = layout

    def __getitem__(self, key):
        return np.array(self._a[key])


@st.composite
def data_and_groups(draw, min_rows=2):
    t = draw(st.integers(min_rows, 40))
    d = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # dyadic values: sums of squares are exact in float64, so results compare exactly
    X = rng.integers(-64, 64, size=(t, d)).astype(np.float64) / 8.0
    n_groups = draw(st.integers(1, 4))
    groups = {}
    for g in range(n_groups):
        kind = draw(st.sampled_from(["slice", "indices", "mask"]))
        if kind == "slice":
            a = draw(st.integers(0, d - 1))
            b = draw(st.integers(a + 1, d))
            groups[f"g{g}"] = slice(a, b)
        else:
            cols = draw(st.lists(st.integers(0, d - 1), min_size=1, max_size=d, unique=True))
            if kind == "mask":
                mask = np.zeros(d, bool)
                mask[cols] = True
                groups[f"g{g}"] = mask
            else:
                groups[f"g{g}"] = np.array(cols)
    return X, groups


def columns(sel, d):
    if isinstance(sel, slice):
        return np.arange(d)[sel]
    sel = np.asarray(sel)
    return np.flatnonzero(sel) if sel.dtype == bool else np.unique(sel)


# ---- overlapping groups == one call per group ----------------------------------------------------


@SETTINGS
@given(data_and_groups())
def test_groups_equal_per_group_calls(case):
    X, groups = case
    t, d = X.shape
    lags = [lag for lag in (0, 1, t - 1) if lag < t]
    lags = sorted(set(lags))
    res = {
        "msd": fd.msd(X, groups=groups),
        "lags": fd.msd(X, lags=lags, groups=groups),
        "disp": fd.displacement(X, ref=-1, groups=groups),
        "gram": fd.centered_gram(X, groups=groups),
        "sqdist": fd.pairwise_sqdist(X, groups=groups),
    }
    for name in [*groups, "total"]:
        sub = X if name == "total" else X[:, columns(groups[name], d)]
        np.testing.assert_allclose(res["msd"][name], msd_direct(sub), rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(res["lags"][name], msd_direct(sub, lags))
        np.testing.assert_allclose(res["disp"][name], displacement_direct(sub, -1), rtol=1e-12)
        np.testing.assert_allclose(res["gram"][name], fd.centered_gram(sub), rtol=1e-9,
                                   atol=1e-9)
        np.testing.assert_allclose(res["sqdist"][name], sqdist_direct(sub), rtol=1e-9,
                                   atol=1e-9)


@SETTINGS
@given(data_and_groups(min_rows=1), st.integers(1, 3), st.integers(0, 2**40))
def test_box_count_groups_equal_masked_calls(case, n_grids, seed):
    # a group's boxes are those of the snapshots projected on its coordinates: the same as the
    # whole with every other coordinate held constant (same grid: same eps0 and columns)
    X, groups = case
    d = X.shape[1]
    kw = dict(eps0=0.125, n_scales=8, n_grids=n_grids, seed=seed)
    res = fd.box_counts(X, groups=groups, **kw)
    for name in [*groups, "total"]:
        Y = X.copy()
        if name != "total":
            keep = np.zeros(d, bool)
            keep[columns(groups[name], d)] = True
            Y[:, ~keep] = 0.0
        eps, counts = fd.box_counts(Y, **kw)
        np.testing.assert_array_equal(res[name][0], eps)
        np.testing.assert_array_equal(res[name][1], counts)


# ---- streaming within memory_limit == in memory ----------------------------------------------


@SETTINGS
@given(st.integers(2, 300), st.integers(1, 3000), st.integers(0, 2**32 - 1),
       st.sampled_from([np.float32, np.float64, np.int16]))
def test_streaming_equals_in_memory(t, d, seed, dtype):
    rng = np.random.default_rng(seed)
    X = np.cumsum(rng.standard_normal((t, d)), axis=0)
    X = (X * 4).astype(dtype) if dtype == np.int16 else X.astype(dtype)
    lazy = Lazy(X)
    limit = max(2**20, 3 * t * 8 * 7)  # a few columns per block: many blocks
    np.testing.assert_allclose(fd.msd(lazy, memory_limit=limit), fd.msd(X), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(fd.displacement(lazy, memory_limit=limit), fd.displacement(X),
                               rtol=1e-12)
    np.testing.assert_array_equal(fd.box_counts(lazy, memory_limit=limit, n_grids=2)[1],
                                  fd.box_counts(X, n_grids=2)[1])
    if t <= 120:
        np.testing.assert_allclose(fd.centered_gram(lazy, memory_limit=limit),
                                   fd.centered_gram(X), rtol=1e-10, atol=1e-10)


def test_box_counts_read_the_data_once_when_the_grid_is_given():
    X = np.cumsum(np.random.default_rng(1).standard_normal((64, 500)), axis=0)
    reads = []

    class Counting(Lazy):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

    src = Counting(X)
    fd.box_counts(src, eps0=0.5, n_scales=10, n_grids=4, memory_limit=2**20)
    once = len(reads)
    reads.clear()
    fd.box_counts(src, n_grids=4, memory_limit=2**20)  # + the min/max pass for the grid
    assert len(reads) == 2 * once
    assert once == -(-500 // (2**20 // (3 * 64 * 8)))  # every column block exactly once


# ---- snapshot ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize("start, stop", [(0, None), (5, 40), (-30, -2), (None, 17)])
def test_start_stop_equal_sliced_input(start, stop):
    X = np.cumsum(np.random.default_rng(2).standard_normal((50, 30)), axis=0)
    Y = X[start:stop]
    for src in (X, Lazy(X)):
        np.testing.assert_allclose(fd.msd(src, start=start, stop=stop), fd.msd(Y), rtol=1e-12)
        np.testing.assert_array_equal(fd.msd(src, [1, 3], start=start, stop=stop),
                                      fd.msd(Y, [1, 3]))
        np.testing.assert_array_equal(fd.displacement(src, ref=2, start=start, stop=stop),
                                      fd.displacement(Y, ref=2))
        np.testing.assert_array_equal(fd.box_counts(src, start=start, stop=stop)[1],
                                      fd.box_counts(Y)[1])
        np.testing.assert_allclose(fd.pairwise_sqdist(src, start=start, stop=stop),
                                   fd.pairwise_sqdist(Y), rtol=1e-12, atol=1e-12)


def test_start_stop_errors():
    X = np.zeros((10, 3))
    with pytest.raises(TypeError, match="start must be an integer"):
        fd.msd(X, start=1.5)
    with pytest.raises(ValueError, match="T=1 snapshot"):
        fd.msd(X, start=9)


# ---- named groupings of a recorded layout --------------------------------------------------------


def test_groups_parameters_modules_and_layers():
    X = np.cumsum(np.random.default_rng(3).standard_normal((20, 16)), axis=0)
    layout = [{"name": "fc1.weight", "offset": 0, "shape": [2, 4]},
              {"name": "fc1.bias", "offset": 8, "shape": [2]},
              {"name": "out.weight", "offset": 10, "shape": [1, 5]},
              {"name": "scale", "offset": 15, "shape": [1]}]
    src = SlicedSource(Lazy(X, layout))
    params = fd.msd(src, groups="parameters")
    assert list(params) == ["total", "fc1.weight", "fc1.bias", "out.weight", "scale"]
    np.testing.assert_allclose(params["fc1.bias"], fd.msd(X[:, 8:10]), rtol=1e-12)
    layers = fd.msd(src, groups="layers")
    assert layers.keys() == params.keys()
    modules = fd.displacement(src, groups="modules")
    assert list(modules) == ["total", "fc1", "out", "scale"]
    np.testing.assert_allclose(modules["fc1"], fd.displacement(X[:, :10]), rtol=1e-12)
    np.testing.assert_allclose(modules["out"], fd.displacement(X[:, 10:15]), rtol=1e-12)
    with pytest.raises(ValueError, match="'parameters', 'modules' or 'layers'"):
        fd.msd(src, groups="tensors")
    with pytest.raises(ValueError, match="groups='modules' needs a source that records"):
        fd.msd(X, groups="modules")


# ---- the shared options -----------------------------------------------------------------------

ANALYSES = [fd.msd, fd.displacement, fd.box_counts, fd.box_counting_dimension,
            fd.pairwise_sqdist, fd.centered_gram, fd.correlation_dimension, fd.trajectory_pca]


@pytest.mark.parametrize("func", ANALYSES, ids=lambda f: f.__name__)
def test_options_are_explicit_and_checked(func):
    import inspect

    params = inspect.signature(func).parameters
    for name in ("n_threads", "device", "memory_limit", "progress"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    X = np.random.default_rng(0).standard_normal((40, 3))
    for bad in ("inf", float("inf"), "nan", float("nan"), "-1GB"):
        with pytest.raises(ValueError, match="memory_limit must be"):
            func(X, memory_limit=bad)
    for bad in ("no", "yes", 1, 0.0):
        with pytest.raises(TypeError, match="progress must be True, False or None"):
            func(X, progress=bad)
    with pytest.raises(ValueError, match="device must be"):
        func(X, device="gpu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        func(X, bogus=1)


@pytest.mark.parametrize("func", ANALYSES, ids=lambda f: f.__name__)
def test_masked_arrays_are_refused(func):
    X = np.ma.masked_array(np.random.default_rng(0).standard_normal((40, 3)))
    X[3, 1] = np.ma.masked
    with pytest.raises(TypeError, match="masked array"):
        func(X)


def test_progress_false_shows_no_bar(capsys):
    X = np.random.default_rng(0).standard_normal((40, 3))
    fd.msd(X, progress=False)
    assert capsys.readouterr().err == ""


def test_many_grids_take_more_passes_within_memory_limit():
    # the id sums of the grids folded together stay within memory_limit / 4: here 2 grids per
    # pass (T * n_scales * 16 bytes each), and the counts are those of one pass over all grids
    X = np.cumsum(np.random.default_rng(4).standard_normal((4096, 20)), axis=0)
    limit = 2**20
    per_grid = 4096 * 16 * 16
    assert limit // 4 < per_grid  # one grid per pass
    reads = []

    class Counting(Lazy):
        def __getitem__(self, key):
            reads.append(key)
            return super().__getitem__(key)

    kw = dict(eps0=0.5, n_scales=16, seed=5)
    fd.box_counts(Counting(X), memory_limit=limit, n_grids=1, **kw)
    one_pass = len(reads)
    reads.clear()
    few = fd.box_counts(Counting(X), memory_limit=limit, n_grids=3, **kw)
    assert len(reads) == 3 * one_pass
    many = fd.box_counts(X, memory_limit=2**30, n_grids=3, **kw)
    np.testing.assert_array_equal(few[1], many[1])

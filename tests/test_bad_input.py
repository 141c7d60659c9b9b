"""Bad input must give a clear Python exception naming the argument, never a crash or hang."""

import numpy as np
import pytest

import fractaldiff as fd


@pytest.fixture
def X(rng):
    return rng.standard_normal((20, 6))


@pytest.mark.parametrize("func", [fd.msd, fd.displacement])
def test_zero_and_three_dimensional(func):
    with pytest.raises(ValueError, match=r"X must be 1-D \(T,\) or 2-D .*0-D"):
        func(np.float64(1.0))
    with pytest.raises(ValueError, match=r"3-D array of shape \(2, 3, 4\)"):
        func(np.zeros((2, 3, 4)))


def test_too_few_snapshots():
    with pytest.raises(ValueError, match="T=1 snapshot"):
        fd.msd(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="T=0 snapshot"):
        fd.msd(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="T=0 snapshot"):
        fd.displacement(np.zeros((0, 5)))


@pytest.mark.parametrize("func", [fd.msd, fd.displacement])
def test_no_parameters(func):
    with pytest.raises(ValueError, match="D=0 parameters"):
        func(np.zeros((5, 0)))


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (np.zeros((4, 2), dtype=complex), TypeError, "complex dtype"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "real numbers"),
        (np.array([[object(), 1]], dtype=object).repeat(3, 0), TypeError, "real numbers"),
        (np.zeros((4, 2), dtype="datetime64[s]"), TypeError, "real numbers"),
        ([[1.0, 2.0], [3.0]], TypeError, "could not be converted"),
    ],
)
def test_bad_dtypes(bad, exc, match):
    with pytest.raises(exc, match=match):
        fd.msd(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, ">f8"])
@pytest.mark.parametrize("func", [fd.msd, fd.displacement, lambda X: fd.msd(X, lags=[1, 2])])
def test_nonfinite_named_by_position(X, value, dtype, func):
    Y = X.astype(dtype)
    Y[13, 4] = value
    Y[15, 0] = value  # a later one must not be the one reported
    with pytest.raises(ValueError, match=r"X contains .* at snapshot t=13, parameter d=4"):
        func(Y)


def test_nonfinite_in_wide_array_found(rng):
    Y = rng.standard_normal((40, 1000)).astype(np.float32)
    Y[39, 999] = np.nan
    with pytest.raises(ValueError, match="t=39, parameter d=999"):
        fd.msd(Y)


def test_overflowing_values():
    Y = np.full((4, 3), 1e200)
    Y[2, 1] = -1e200
    with pytest.raises(ValueError, match="too large"):
        fd.msd(Y)


@pytest.mark.parametrize(
    "lags,exc,match",
    [
        ([0, 20], ValueError, r"lags\[1\] = 20 is out of range"),
        ([-1], ValueError, r"lags\[0\] = -1 is out of range"),
        ([1, 2, 1], ValueError, "duplicates: \\[1\\]"),
        ([1.0, 2.0], TypeError, "lags must be integers"),
        ([True, False], TypeError, "boolean"),
        ([[1, 2]], ValueError, "1-D"),
        (3, ValueError, "1-D"),
        (["a"], TypeError, "lags must be integers"),
    ],
)
def test_bad_lags(X, lags, exc, match):
    with pytest.raises(exc, match=match):
        fd.msd(X, lags=lags)


@pytest.mark.parametrize(
    "ref,exc,match",
    [(20, IndexError, "ref=20 is out of range"), (-21, IndexError, "ref=-21"),
     (1.5, TypeError, "ref must be an integer"), (True, TypeError, "ref must be an integer")],
)
def test_bad_ref(X, ref, exc, match):
    with pytest.raises(exc, match=match):
        fd.displacement(X, ref=ref)


@pytest.mark.parametrize(
    "n,exc,match",
    [(0, ValueError, "n_threads must be >= 1"), (-2, ValueError, "n_threads"),
     (2.0, TypeError, "n_threads must be an integer"), (10**6, ValueError, "more than")],
)
def test_bad_n_threads(X, n, exc, match):
    with pytest.raises(exc, match=match):
        fd.msd(X, n_threads=n)


def test_unknown_option_and_device(X):
    with pytest.raises(TypeError, match="unexpected keyword argument.*'window'"):
        fd.msd(X, window=3)
    with pytest.raises(ValueError, match="device must be"):
        fd.msd(X, device="tpu")
    with pytest.raises(ValueError, match="device must be"):
        fd.msd(X, device="cuda:x")
    from fractaldiff.engine.gpu import cuda_usable

    if not cuda_usable()[0]:  # a clear error, never a crash, without a usable GPU
        with pytest.raises(RuntimeError, match=r"device='cuda'.*(without CUDA|no CUDA device)"):
            fd.displacement(X, device="cuda")


@pytest.mark.parametrize("name", ["box_counts", "box_counting_dimension", "pairwise_sqdist",
                                  "centered_gram", "correlation_dimension", "trajectory_pca"])
def test_device_option_of_fractal_analyses(X, name):
    func = getattr(fd, name)
    with pytest.raises(ValueError, match="device must be"):
        func(X, device="tpu")
    from fractaldiff.engine.gpu import cuda_usable

    if not cuda_usable()[0]:  # a clear error naming the argument (and the function computing)
        with pytest.raises(RuntimeError, match=r"(_counts|_dimension|_sqdist|_gram|_pca)"
                                               r"\(device='cuda'\).*(without CUDA|no CUDA)"):
            func(X, device="cuda")
    dask = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="does not take dask arrays"):
        func(dask.from_array(np.asarray(X), chunks=(-1, 2)), device="cuda")


def test_torch_gpu_and_complex_tensors(X):
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="complex"):
        fd.msd(torch.zeros((4, 2), dtype=torch.complex64))
    with pytest.raises(ValueError, match="3-D"):
        fd.msd(torch.zeros((2, 2, 2)))


def test_core_rejects_bad_arrays_directly():
    # the compiled layer checks its own arguments too (defence in depth)
    from fractaldiff import _core

    with pytest.raises(ValueError, match="native-endian float32 or float64"):
        _core.fold_displacement(np.zeros((3, 2), dtype=np.int32), 0, np.zeros(3))
    with pytest.raises(ValueError, match="must be 2-D"):
        _core.fold_displacement(np.zeros(3), 0, np.zeros(3))
    with pytest.raises(ValueError, match="power-of-two"):
        _core.fold_msd_fft(np.zeros((3, 2)), np.zeros(5), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="outside"):
        _core.fold_msd_lags(np.zeros((3, 2)), np.array([3]), np.zeros(1))
    with pytest.raises(ValueError, match="unknown or unsupported SIMD level"):
        _core.set_simd_level("sse9")


# the compiled kernels add into caller-provided output arrays: a converted temporary would take
# the results and be thrown away, so anything but the exact dtype, C order and shape is refused
def _bad_outputs(good):
    return {
        "wrong dtype": good.astype(np.float32 if good.dtype == np.float64 else np.int64),
        "byte-swapped": good.astype(good.dtype.newbyteorder()),
        "not C-contiguous": (np.asfortranarray(good) if good.ndim > 1
                             else np.zeros(2 * good.size, good.dtype)[::2]),
        "read-only": good.copy(),
        "wrong shape": np.zeros(good.size + 1, good.dtype),
        "a list": good.tolist(),
    }


def _assert_refused(call, good, name, skip=()):
    bad = _bad_outputs(good)
    bad["read-only"].flags.writeable = False
    for why, arr in bad.items():
        if why in skip:
            continue
        with pytest.raises(ValueError, match=rf"{name} must be a writable C-contiguous"):
            call(arr)
            pytest.fail(f"{name}: {why} was accepted")
    call(good)  # and the exact array is accepted


def test_core_output_arrays_are_never_converted():
    from fractaldiff import _core

    X = np.arange(12.0).reshape(4, 3)
    origin = X.min(axis=0)
    ids = np.zeros((4, 5, 2), dtype=np.uint64)
    _assert_refused(lambda a: _core.fold_box_ids(X, 0, origin, 0.5, 5, 7, a), ids, "ids")
    _assert_refused(lambda a: _core.fold_gram(X, a), np.zeros((4, 4)), "gram")
    _assert_refused(lambda a: _core.box_minmax(X, a, np.empty(3)), np.empty(3), "mins")
    _assert_refused(lambda a: _core.box_minmax(X, np.empty(3), a), np.empty(3), "maxs")
    _assert_refused(lambda a: _core.fold_displacement(X, 0, a), np.zeros(4), "out")
    _assert_refused(lambda a: _core.fold_msd_lags(X, np.array([1, 2]), a), np.zeros(2), "out")
    _assert_refused(lambda a: _core.fold_msd_fft(X, np.zeros(8), a, np.zeros(2)), np.zeros(4),
                    "sqnorm")
    # (direct's length chooses n_direct: another length is not a shape error)
    _assert_refused(lambda a: _core.fold_msd_fft(X, np.zeros(8), np.zeros(4), a), np.zeros(2),
                    "direct", skip=("wrong shape",))
    # the sums really land in the arrays passed
    ids[:] = 0
    assert _core.fold_box_ids(X, 0, origin, 0.5, 5, 7, ids) == _core.STATUS_OK
    assert ids.any()
    g = np.zeros((4, 4))
    assert _core.fold_gram(X, g) == _core.STATUS_OK
    Xc = X - X.mean(axis=0)
    np.testing.assert_allclose(np.tril(g), np.tril(Xc @ Xc.T))
    # the origins are an input: any array that converts to float64 will do
    assert _core.fold_box_ids(X, 0, origin.astype(np.float32), 0.5, 5, 7,
                              np.zeros_like(ids)) == _core.STATUS_OK

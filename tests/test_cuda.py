"""GPU-only checks: CPU/GPU agreement (hypothesis), device-array inputs (torch CUDA tensors,
__cuda_array_interface__), host streaming through pinned buffers, merging CPU and GPU partial
sums, 64-bit offsets, errors. Every test here carries the `gpu` marker and skips without a usable
GPU, unless FRACTALDIFF_REQUIRE_GPU=1 (then it fails)."""

import numpy as np
import pytest
from conftest import require_cuda, require_torch_cuda
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import fractaldiff as fd
from fractaldiff import _core

from reference import displacement_direct, msd_direct, weight_like

pytestmark = pytest.mark.gpu


def rel_err(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def close(a, b, X, rtol=1e-9):
    Xf = np.asarray(X, dtype=np.float64)
    atol = 1e-13 * Xf.shape[1] * float(np.max(np.abs(Xf - Xf[0]))) ** 2 if Xf.size else 0.0
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# ---- CPU and GPU agree on random inputs ------------------------------------------------------


@st.composite
def matrices(draw):
    T = draw(st.integers(2, 300))
    D = draw(st.integers(1, 70))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    elems = st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)
    X = draw(arrays(dtype, (T, D), elements=elems))
    return X


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices(), st.data())
def test_cpu_and_gpu_agree_on_random_inputs(X, data):
    require_cuda()
    T = X.shape[0]
    close(fd.msd(X, device="cuda"), fd.msd(X, device="cpu"), X)
    lags = data.draw(st.lists(st.integers(0, T - 1), unique=True, min_size=1, max_size=12))
    np.testing.assert_allclose(fd.msd(X, lags=lags, device="cuda"),
                               fd.msd(X, lags=lags, device="cpu"), rtol=1e-12, atol=1e-300)
    ref = data.draw(st.integers(-T, T - 1))
    np.testing.assert_allclose(fd.displacement(X, ref=ref, device="cuda"),
                               fd.displacement(X, ref=ref, device="cpu"), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("T", [2, 3, 4, 5, 8, 9, 16, 17, 33, 100, 1000, 2049, 4096, 4097, 9000])
def test_all_fft_lengths_and_both_workspaces(T):
    # T <= 4096 runs in shared memory on a Hopper GPU, larger T on a global-memory workspace
    require_cuda()
    D = 7 if T > 4096 else 33
    X = weight_like(T, D, 1e-3, seed=T)
    got = fd.msd(X, device="cuda")
    lags = np.unique(np.concatenate([np.arange(min(T, 40)),
                                     np.geomspace(1, T - 1, 25).astype(int)]))
    assert got[0] == 0.0 and np.all(got >= 0)
    close(got[lags], msd_direct(X, lags), X)
    np.testing.assert_allclose(got, fd.msd(X, device="cpu"), rtol=1e-9, atol=1e-12 * got.max())


@pytest.mark.parametrize("T,D,step", [(4096, 1000, 1e-5), (3001, 1003, 1e-3), (1000, 1001, 1e-4),
                                      (4500, 1000, 1e-5)])
def test_accuracy_contract_on_gpu(T, D, step):
    require_cuda()
    X = weight_like(T, D, step, seed=T + D)
    got = fd.msd(X, device="cuda")
    lags = np.unique(np.concatenate([np.arange(49), np.geomspace(49, T - 1, 60).astype(int)]))
    ref = msd_direct(X, lags)
    assert got[0] == 0.0 and np.all(got >= 0)
    assert rel_err(got[lags[1:]], ref[1:]) <= 1e-6


# ---- accumulators merge across devices ------------------------------------------------------


def test_cpu_and_gpu_partial_sums_merge():
    require_cuda()
    from fractaldiff._gpu import GpuAccumulator

    X = weight_like(700, 90, 1e-4, seed=5)
    whole = fd.MSDAccumulator(700)
    whole.fold(X)
    left = fd.MSDAccumulator(700)
    left.fold(np.ascontiguousarray(X[:, :37]))
    right = GpuAccumulator(fd.MSDAccumulator(700), 0, 64 << 20)
    right.fold(np.ascontiguousarray(X[:, 37:]))
    assert right.flush() == _core.STATUS_OK
    merged = left.merge(right.acc)
    assert merged.n_cols == 90
    np.testing.assert_allclose(merged.result(), whole.result(), rtol=1e-10)
    # a flushed accumulator is reset on the device: a second flush adds nothing
    before = right.acc.power.copy()
    assert right.flush() == _core.STATUS_OK
    np.testing.assert_array_equal(right.acc.power, before)


def test_groups_on_gpu_match_cpu():
    require_cuda()
    X = weight_like(200, 60, 1e-3, seed=8)
    groups = {"a": slice(0, 25), "b": np.array([3, 30, 31, 59]), "c": slice(40, 60)}
    cpu = fd.msd(X, groups=groups, device="cpu")
    gpu = fd.msd(X, groups=groups, device="cuda")
    assert set(cpu) == set(gpu)
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-9, atol=1e-12)


# ---- host streaming -------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_host_streaming_in_many_blocks(layout):
    # a 1 MiB budget forces many sub-blocks through the two pinned staging buffers
    require_cuda()
    X = weight_like(300, 3000, 1e-3, seed=2)
    Y = {"C": X, "F": np.asfortranarray(X), "strided": X[:, ::2],
         "negative": X[::-1, ::-1]}[layout]
    for kw in ({}, {"lags": [1, 7, 299]}):
        np.testing.assert_allclose(fd.msd(Y, device="cuda", memory_limit="1MiB", **kw),
                                   fd.msd(Y, device="cpu", **kw), rtol=1e-9)
    np.testing.assert_allclose(fd.displacement(Y, ref=4, device="cuda", memory_limit="1MiB"),
                               fd.displacement(Y, ref=4), rtol=1e-12)


def test_pinned_host_tensor_is_copied_directly():
    torch = require_torch_cuda()
    X = weight_like(257, 2001, 1e-3, seed=4)
    t = torch.from_numpy(X).pin_memory()
    np.testing.assert_allclose(fd.msd(t, device="cuda", memory_limit="2MiB"), fd.msd(X),
                               rtol=1e-9)
    np.testing.assert_allclose(fd.msd(t[:, 5:1500], device="cuda", memory_limit="2MiB"),
                               fd.msd(X[:, 5:1500]), rtol=1e-9)


def test_store_streams_to_gpu(tmp_path):
    require_cuda()
    X = weight_like(64, 500, 1e-3, seed=6)
    path = tmp_path / "w.npy"
    np.save(path, X)
    np.testing.assert_allclose(fd.msd(str(path), device="cuda"), fd.msd(X), rtol=1e-9)


# ---- device arrays ----------------------------------------------------------------------------


def test_torch_cuda_tensors_any_strides_and_dtypes():
    torch = require_torch_cuda()
    X = weight_like(150, 80, 1e-3, seed=3, dtype=np.float64)
    t = torch.from_numpy(X).cuda()
    views = {
        "contiguous": (t, X),
        "column-major": (t.t().contiguous().t(), X),
        "sliced": (t[::2, 3::3], X[::2, 3::3]),
        "float32": (t.float(), X.astype(np.float32)),
        "one column": (t[:, 7], X[:, 7]),
    }
    for name, (view, ref) in views.items():
        np.testing.assert_allclose(fd.msd(view), fd.msd(ref), rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(fd.msd(view, lags=[0, 1, 5]), msd_direct(ref, [0, 1, 5]),
                                   rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(fd.displacement(view, ref=2), displacement_direct(ref, 2),
                                   rtol=1e-12, err_msg=name)
    g = t.clone().requires_grad_(True)
    np.testing.assert_allclose(fd.msd(g), fd.msd(X), rtol=1e-9)
    b = t.to(torch.bfloat16)  # converted block by block on the device
    np.testing.assert_allclose(fd.msd(b), fd.msd(b.cpu().to(torch.float64).numpy()), rtol=1e-9)
    i = torch.arange(60, device="cuda").reshape(20, 3) % 7
    np.testing.assert_allclose(fd.msd(i), msd_direct(i.cpu().numpy()), rtol=1e-12)
    # groups with non-contiguous columns on a device tensor
    grp = {"odd": np.arange(1, 80, 2), "head": slice(0, 10)}
    got = fd.msd(t, groups=grp)
    want = fd.msd(X, groups=grp)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9)


def test_cuda_array_interface_input():
    torch = require_torch_cuda()

    class Foreign:  # any producer of __cuda_array_interface__ (CuPy, Numba, ...)
        def __init__(self, t):
            self.__cuda_array_interface__ = t.__cuda_array_interface__
            self._keep = t

    X = weight_like(90, 40, 1e-3, seed=9)
    t = torch.from_numpy(X).cuda()
    np.testing.assert_allclose(fd.msd(Foreign(t)), fd.msd(X), rtol=1e-9)
    np.testing.assert_allclose(fd.msd(Foreign(t[:, ::3])), fd.msd(X[:, ::3]), rtol=1e-9)
    np.testing.assert_allclose(fd.displacement(Foreign(t), device="cuda:0"), fd.displacement(X),
                               rtol=1e-12)


def test_device_errors_are_clear():
    torch = require_torch_cuda()
    X = torch.randn(50, 10, device="cuda")
    with pytest.raises(ValueError, match="device='cuda'"):
        fd.msd(X, device="cpu")
    X[17, 3] = float("nan")
    with pytest.raises(ValueError, match=r"nan at snapshot t=17, parameter d=3"):
        fd.msd(X)
    with pytest.raises(ValueError, match=r"t=17, parameter d=3"):
        fd.msd(X, lags=[40])  # row 17 is not part of any lag-40 pair: still found
    with pytest.raises(ValueError, match="at least 2"):
        fd.msd(X[:1])
    with pytest.raises(ValueError, match="cuda:5|only"):
        fd.msd(np.zeros((4, 2)), device="cuda:5")
    H = np.ones((30, 4))
    H[29, 1] = np.inf
    with pytest.raises(ValueError, match=r"inf at snapshot t=29, parameter d=1"):
        fd.msd(H, device="cuda")


def test_memory_limit_too_small_is_a_memory_error():
    torch = require_torch_cuda()
    X = torch.randn(20000, 4, device="cuda", dtype=torch.float64)
    with pytest.raises(MemoryError, match="memory_limit"):
        fd.msd(X, memory_limit="1MiB")


def test_offsets_beyond_32_bits():
    # a view whose row stride is 2^31 elements: every kernel must index with 64 bits
    torch = require_torch_cuda()
    free, _ = torch.cuda.mem_get_info()
    stride = 2**31
    if free < (2 * stride + 4096) * 4 + (2 << 30):
        pytest.skip("needs about 10 GB of free GPU memory")
    base = torch.empty(2 * stride + 64, dtype=torch.float32, device="cuda")
    view = base.as_strided((3, 64), (stride, 1))
    vals = torch.randn(3, 64, device="cuda")
    view.copy_(vals)
    ref = vals.cpu().numpy()
    np.testing.assert_allclose(fd.msd(view), msd_direct(ref), rtol=1e-9)
    np.testing.assert_allclose(fd.msd(view, lags=[2]), msd_direct(ref, [2]), rtol=1e-12)
    np.testing.assert_allclose(fd.displacement(view, ref=2), displacement_direct(ref, 2),
                               rtol=1e-12)
    del base


def test_device_name_and_self_test():
    require_cuda()
    assert _core.cuda_self_test() == ""
    assert "sm_" in _core.cuda_device_name(0)

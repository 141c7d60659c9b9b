"""GPU-only checks: CPU/GPU agreement (hypothesis), device-array inputs (torch CUDA tensors,
__cuda_array_interface__), host streaming through pinned buffers, merging CPU and GPU partial
sums, 64-bit offsets, errors; for the MSD folds, box counting (ids bit for bit) and the centred
Gram matrix (pairwise distances against scipy's float64 pdist). Every test here carries the `gpu`
marker and skips without a usable GPU, unless FRACTALDIFF_REQUIRE_GPU=1 (then it fails)."""

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
def test_accuracy_on_weight_like_data_on_gpu(T, D, step):
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
    from fractaldiff.engine.gpu import GpuAccumulator

    X = weight_like(700, 90, 1e-4, seed=5)
    whole = fd.MSDAccumulator(700)
    whole.fold(X, 0)
    left = fd.MSDAccumulator(700)
    left.fold(np.ascontiguousarray(X[:, :37]))
    right = GpuAccumulator(fd.MSDAccumulator(700), 0, 64 << 20)
    right.fold(np.ascontiguousarray(X[:, 37:]), 37)
    assert right.flush() == _core.STATUS_OK
    merged = left.merge(right.acc)
    assert merged.n_cols == 90
    np.testing.assert_allclose(merged.finish(), whole.finish(), rtol=1e-10)
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


def torch_views(torch, X, column_2d=False):
    """CUDA tensor views of X with other strides and dtypes, each with its numpy equivalent."""
    t = torch.from_numpy(X).cuda()
    return {
        "contiguous": (t, X),
        "column-major": (t.t().contiguous().t(), X),
        "sliced": (t[::2, 3::3], X[::2, 3::3]),
        "float32": (t.float(), X.astype(np.float32)),
        "one column": (t[:, 7], X[:, 7:8] if column_2d else X[:, 7]),
    }


def test_torch_cuda_tensors_any_strides_and_dtypes():
    torch = require_torch_cuda()
    X = weight_like(150, 80, 1e-3, seed=3, dtype=np.float64)
    views = torch_views(torch, X)
    t = views["contiguous"][0]
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
    np.testing.assert_array_equal(box_ids(view, "cuda", src=ref), box_ids(ref, "cpu"))
    np.testing.assert_allclose(fd.centered_gram(view), fd.centered_gram(ref), rtol=1e-10,
                               atol=1e-12)
    del base


def test_device_name_and_self_test():
    require_cuda()
    assert _core.cuda_self_test() == ""
    assert "sm_" in _core.cuda_device_name(0)


# ---- box counting: the GPU gives the CPU's box ids bit for bit --------------------------------


def box_ids(X, where, *, n_scales=16, seed=0, grid=0, limit=512 << 20, src=None):
    """Box-id sums (T, n_scales, 2) of one grid, on the CPU (from the host copy ``src``, default
    X) or the GPU (from X as given: host array, torch CUDA tensor, ...), same origins."""
    from fractaldiff._validation import AnalysisOptions
    from fractaldiff.engine.accumulators import BoxIdsAccumulator
    from fractaldiff.engine.folds import column_ranges, run

    host = np.asarray(X) if src is None else src
    _, _, _, mins, maxs, _, _ = column_ranges(host, AnalysisOptions("test", memory_limit=limit))
    span = float(np.max(maxs - mins))
    eps0 = span / 2.0**20 if span > 0 else 1.0

    def make(t):
        return BoxIdsAccumulator(t, n_scales, eps0, n_grids=grid + 1, seed=seed, mins=mins)

    options = AnalysisOptions("test", device=where, memory_limit=limit)
    acc = run(host if where == "cpu" else X, make, options, min_rows=1, what="box counting")
    return acc.ids[grid]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices(), st.integers(1, 31), st.integers(0, 2**32), st.integers(0, 3))
def test_box_ids_bit_for_bit_on_random_inputs(X, n_scales, seed, grid):
    require_cuda()
    cpu = box_ids(X, "cpu", n_scales=n_scales, seed=seed, grid=grid)
    gpu = box_ids(X, "cuda", n_scales=n_scales, seed=seed, grid=grid)
    np.testing.assert_array_equal(gpu, cpu)


@pytest.mark.parametrize("T,D", [(1, 1), (5, 3), (127, 255), (128, 256), (129, 257), (300, 3000),
                                 (1000, 70)])
@pytest.mark.parametrize("n_scales", [1, 8, 9, 16, 17, 31])
def test_box_ids_bit_for_bit_across_tile_edges(T, D, n_scales):
    # row tiles of 128 snapshots, column tiles of 32 and key chunks of 256, all three register
    # variants (8, 16, 31 scales)
    require_cuda()
    X = weight_like(T, D, 1e-3, seed=T + D)
    np.testing.assert_array_equal(box_ids(X, "cuda", n_scales=n_scales),
                                  box_ids(X, "cpu", n_scales=n_scales))


@pytest.mark.parametrize("func", [fd.box_counts, fd.box_counting_dimension])
def test_box_counting_public_api_matches_cpu(func):
    require_cuda()
    from fractal_sets import embed, sierpinski

    X = embed(sierpinski(20000, seed=1), 40, seed=2)
    cpu = func(X, device="cpu", n_grids=2)
    gpu = func(X, device="cuda", n_grids=2)
    if func is fd.box_counts:
        np.testing.assert_array_equal(gpu[0], cpu[0])
        np.testing.assert_array_equal(gpu[1], cpu[1])
    else:
        assert gpu.dimension == cpu.dimension and gpu.window == cpu.window
        np.testing.assert_array_equal(gpu.counts, cpu.counts)


@pytest.mark.parametrize("layout", ["C", "F", "strided", "negative"])
def test_box_ids_host_streaming_in_many_blocks(layout):
    require_cuda()
    X = weight_like(300, 3000, 1e-3, seed=2)
    Y = {"C": X, "F": np.asfortranarray(X), "strided": X[:, ::2],
         "negative": X[::-1, ::-1]}[layout]
    np.testing.assert_array_equal(box_ids(Y, "cuda", limit=1 << 20),
                                  box_ids(np.ascontiguousarray(Y), "cpu"))
    np.testing.assert_array_equal(fd.box_counts(Y, device="cuda", memory_limit="1MiB")[1],
                                  fd.box_counts(Y, device="cpu")[1])


def test_box_ids_of_torch_cuda_tensors_any_strides_and_dtypes():
    torch = require_torch_cuda()
    X = weight_like(150, 300, 1e-3, seed=3, dtype=np.float64)
    views = torch_views(torch, X, column_2d=True)
    t = views["contiguous"][0]
    views["bfloat16"] = (t.to(torch.bfloat16), t.to(torch.bfloat16).cpu().float().numpy())
    views["int"] = (torch.arange(600, device="cuda").reshape(200, 3) % 7,
                    (np.arange(600).reshape(200, 3) % 7).astype(np.float64))
    for name, (view, ref) in views.items():
        ref = np.ascontiguousarray(ref)
        np.testing.assert_array_equal(box_ids(view, "cuda", src=ref), box_ids(ref, "cpu"),
                                      err_msg=name)
        np.testing.assert_array_equal(fd.box_counts(view, n_scales=12)[1],
                                      fd.box_counts(ref, n_scales=12)[1], err_msg=name)

    class Foreign:  # any producer of __cuda_array_interface__ (CuPy, Numba, ...)
        def __init__(self, t):
            self.__cuda_array_interface__ = t.__cuda_array_interface__
            self._keep = t

    np.testing.assert_array_equal(fd.box_counts(Foreign(t[:, ::3]))[1],
                                  fd.box_counts(X[:, ::3])[1])


def test_box_ids_merge_across_devices_and_blocks():
    # CPU ids of the first columns + GPU ids of the rest (its own column offset) = CPU ids of all
    require_cuda()
    from fractaldiff.engine.accumulators import grid_offsets, key_seed

    X = weight_like(200, 600, 1e-3, seed=11)
    mins = X.min(axis=0).astype(np.float64)
    eps0 = float(np.max(X.max(axis=0) - mins)) / 2**18
    origin = mins - grid_offsets(np.arange(600), eps0 * 2**15, 0, 0)
    ks = key_seed(0, 0)
    whole = np.zeros((200, 16, 2), dtype=np.uint64)
    assert _core.fold_box_ids(X, 0, origin, eps0, 16, ks, whole) == _core.STATUS_OK
    part = np.zeros_like(whole)
    assert _core.fold_box_ids(np.ascontiguousarray(X[:, :37]), 0, origin[:37], eps0, 16, ks,
                              part) == _core.STATUS_OK
    fold = _core.GpuBoxIdsFold(device=0, n_rows=200, n_scales=16, key_seed=ks,
                                eps0=eps0, memory_limit=64 << 20)
    fold.set_block(37, origin[37:400])
    fold.fold_host(np.ascontiguousarray(X[:, 37:400]))
    fold.set_block(400, origin[400:])
    fold.fold_host(np.asfortranarray(X[:, 400:]))
    assert fold.finish(part) == _core.STATUS_OK
    np.testing.assert_array_equal(part, whole)
    # out-of-range quantization is reported, not wrapped
    fold.set_block(0, origin[:10] + 1.0)
    fold.fold_host(np.ascontiguousarray(X[:, :10]))
    assert fold.finish(np.zeros_like(whole)) == _core.STATUS_OUT_OF_RANGE


def test_box_counting_device_errors():
    torch = require_torch_cuda()
    X = torch.randn(50, 10, device="cuda")
    with pytest.raises(ValueError, match="device='cuda'"):
        fd.box_counts(X, device="cpu")
    X[17, 3] = float("nan")
    with pytest.raises(ValueError, match=r"nan at snapshot t=17, parameter d=3"):
        fd.box_counts(X)
    with pytest.raises(ValueError, match=r"nan at snapshot t=17, parameter d=3"):
        fd.box_counts(X.cpu().numpy(), device="cuda")
    big = torch.randn(20000, 4, device="cuda", dtype=torch.float64)
    with pytest.raises(MemoryError, match="memory_limit"):
        fd.box_counts(big, memory_limit="1MiB")
    with pytest.raises(ValueError, match="cuda:5|only"):
        fd.box_counts(np.zeros((4, 2)), device="cuda:5")


# ---- pairwise squared distances and the centred Gram matrix -----------------------------------


def assert_sqdist_float64_accurate(got, X):
    from scipy.spatial.distance import pdist, squareform

    Xf = np.asarray(X, dtype=np.float64)
    Xf = Xf.reshape(Xf.shape[0], -1)
    ref = squareform(pdist(Xf, "sqeuclidean")) if Xf.shape[0] > 1 else np.zeros((1, 1))
    spread = np.sum((Xf - Xf.mean(axis=0)) ** 2, axis=1)
    # the documented bound is relative to the spread about the mean (centred Gram)
    atol = 1e-13 * (Xf.shape[1] / 2048 + 2048 + 3) * (spread[:, None] + spread[None, :] + 1e-300)
    assert np.all(np.abs(got - ref) <= 1e-9 * ref + atol)
    assert np.all(got == got.T) and np.all(np.diag(got) == 0) and np.all(got >= 0)


@pytest.mark.parametrize("T,D", [(1, 1), (2, 3), (127, 9), (128, 1), (129, 1000), (300, 3000),
                                 (301, 4097), (700, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_sqdist_equals_pdist_on_gpu(T, D, dtype):
    # tiles of 128 rows, odd T (unpaired stores), K-splits for small T and D >= 2048
    require_cuda()
    X = weight_like(T, D, 1e-3, seed=T * D, dtype=dtype)
    got = fd.pairwise_sqdist(X, device="cuda")
    assert_sqdist_float64_accurate(got, X)
    np.testing.assert_allclose(fd.centered_gram(X, device="cuda"),
                               fd.centered_gram(X, device="cpu"), rtol=1e-10,
                               atol=1e-12 * float(np.abs(fd.centered_gram(X)).max() + 1e-300))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matrices())
def test_pairwise_sqdist_gpu_on_random_inputs(X):
    require_cuda()
    assert_sqdist_float64_accurate(fd.pairwise_sqdist(X, device="cuda"), X)


def test_gram_inputs_streaming_and_analyses():
    torch = require_torch_cuda()
    X = weight_like(260, 3001, 1e-3, seed=21, dtype=np.float64)
    cpu = fd.centered_gram(X)
    t = torch.from_numpy(X).cuda()
    for name, (view, ref) in {
        "contiguous": (t, X),
        "column-major": (t.t().contiguous().t(), X),
        "sliced": (t[::2, 3::3], X[::2, 3::3]),
        "float32": (t.float(), X.astype(np.float32)),
        "host, 1 MiB blocks": (np.asfortranarray(X), X),
    }.items():
        host = isinstance(view, np.ndarray)
        got = fd.centered_gram(view, device="cuda", memory_limit="1MiB" if host else None)
        want = cpu if ref is X else fd.centered_gram(ref)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max(),
                                   err_msg=name)
    from fractal_sets import embed, sierpinski

    S = embed(sierpinski(3000, seed=3), 30, seed=4)
    St = torch.from_numpy(S).cuda()
    a, b = fd.correlation_dimension(S), fd.correlation_dimension(St)
    assert abs(a.dimension - b.dimension) < 1e-6 and abs(a.takens - b.takens) < 1e-6
    pa, pb = fd.trajectory_pca(S, 3), fd.trajectory_pca(St, 3)
    np.testing.assert_allclose(pb.scores, pa.scores, rtol=1e-7, atol=1e-9)


def test_gram_device_errors():
    torch = require_torch_cuda()
    X = torch.randn(50, 10, device="cuda")
    with pytest.raises(ValueError, match="device='cuda'"):
        fd.pairwise_sqdist(X, device="cpu")
    X[17, 3] = float("inf")
    for func in (fd.pairwise_sqdist, fd.centered_gram, fd.trajectory_pca):
        with pytest.raises(ValueError, match=r"inf at snapshot t=17, parameter d=3"):
            func(X)
    with pytest.raises(ValueError, match="too large"):
        fd.pairwise_sqdist(torch.tensor([[1e300, 0.0], [-1e300, 0.0]], device="cuda",
                                        dtype=torch.float64))
    with pytest.raises(MemoryError, match="memory_limit"):
        fd.pairwise_sqdist(torch.randn(40000, 2, device="cuda"), memory_limit="1MiB")


# ---- launch geometry and memory: several key chunks per block, more than 65535 row tiles,
# ---- several Gram flush chunks, column chunks of the origins and means, memory_limit ---------


def test_box_ids_several_key_chunks_per_block():
    # T=20000: 157 row tiles, so on a 132-SM GPU a block takes 8 * 132 // 157 = 6 -> 512 of the
    # 3000 columns (two key chunks of 256), the last block 440 (a partial second chunk); the
    # limit lets all 3000 float32 columns go up as one staged sub-block
    require_cuda()
    X = weight_like(20000, 3000, 1e-3, seed=5, dtype=np.float32)
    np.testing.assert_array_equal(box_ids(X, "cuda", limit=2 << 30), box_ids(X, "cpu"))


def test_box_ids_more_than_65535_row_tiles():
    # 65535 * 128 + 200 snapshots: the box-id kernel needs a second launch for the last 200 rows
    # (grid.y is at most 65535 row tiles); ids are T * 2 * 2 * 8 bytes, ~270 MB
    require_cuda()
    from fractaldiff.engine.accumulators import key_seed

    T = 65535 * 128 + 200
    rng = np.random.default_rng(8)
    X = rng.random((T, 2), dtype=np.float32)
    origin = np.array([-0.5, -0.25])
    eps0, n_scales, ks = 2.0**-20, 2, key_seed(3, 1)
    want = np.zeros((T, n_scales, 2), dtype=np.uint64)
    assert _core.fold_box_ids(X, 0, origin, eps0, n_scales, ks, want) == _core.STATUS_OK
    fold = _core.GpuBoxIdsFold(device=0, n_rows=T, n_scales=n_scales, key_seed=ks,
                                eps0=eps0, memory_limit=1 << 30)
    fold.set_block(0, origin)
    fold.fold_host(X)
    got = np.zeros_like(want)
    assert fold.finish(got) == _core.STATUS_OK
    assert fold.device_bytes() <= 1 << 30
    np.testing.assert_array_equal(got[-200:], want[-200:])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("T,D", [(3000, 5000), (64, 40000)])
def test_gram_several_flush_chunks(T, D):
    # kGramFlush = 2048 columns are summed in registers before they are added into G:
    # T=3000 (300 tiles, no K-split) sums 5000 columns in 3 chunks; T=64 (one tile, 16 K-splits
    # of 2504 columns) in 2 chunks per split
    require_cuda()
    X = weight_like(T, D, 1e-3, seed=T + D, dtype=np.float64)
    got = fd.centered_gram(X, device="cuda")
    want = fd.centered_gram(X, device="cpu")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * float(np.abs(want).max()))
    if T <= 64:
        assert_sqdist_float64_accurate(fd.pairwise_sqdist(X, device="cuda"), X)


def test_box_minmax_on_device_matches_cpu():
    # _core.cuda_box_minmax against the CPU kernel, bit for bit: strided and column-major views,
    # float32 and float64, columns holding NaN (first and middle row), +Inf and -Inf, and a
    # memory_limit whose column chunks (memory_limit / 32 columns) split the block
    torch = require_torch_cuda()
    from fractaldiff.engine.gpu import as_device_matrix

    rng = np.random.default_rng(4)
    X = rng.standard_normal((37, 40000))
    X[0, 3] = np.nan
    X[17, 5] = np.nan
    X[9, 6] = np.inf
    X[30, 7] = -np.inf
    X[:, 8] = np.inf
    finite = np.ascontiguousarray(X[:, 9:])
    t = torch.from_numpy(X).cuda()
    views = {
        "contiguous": (t, X),
        "column-major": (t.t().contiguous().t(), X),
        "strided": (t[1::3, ::2], X[1::3, ::2]),
        "float32": (t.float(), X.astype(np.float32)),
        "float32 strided": (t.float()[::2, 1::3], X.astype(np.float32)[::2, 1::3]),
        "finite": (torch.from_numpy(finite).cuda(), finite),
    }
    for name, (view, ref) in views.items():
        for limit in (1 << 20, 512 << 20):
            dm = as_device_matrix(view)
            b = dm.shape[1]
            lo, hi = np.full(b, 7.0), np.full(b, 7.0)
            st = _core.cuda_box_minmax(dm.ptr, dm.dtype.name, dm.shape[0], b, dm.strides[0],
                                       dm.strides[1], 0, lo, hi, limit)
            clo, chi = np.empty(b), np.empty(b)
            cst = _core.box_minmax(np.ascontiguousarray(ref), clo, chi)
            msg = f"{name}, memory_limit={limit}"
            assert st == cst, msg
            assert (st == _core.STATUS_OK) == (name == "finite"), msg
            np.testing.assert_array_equal(lo, clo, err_msg=msg)
            np.testing.assert_array_equal(hi, chi, err_msg=msg)


def test_device_inputs_in_column_chunks_within_memory_limit():
    # with memory_limit=1 MiB the origins (box ids) and column means (Gram) of a 40000-column
    # device matrix go up in chunks of 2048 columns; the fold's device memory stays within the
    # limit, for device and host inputs
    torch = require_torch_cuda()
    from fractaldiff.engine.accumulators import key_seed

    limit = 1 << 20
    X = weight_like(64, 40000, 1e-3, seed=9, dtype=np.float32)
    t = torch.from_numpy(X).cuda()
    np.testing.assert_array_equal(box_ids(t, "cuda", limit=limit, src=X), box_ids(X, "cpu"))
    want = fd.centered_gram(X)
    for src in (t, X):
        got = fd.centered_gram(src, device="cuda", memory_limit=limit)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * float(np.abs(want).max()))

    mins = X.min(axis=0).astype(np.float64)
    origin = mins - 1e-3
    eps0 = float(np.max(X.max(axis=0) - mins)) / 2**18
    ks = key_seed(0, 0)
    want_ids = np.zeros((64, 12, 2), dtype=np.uint64)
    assert _core.fold_box_ids(X, 0, origin, eps0, 12, ks, want_ids) == _core.STATUS_OK
    fold = _core.GpuBoxIdsFold(device=0, n_rows=64, n_scales=12, key_seed=ks,
                                eps0=eps0, memory_limit=limit)
    fold.set_block(0, origin[:25000])
    fold.fold_device(t.data_ptr(), "float32", 64, 25000, 40000, 1)
    fold.set_block(25000, origin[25000:])
    fold.fold_host(X[:, 25000:])
    assert fold.device_bytes() <= limit
    got_ids = np.zeros_like(want_ids)
    assert fold.finish(got_ids) == _core.STATUS_OK
    np.testing.assert_array_equal(got_ids, want_ids)

    gram = _core.GpuGramFold(device=0, n_rows=64, memory_limit=limit)
    gram.fold_device(t.data_ptr(), "float32", 64, 40000, 40000, 1)
    gram.fold_host(X[:, :5000])
    assert gram.device_bytes() - 64 * 64 * 8 <= limit  # the (T, T) result is not counted
    g = np.zeros((64, 64))
    assert gram.finish(g) == _core.STATUS_OK
    w2 = want + fd.centered_gram(X[:, :5000])
    np.testing.assert_allclose(np.tril(g), np.tril(w2), rtol=1e-10,
                               atol=1e-12 * float(np.abs(w2).max()))


def test_gpu_fold_outputs_are_never_converted():
    # finish adds into the caller's array: a wrong dtype or layout is refused, not
    # converted into a temporary that would take the sums away
    require_cuda()
    fold = _core.GpuBoxIdsFold(device=0, n_rows=10, n_scales=4, key_seed=1,
                                eps0=0.5, memory_limit=64 << 20)
    fold.set_block(0, np.zeros(3))
    fold.fold_host(np.ones((10, 3)))
    for bad in (np.zeros((10, 4, 2)), np.zeros((10, 4, 2), dtype=np.int64),
                np.zeros((2, 4, 10), dtype=np.uint64).T, np.zeros((10, 4, 3), dtype=np.uint64)):
        with pytest.raises(ValueError, match="ids must be a writable C-contiguous uint64"):
            fold.finish(bad)
    ids = np.zeros((10, 4, 2), dtype=np.uint64)
    assert fold.finish(ids) == _core.STATUS_OK and ids.any()
    gram = _core.GpuGramFold(device=0, n_rows=10, memory_limit=64 << 20)
    gram.fold_host(np.arange(30.0).reshape(10, 3))
    for bad in (np.zeros((10, 10), dtype=np.float32), np.zeros((10, 10), order="F"),
                np.zeros((10, 11))):
        with pytest.raises(ValueError, match="gram must be a writable C-contiguous float64"):
            gram.finish(bad)
    disp = _core.GpuDisplacementFold(device=0, n_rows=10, ref=0, memory_limit=64 << 20)
    with pytest.raises(ValueError, match="sq must be a writable C-contiguous float64"):
        disp.finish(np.zeros(10, dtype=np.float32))


def test_gram_result_too_large_names_its_size():
    # the (T, T) result is not part of memory_limit: when it does not fit on the device, the
    # error says how large it is
    torch = require_torch_cuda()
    _, total = torch.cuda.mem_get_info()
    T = int(np.sqrt(total / 8)) + 1024  # T * T * 8 bytes exceed the whole device
    with pytest.raises(MemoryError, match=r"result itself, T\*T\*8 = \d+ bytes"):
        _core.GpuGramFold(device=0, n_rows=T, memory_limit=1 << 30)

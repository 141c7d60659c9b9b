"""The Python side of the GPU paths (MSD, selected lags, displacement, box counting, the centred
Gram matrix), on any machine.

The ``_core`` GPU fold classes are replaced by emulations that fold the blocks they are given
with the CPU kernels, and CUDA is declared usable: what is tested is the driver (device choice,
column blocks and their offsets, groups, per-block origins, how device sums are collected,
merged and finished, error reporting), not the CUDA kernels (tests/test_cuda.py does that on a
GPU).
"""

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff import _core

from reference import msd_direct, weight_like


class EmulatedFold:
    """A ``_core`` GPU fold for host blocks, computed by the CPU kernels: it keeps its own
    device-side sums and adds them into the caller's arrays at ``finish``, as on a GPU."""

    kind = ""

    def __init__(self, *, device, n_rows, memory_limit):
        assert device == 0 and memory_limit >= 2**20
        self.t, self.status, self.blocks = n_rows, _core.STATUS_OK, 0

    def fold_host(self, x):
        assert isinstance(x, np.ndarray) and x.shape[0] == self.t
        self.blocks += 1
        st = self.fold(x)
        self.status = self.status or st

    def synchronize(self):
        pass

    def finish(self, *outs):  # adds and resets, as on the device
        for out, mine in zip(outs, self.sums):
            out += mine
            mine[...] = 0
        status, self.status = self.status, _core.STATUS_OK
        return status


class MsdFold(EmulatedFold):
    kind = "msd"

    def __init__(self, *, n_direct, **kw):
        super().__init__(**kw)
        n = _core.msd_fft_length(self.t)
        self.sums = [np.zeros(n), np.zeros(self.t), np.zeros(n_direct + 1)]

    def fold(self, x):
        return _core.fold_msd_fft(x, *self.sums)


class LagsFold(EmulatedFold):
    kind = "lags"

    def __init__(self, *, lags, **kw):
        super().__init__(**kw)
        self.lags = np.array(lags, dtype=np.int64)
        self.sums = [np.zeros(self.lags.size)]

    def fold(self, x):
        return _core.fold_msd_lags(x, self.lags, self.sums[0])


class DisplacementFold(EmulatedFold):
    kind = "displacement"

    def __init__(self, *, ref, **kw):
        super().__init__(**kw)
        self.ref, self.sums = ref, [np.zeros(self.t)]

    def fold(self, x):
        return _core.fold_displacement(x, self.ref, self.sums[0])


class BoxIdsFold(EmulatedFold):
    kind = "box_ids"

    def __init__(self, *, n_scales, key_seed, eps0, **kw):
        super().__init__(**kw)
        self.n_scales, self.key_seed, self.eps0 = n_scales, key_seed, eps0
        self.sums = [np.zeros((self.t, n_scales, 2), dtype=np.uint64)]
        self.origin = None

    def set_block(self, col_start, origin):
        self.col_start, self.origin = col_start, np.array(origin, dtype=np.float64)

    def fold(self, x):
        assert self.origin is not None and self.origin.size == x.shape[1]
        st = _core.fold_box_ids(x, self.col_start, self.origin, self.eps0, self.n_scales,
                                self.key_seed, self.sums[0])
        self.origin = None  # set_block comes before every block
        return st


class GramFold(EmulatedFold):
    kind = "gram"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sums = [np.zeros((self.t, self.t))]

    def fold(self, x):
        return _core.fold_gram(x, self.sums[0])

    def finish(self, g):
        finite = np.all(np.isfinite(np.diagonal(self.sums[0])))
        status = super().finish(g)
        return status or (_core.STATUS_OK if finite else _core.STATUS_NONFINITE)


KINDS = {"GpuMsdFold": MsdFold, "GpuLagsFold": LagsFold,
         "GpuDisplacementFold": DisplacementFold, "GpuBoxIdsFold": BoxIdsFold,
         "GpuGramFold": GramFold}


@pytest.fixture
def emulated(monkeypatch):
    import fractaldiff.engine.gpu as gpu

    folds = []

    def maker(cls):
        def make(**kwargs):
            folds.append(cls(**kwargs))
            return folds[-1]
        return make

    monkeypatch.setattr(gpu, "cuda_usable", lambda: (True, ""))
    monkeypatch.setattr(_core, "cuda_device_count", lambda: 1)
    for name, cls in KINDS.items():
        monkeypatch.setattr(_core, name, maker(cls), raising=False)
    return folds


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_msd_through_the_gpu_driver(emulated, layout):
    X = weight_like(300, 3000, 1e-3, seed=1)
    Y = {"C": X, "F": np.asfortranarray(X), "strided": X[:, ::2]}[layout]
    cpu = fd.msd(Y, device="cpu")
    gpu = fd.msd(Y, device="cuda", memory_limit="1MiB")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-12, atol=1e-12 * cpu.max())
    np.testing.assert_allclose(gpu[1:], msd_direct(Y)[1:], rtol=1e-6)
    assert emulated and all(f.kind == "msd" for f in emulated)


def test_lags_displacement_and_groups_through_the_gpu_driver(emulated):
    X = weight_like(120, 900, 1e-3, seed=5, dtype=np.float64)
    groups = {"a": slice(0, 300), "b": np.arange(100, 900, 3), "c": slice(850, None)}
    for kwargs in ({}, {"lags": [0, 1, 7, 50]}):
        cpu = fd.msd(X, groups=groups, **kwargs)
        gpu = fd.msd(X, groups=groups, device="cuda", **kwargs)
        assert cpu.keys() == gpu.keys()
        for k in cpu:
            np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-10, atol=1e-12)
    cpu = fd.displacement(X, ref=-3, start=10, stop=100, groups=groups)
    gpu = fd.displacement(X, ref=-3, start=10, stop=100, groups=groups, device="cuda")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-12)
    assert {f.kind for f in emulated} == {"msd", "lags", "displacement"}


def test_gpu_errors_surface_at_the_end(emulated):
    X = weight_like(50, 40, 1e-3, seed=6, dtype=np.float64)
    X[9, 31] = np.inf
    with pytest.raises(ValueError, match=r"inf at snapshot t=9, parameter d=31"):
        fd.msd(X, device="cuda")
    with pytest.raises(ValueError, match=r"inf at snapshot t=9, parameter d=31"):
        fd.displacement(X, device="cuda", groups={"a": slice(0, 35)})


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_box_counts_through_the_gpu_driver(emulated, layout):
    X = weight_like(300, 3000, 1e-3, seed=2)
    Y = {"C": X, "F": np.asfortranarray(X), "strided": X[:, ::2]}[layout]
    cpu = fd.box_counts(Y, n_grids=2, device="cpu")
    gpu = fd.box_counts(Y, n_grids=2, device="cuda", memory_limit="1MiB")
    np.testing.assert_array_equal(gpu[0], cpu[0])
    np.testing.assert_array_equal(gpu[1], cpu[1])
    assert len(emulated) == 2  # one fold per grid
    assert all(f.blocks == emulated[0].blocks for f in emulated)  # each block read once


def test_gram_through_the_gpu_driver(emulated):
    X = weight_like(200, 2500, 1e-3, seed=3)
    np.testing.assert_array_equal(fd.centered_gram(X, device="cuda", memory_limit="1MiB"),
                                  fd.centered_gram(X, memory_limit="1MiB"))
    np.testing.assert_array_equal(fd.pairwise_sqdist(X, device="cuda"), fd.pairwise_sqdist(X))
    a, b = fd.correlation_dimension(X, device="cuda"), fd.correlation_dimension(X)
    assert a.dimension == b.dimension
    np.testing.assert_array_equal(fd.trajectory_pca(X, 2, device="cuda").scores,
                                  fd.trajectory_pca(X, 2).scores)
    assert emulated and all(f.kind == "gram" for f in emulated)


def test_errors_through_the_gpu_driver(emulated):
    X = weight_like(40, 30, 1e-3, seed=4, dtype=np.float64)
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match=r"nan at snapshot t=7, parameter d=2"):
        fd.pairwise_sqdist(X, device="cuda")
    with pytest.raises(ValueError, match=r"nan at snapshot t=7, parameter d=2"):
        fd.box_counts(X, device="cuda")
    with pytest.raises(ValueError, match="at least 3"):
        fd.correlation_dimension(X[:2], device="cuda")
    with pytest.raises(ValueError, match=r"box_counts\(device='cuda:3'\): only 1 CUDA device"):
        fd.box_counts(X, device="cuda:3")

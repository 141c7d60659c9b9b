"""The Python side of the GPU paths of box counting and the centred Gram matrix, on any machine.

``_core.GpuFold`` is replaced by an emulation that folds the blocks it is given with the CPU
kernels, and CUDA is declared usable: what is tested is the driver (device choice, column
blocks and their offsets, per-block origins, how ids and Gram sums are collected, merged and
finished, error reporting), not the CUDA kernels (tests/test_cuda.py does that on a GPU).
"""

import numpy as np
import pytest

import fractaldiff as fd
from fractaldiff import _core

from reference import weight_like


class EmulatedFold:
    """``_core.GpuFold`` for host blocks, computed by the CPU kernels."""

    def __init__(self, kind, device, n_rows, n_direct=0, lags=None, ref=0,
                 memory_limit=512 << 20):
        assert kind in ("box_ids", "gram") and device == 0
        self.kind, self.t, self.status = kind, n_rows, _core.STATUS_OK
        self.g = np.zeros((n_rows, n_rows)) if kind == "gram" else None
        self.blocks = 0

    def configure_box(self, n_scales, key_seed, eps0):
        self.n_scales, self.key_seed, self.eps0 = n_scales, key_seed, eps0
        self.ids = np.zeros((self.t, n_scales, 2), dtype=np.uint64)

    def set_box_block(self, col_start, origin):
        self.col_start, self.origin = col_start, np.array(origin, dtype=np.float64)

    def fold_host(self, x):
        assert isinstance(x, np.ndarray) and x.shape[0] == self.t
        self.blocks += 1
        if self.kind == "box_ids":
            assert self.origin.size == x.shape[1]
            st = _core.fold_box_ids(x, self.col_start, self.origin, self.eps0, self.n_scales,
                                    self.key_seed, self.ids)
        else:
            st = _core.fold_gram(x, self.g)
        self.status = self.status or st

    def synchronize(self):
        pass

    def finish_ids(self, ids):  # adds and resets, as on the device
        ids += self.ids
        self.ids[...] = 0
        status, self.status = self.status, _core.STATUS_OK
        return status

    def finish(self, g):
        g += self.g
        finite = np.all(np.isfinite(np.diagonal(self.g)))
        self.g[...] = 0.0
        status, self.status = self.status, _core.STATUS_OK
        return status or (_core.STATUS_OK if finite else _core.STATUS_NONFINITE)


@pytest.fixture
def emulated(monkeypatch):
    import fractaldiff.engine.gpu as gpu

    folds = []

    def make(*args, **kwargs):
        folds.append(EmulatedFold(*args, **kwargs))
        return folds[-1]

    monkeypatch.setattr(gpu, "cuda_usable", lambda: (True, ""))
    monkeypatch.setattr(_core, "cuda_device_count", lambda: 1)
    monkeypatch.setattr(_core, "GpuFold", make)
    return folds


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_box_counts_through_the_gpu_driver(emulated, layout):
    X = weight_like(300, 3000, 1e-3, seed=2)
    Y = {"C": X, "F": np.asfortranarray(X), "strided": X[:, ::2]}[layout]
    cpu = fd.box_counts(Y, n_grids=2, device="cpu")
    gpu = fd.box_counts(Y, n_grids=2, device="cuda", memory_limit="1MiB")
    np.testing.assert_array_equal(gpu[0], cpu[0])
    np.testing.assert_array_equal(gpu[1], cpu[1])
    assert len(emulated) == 2  # one fold per grid


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

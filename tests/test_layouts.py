"""Memory layouts, dtypes and array types: all must give the right answer without a full copy."""

import numpy as np
import pytest

import fractaldiff as fd

from reference import displacement_direct, msd_direct, weight_like


@pytest.fixture
def X():
    return weight_like(120, 45, 1e-3, seed=1, dtype=np.float64)


def check(Y, ref_source=None, device="cpu"):
    ref_source = Y if ref_source is None else ref_source
    np.testing.assert_allclose(fd.msd(Y, device=device)[1:], msd_direct(ref_source)[1:],
                               rtol=1e-9)
    np.testing.assert_allclose(fd.displacement(Y, ref=3, device=device),
                               displacement_direct(ref_source, 3), rtol=1e-10)
    lags = [1, 5, len(Y) - 1]
    np.testing.assert_allclose(fd.msd(Y, lags=lags, device=device),
                               msd_direct(ref_source, lags), rtol=1e-12)


def test_fortran_order(simd_level, X, device):
    check(np.asfortranarray(X), device=device)


def test_non_contiguous(simd_level, X, device):
    check(X[::2, ::3], device=device)


def test_negative_strides(simd_level, X, device):
    check(X[::-1, ::-1], device=device)


def test_read_only(X, device):
    X.setflags(write=False)
    check(X, device=device)


@pytest.mark.parametrize("dtype", [">f4", ">f8", "<f2"])
def test_other_byte_orders_and_widths(X, dtype, device):
    Y = X.astype(dtype)
    check(Y, Y.astype(np.float64), device=device)


def test_float32_equals_float64_of_same_values(X):
    Y32 = X.astype(np.float32)
    np.testing.assert_allclose(fd.msd(Y32), fd.msd(Y32.astype(np.float64)), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.int8, np.int64, np.uint16, np.bool_])
def test_integer_and_bool_converted_to_float64(rng, dtype):
    Y = (rng.integers(0, 2 if dtype is np.bool_ else 50, size=(60, 9))).astype(dtype)
    check(Y, Y.astype(np.float64))


def test_memmap(tmp_path, X, device):
    path = tmp_path / "w.npy"
    np.save(path, X.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap)
    check(mm, np.asarray(mm), device=device)


def test_list_input():
    X = [[0.0, 1.0], [1.0, 1.0], [3.0, 2.0]]
    np.testing.assert_allclose(fd.msd(X), msd_direct(X))


def test_torch_cpu_tensor(X, device):
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(X.astype(np.float32))
    check(t, X.astype(np.float32), device=device)
    check(t.t().contiguous().t(), X.astype(np.float32), device=device)  # column-major tensor
    tg = t.clone().requires_grad_(True)
    np.testing.assert_allclose(fd.msd(tg), fd.msd(X.astype(np.float32)))
    half = torch.from_numpy(X).to(torch.bfloat16)
    check(half, half.to(torch.float64).numpy())

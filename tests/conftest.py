import os

import numpy as np
import pytest

import fractaldiff._core as core

SIMD_LEVELS = core.available_simd_levels()


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request):
    """Run a test once per SIMD level compiled in and supported by this CPU."""
    previous = core.simd_level()
    core.set_simd_level(request.param)
    yield request.param
    core.set_simd_level(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def pytest_report_header(config):
    import fractaldiff

    info = fractaldiff.build_info()
    keys = ("version", "simd", "simd_available", "n_threads", "cuda_built", "cuda_devices")
    return "fractaldiff: " + ", ".join(f"{k}={info[k]}" for k in keys) + (
        f" (FRACTALDIFF_SIMD={os.environ['FRACTALDIFF_SIMD']})"
        if "FRACTALDIFF_SIMD" in os.environ
        else ""
    )


# ---- CPU / GPU ---------------------------------------------------------------------------------
# The same tests run with device="cpu" and device="cuda". CUDA cases carry the `gpu` marker and
# skip without a usable CUDA build and device; FRACTALDIFF_REQUIRE_GPU=1 turns every such skip
# into a failure, so a GPU run cannot pass by skipping.

REQUIRE_GPU = os.environ.get("FRACTALDIFF_REQUIRE_GPU") == "1"


def skip_or_fail(why):
    if REQUIRE_GPU:
        pytest.fail(f"FRACTALDIFF_REQUIRE_GPU=1 but {why}")
    pytest.skip(why)


def require_cuda():
    from fractaldiff.engine.gpu import cuda_usable

    ok, why = cuda_usable()
    if not ok:
        skip_or_fail(why)


def require_torch_cuda():
    """torch with a usable CUDA device (for device-array inputs)."""
    require_cuda()
    try:
        import torch
    except ImportError:
        skip_or_fail("torch is not installed")
    if not torch.cuda.is_available():
        skip_or_fail("torch sees no CUDA device")
    return torch


@pytest.fixture(scope="session", params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Run a test once on the CPU and once on the GPU (the latter skips without one)."""
    if request.param == "cuda":
        require_cuda()
    return request.param

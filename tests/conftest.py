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

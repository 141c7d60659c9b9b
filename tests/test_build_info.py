"""build_info(), the CLI and the compiled module's plumbing."""

import json
import os
import subprocess
import sys

import pytest

import fractaldiff as fd
from fractaldiff import _core
from fractaldiff.cli import main


def test_build_info_fields():
    info = fd.build_info()
    for key in ("version", "compiler", "simd", "simd_available", "openmp", "n_threads",
                "cuda_built", "cuda_devices", "python", "numpy", "platform"):
        assert key in info, key
    assert info["version"] == fd.__version__
    assert info["simd"] in info["simd_available"]
    assert info["simd_available"][-1] == "baseline"
    assert isinstance(info["cuda_built"], bool)
    assert isinstance(info["cuda_devices"], int) and info["cuda_devices"] >= 0
    assert info["n_threads"] >= 1
    json.dumps(info)  # pasteable


def test_cuda_built_when_expected():
    # CI builds with FRACTALDIFF_CUDA=ON where nvcc exists and sets this, so a CUDA build that
    # silently fell back to CPU-only fails here
    if os.environ.get("FRACTALDIFF_EXPECT_CUDA") == "1":
        assert fd.build_info()["cuda_built"] is True
        assert fd.build_info()["cuda_runtime"]
    else:
        pytest.skip("FRACTALDIFF_EXPECT_CUDA is not set")


def test_cuda_device_count_never_raises_without_driver():
    n = _core.cuda_device_count()
    assert n >= 0
    if n == 0:
        assert _core.cuda_self_test() != ""  # says why, does not crash


@pytest.mark.gpu
def test_cuda_self_test_on_device():
    from conftest import require_cuda

    require_cuda()
    assert _core.cuda_self_test() == ""


def test_simd_env_override():
    code = "import fractaldiff; print(fractaldiff.build_info()['simd'])"
    env = dict(os.environ, FRACTALDIFF_SIMD="baseline")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "baseline"


def test_cli_info(capsys):
    assert main(["info"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == fd.__version__

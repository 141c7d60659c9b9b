"""build_info(): what a user pastes into a bug report."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from . import _core

__all__ = ["build_info"]


def build_info() -> dict[str, Any]:
    """Facts about this build of fractaldiff and the machine it runs on.

    Returns
    -------
    dict
        ``version``; ``compiler`` that built the extension; ``simd`` (the instruction-set level
        of the kernels in use) and ``simd_available``; ``openmp`` and ``n_threads`` (threads the
        kernels use by default); ``cuda_built`` (were CUDA kernels compiled in),
        ``cuda_devices`` (CUDA devices visible now: 0 without a driver, never an exception) and
        ``cuda_runtime``; ``python``, ``numpy`` and ``platform`` versions.

    Examples
    --------
    >>> import fractaldiff as fd
    >>> info = fd.build_info()
    >>> sorted(info)[:3]
    ['compiler', 'cuda_built', 'cuda_devices']
    """
    from . import __version__

    try:
        cuda_devices = int(_core.cuda_device_count())
    except Exception:  # a broken driver must not break a bug report
        cuda_devices = 0
    return {
        "version": __version__,
        "compiler": _core.compiler(),
        "simd": _core.simd_level(),
        "simd_available": list(_core.available_simd_levels()),
        "openmp": bool(_core.openmp_enabled()),
        "n_threads": int(_core.default_threads()),
        "cuda_built": bool(_core.cuda_built()),
        "cuda_devices": cuda_devices,
        "cuda_runtime": _core.cuda_runtime_version() or None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }

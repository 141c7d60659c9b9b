"""fractaldiff.bayes: the local learning coefficient and posterior comparisons (needs PyTorch).

* :func:`estimate_llc` -- lambda-hat by localized SGLD, all chains in one vmapped computation,
  with diagnostics (:class:`LLCResult`).
* :func:`calibrate_llc` -- sweep the SGLD step size (and optionally nβ, γ) on short batched
  runs and pick the largest stable one (:class:`LLCCalibration`).
* :func:`llc_trajectory` -- lambda-hat at the snapshots of a recorded run and the time
  average lambda-bar (paper Eq. 16) for ``fractaldiff.spectral_dimension``
  (:class:`LLCTrajectory`).
* :func:`grid_llc` -- the exact finite-nβ LLC of a 1-3 parameter loss on a grid, and the
  volume-scaling exponent V(ε) ~ ε^λ (:class:`GridLLCResult`).
* :func:`cluster_solutions`, :func:`compare_posterior`, :func:`toy_singular_check` -- the
  paper's posterior-concentration comparison.

Names are imported on first use, so ``import fractaldiff.bayes`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "estimate_llc": "llc",
    "LLCResult": "llc",
    "LLCWarning": "llc",
    "calibrate_llc": "calibrate",
    "LLCCalibration": "calibrate",
    "llc_trajectory": "trajectory",
    "LLCTrajectory": "trajectory",
    "grid_llc": "grid",
    "GridLLCResult": "grid",
    "cluster_solutions": "clusters",
    "ClusterResult": "clusters",
    "compare_posterior": "posterior",
    "PosteriorComparison": "posterior",
    "toy_singular_check": "toy",
    "ToyCheckResult": "toy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fractaldiff.bayes' has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError(
            f"fractaldiff.bayes.{name} needs PyTorch: pip install 'fractaldiff[torch]'"
        ) from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

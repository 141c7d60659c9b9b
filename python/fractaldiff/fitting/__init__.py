"""Power-law fits of MSD and displacement curves: exponents with honest intervals, crossovers
between regimes, local slopes, the noise models behind them, and ensembles of runs.

numpy and scipy only: no compiled extension, no torch.
"""

from __future__ import annotations

from .ensemble import (
    EnsembleFit,
    ergodicity_breaking,
    fit_ensemble,
    reference_ergodicity_breaking,
)
from .groups import fit_groups
from .exponents import (
    BreakModel,
    Crossover,
    DiffusionExponents,
    ExponentFit,
    LocalSlope,
    Regime,
    SingularCovarianceWarning,
    UncalibratedStderrWarning,
    WindowWarning,
    crossover,
    fit_displacement,
    fit_exponent,
    fit_msd,
    local_slope,
    tamsd_covariance,
)

__all__ = [
    "BreakModel",
    "Crossover",
    "DiffusionExponents",
    "EnsembleFit",
    "ExponentFit",
    "LocalSlope",
    "Regime",
    "SingularCovarianceWarning",
    "UncalibratedStderrWarning",
    "WindowWarning",
    "crossover",
    "ergodicity_breaking",
    "fit_displacement",
    "fit_ensemble",
    "fit_exponent",
    "fit_groups",
    "fit_msd",
    "local_slope",
    "reference_ergodicity_breaking",
    "tamsd_covariance",
]

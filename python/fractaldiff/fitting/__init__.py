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
from .exponents import DiffusionExponents, ExponentFit, fit_displacement, fit_exponent, fit_msd
from .groups import fit_groups
from .noise import SingularCovarianceWarning, UncalibratedStderrWarning, tamsd_covariance
from .regimes import BreakModel, Crossover, LocalSlope, Regime, crossover, local_slope
from .windows import WindowWarning

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

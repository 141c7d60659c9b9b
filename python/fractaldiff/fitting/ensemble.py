"""Exponents over an ensemble of training runs (seeds), and ergodicity breaking.

In anomalous diffusion the time average along one run and the average over
runs need not agree: a sub-diffusive process can be non-ergodic, each run's
time-averaged MSD scattering around the ensemble mean with a spread that does
not shrink as the runs get longer. The ergodicity-breaking parameter

    EB(tau) = (<delta^2(tau)^2> - <delta^2(tau)>^2) / <delta^2(tau)>^2,

with delta^2(tau) one run's time-averaged MSD and <.> the average over runs,
is the squared coefficient of variation of the time-averaged MSDs across runs.
For an ergodic process it vanishes as the runs get longer (for Brownian motion
in one coordinate EB(tau) ~ 4 tau / (3 T) for tau << T); it stays finite for
non-ergodic ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._plotting import axes
from .._validation import (
    as_real_array,
    check_int_range,
    check_positive,
    format_number,
    require_finite,
)
from .exponents import ExponentFit, fit_exponent
from .noise import tamsd_covariance

__all__ = [
    "EnsembleFit",
    "ergodicity_breaking",
    "fit_ensemble",
    "reference_ergodicity_breaking",
]


def _curves(curves: Any, func: str, n_points: int | None = None) -> np.ndarray:
    arr = as_real_array(curves, "curves", func)
    if arr.ndim != 2:
        raise ValueError(
            f"{func}: curves must be 2-D, one time-averaged curve per run (n_runs, n_lags), "
            f"got shape {arr.shape}"
        )
    if arr.shape[0] < 2:
        raise ValueError(f"{func}: curves needs at least 2 runs (rows), got {arr.shape[0]}")
    if n_points is not None and arr.shape[1] != n_points:
        raise ValueError(
            f"{func}: curves has {arr.shape[1]} points per run but t has {n_points}; "
            "they must match"
        )
    require_finite(arr, "curves", func)
    return arr


def ergodicity_breaking(curves: Any, *, ddof: int = 0) -> np.ndarray:
    """Ergodicity-breaking parameter EB per lag: variance across runs over mean squared.

    Parameters
    ----------
    curves : array_like, shape (n_runs, n_lags)
        One time-averaged MSD per run (squared parameter units), on a common
        set of lags.
    ddof : int, default 0
        Delta degrees of freedom of the variance. 0 follows the definition
        (<d^2> - <d>^2) / <d>^2; 1 gives the unbiased variance in the numerator.

    Returns
    -------
    ndarray, shape (n_lags,), float64
        EB at each lag (dimensionless); NaN where the mean is 0 (e.g. lag 0).
    """
    func = "ergodicity_breaking"
    arr = _curves(curves, func)
    ddof = check_int_range(ddof, "ddof", func, 0, arr.shape[0] - 1)
    mean = arr.mean(axis=0)
    var = arr.var(axis=0, ddof=int(ddof))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean != 0, var / mean**2, np.nan)


def reference_ergodicity_breaking(
    lags: Any, n_snapshots: int, hurst: float = 0.5, *, n_dims: float = 1
) -> np.ndarray:
    """EB of an ergodic reference: fractional Brownian motion of the same length.

    EB(tau) = Var[delta^2(tau)] / E[delta^2(tau)]^2 for ``n_dims`` independent
    fBm coordinates, exact for finite T (from :func:`fractaldiff.fitting.tamsd_covariance`).
    Compare a measured :func:`ergodicity_breaking` with it: values well above the
    reference point to weak ergodicity breaking (or to fewer effective
    coordinates than ``n_dims``).

    Parameters
    ----------
    lags : array_like of int, shape (L,)
        Lags in snapshots, 1 <= lag <= n_snapshots - 1.
    n_snapshots : int
        Trajectory length T.
    hurst : float, default 0.5
        Hurst exponent (Brownian: 0.5).
    n_dims : float, default 1
        Number of independent, identically diffusing coordinates.

    Returns
    -------
    ndarray, shape (L,)
    """
    func = "reference_ergodicity_breaking"
    lag_values = as_real_array(lags, "lags", func)
    if lag_values.ndim != 1 or lag_values.size == 0:
        raise ValueError(
            f"{func}: lags must be a non-empty 1-D array, got shape {lag_values.shape}"
        )
    dims = check_positive(n_dims, "n_dims", func)
    out = np.empty(lag_values.size)
    for i, lag in enumerate(lag_values):
        # one lag at a time: only the variances are needed, O(T) each
        variance = tamsd_covariance([lag], n_snapshots, hurst)[0, 0]
        out[i] = variance / lag ** (4.0 * hurst) / dims
    return out


@dataclass(frozen=True, eq=False, repr=False)
class EnsembleFit:
    """Exponent fits over an ensemble of runs.

    Attributes
    ----------
    ensemble_fit : ExponentFit
        Fit of the ensemble-mean curve; its standard error comes from the spread
        of the runs (rows), Student t on n_runs - 1 degrees of freedom.
    run_fits : tuple of ExponentFit
        One fit per run, all on the window of ``ensemble_fit``.
    run_exponents : ndarray, shape (n_runs,)
        Exponents of the runs.
    ergodicity_breaking : ndarray, shape (n_lags,)
        EB at each t (see :func:`ergodicity_breaking`).
    t : ndarray, shape (n_lags,)
    curves : ndarray, shape (n_runs, n_lags)
    """

    ensemble_fit: ExponentFit
    run_fits: tuple[ExponentFit, ...]
    run_exponents: np.ndarray
    ergodicity_breaking: np.ndarray
    t: np.ndarray = field(repr=False)
    curves: np.ndarray = field(repr=False)

    @property
    def n_runs(self) -> int:
        """Number of runs."""
        return int(self.run_exponents.size)

    @property
    def exponent(self) -> float:
        """Exponent of the ensemble-mean curve."""
        return self.ensemble_fit.exponent

    @property
    def mean_run_exponent(self) -> float:
        """Mean of the per-run exponents."""
        return float(self.run_exponents.mean())

    @property
    def run_exponent_spread(self) -> float:
        """Standard deviation of the per-run exponents (ddof = 1): the run-to-run scatter."""
        return float(self.run_exponents.std(ddof=1))

    @property
    def run_exponent_stderr(self) -> float:
        """Standard error of ``mean_run_exponent``: spread / sqrt(n_runs)."""
        return self.run_exponent_spread / math.sqrt(self.n_runs)

    @property
    def run_exponent_range(self) -> tuple[float, float]:
        """(min, max) of the per-run exponents."""
        return float(self.run_exponents.min()), float(self.run_exponents.max())

    def __repr__(self) -> str:
        fit = self.ensemble_fit
        return (
            f"EnsembleFit(n_runs={self.n_runs}, exponent={format_number(fit.exponent)} ± "
            f"{format_number(fit.stderr)} (ensemble mean), "
            f"runs: mean={format_number(self.mean_run_exponent)}, "
            f"spread={format_number(self.run_exponent_spread)}, "
            f"range=({format_number(self.run_exponent_range[0])}, "
            f"{format_number(self.run_exponent_range[1])}), "
            f"window=({format_number(fit.window[0])}, {format_number(fit.window[1])}))"
        )

    def plot(self, ax=None):
        """Every run (thin), the ensemble mean and its fitted power law, log-log.

        Parameters
        ----------
        ax : matplotlib Axes, optional

        Returns
        -------
        matplotlib Axes
        """
        ax = axes(ax)
        positive = self.t > 0
        for row in self.curves:
            ax.plot(self.t[positive], row[positive], color="0.75", lw=0.7)
        self.ensemble_fit.plot(ax=ax, show_data=True)
        ax.set_title(
            f"{self.n_runs} runs: run exponents {format_number(self.mean_run_exponent)} "
            f"± {format_number(self.run_exponent_spread)} (spread)"
        )
        return ax


def fit_ensemble(
    t: Any,
    curves: Any,
    *,
    run_cov: Any = "independent",
    **options: Any,
) -> EnsembleFit:
    """Fit the exponent of every run, of the ensemble-mean curve, and measure EB.

    Parameters
    ----------
    t : array_like, shape (n_lags,)
        Lags or times (> 0, strictly increasing), common to all runs.
    curves : array_like, shape (n_runs, n_lags)
        One curve per run (seed): time-averaged MSDs, or R(t) with
        ``curve="displacement"``.
    run_cov : None, "independent", "fbm", "brownian" or matrix, default "independent"
        ``cov`` for the per-run fits. Their standard errors matter less than the
        spread of their exponents, which is reported separately; the default
        takes them from the scatter about the line (not calibrated, no warning).
    **options
        Passed to :func:`fractaldiff.fitting.fit_exponent` for the ensemble-mean
        fit (``window``, ``method``, ``n_snapshots``, ``confidence``, ...). The
        per-run fits reuse the window it chose; ``method`` applies to them only
        when ``run_cov`` provides a covariance.

    Returns
    -------
    EnsembleFit
    """
    func = "fit_ensemble"
    t_arr = as_real_array(t, "t", func)
    if t_arr.ndim != 1:
        raise ValueError(f"{func}: t must be 1-D, got shape {t_arr.shape}")
    arr = _curves(curves, func, t_arr.size)
    if "cov" in options:
        raise TypeError(
            f"{func}: the ensemble fit takes its covariance from the runs; use run_cov for "
            "the per-run fits"
        )
    ensemble = fit_exponent(t_arr, arr, **options)
    run_options = {
        key: value
        for key, value in options.items()
        if key not in ("window", "combine_rows", "max_breaks", "min_exponent_change")
    }
    if isinstance(run_cov, str) and run_cov == "independent":
        run_options.pop("method", None)
        run_options.pop("effective_dims", None)
    run_fits = tuple(
        fit_exponent(t_arr, row, window=ensemble.window, cov=run_cov, **run_options) for row in arr
    )
    return EnsembleFit(
        ensemble_fit=ensemble,
        run_fits=run_fits,
        run_exponents=np.array([fit.exponent for fit in run_fits]),
        ergodicity_breaking=ergodicity_breaking(arr),
        t=t_arr,
        curves=arr,
    )

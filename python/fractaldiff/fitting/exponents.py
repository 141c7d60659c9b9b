"""Power-law exponents of diffusion curves, with honest uncertainties.

The curves this module fits are the time-averaged mean squared displacement
msd(tau) ~ tau^beta (``msd_exponent`` beta) and the displacement from a reference
snapshot R(t) ~ t^(1/d_walk) (``displacement_exponent`` = beta / 2 = 1 / d_walk,
the "alpha" of the paper's Table 1; ``walk_dimension`` d_walk = 2 / beta).
Every fit is a straight line in log10 y versus log10 t.

Three things make such a fit statistically sound, and this module does all three:

1. **Even weight in log t.** An all-lag MSD has 9/10 of its points in its last
   decade of lags, and those are the noisiest. Fits therefore use a subset of
   the points spread evenly in log t (``points_per_decade``) and weight each by
   the width in log t that it stands for, so every decade counts the same.
2. **Correlated errors.** Neighbouring lags of a time-averaged MSD share almost
   all of their data, so their errors are strongly correlated and the scatter of
   the points about the line says almost nothing about the error of the slope
   (a naive least-squares interval is typically several times too narrow). The
   standard error is computed from the covariance between points, taken from
   (a) replicate curves -- 2-D ``y`` with one row per parameter block or per seed,
   (b) a ``cov`` matrix you supply, or (c) the exact covariance of the
   time-averaged MSD of fractional Brownian motion (``cov="fbm"``; Brownian
   motion is H = 1/2), see :func:`tamsd_covariance`. Only when none is available
   does it fall back to the scatter about the line, and then it warns.
3. **A window where one power law holds.** ``window="auto"`` caps lags at a
   fraction of the trajectory (when ``n_snapshots`` is known), locates
   crossovers with a continuous piecewise power law (:func:`crossover`) and fits
   the widest single regime.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from .._plotting import axes
from .._validation import (
    as_real_array,
    check_int_range,
    check_positive,
    check_probability,
    format_number,
    require_finite,
    warn_at_caller,
)

__all__ = [
    "BreakModel",
    "Crossover",
    "DiffusionExponents",
    "ExponentFit",
    "LocalSlope",
    "Regime",
    "SingularCovarianceWarning",
    "UncalibratedStderrWarning",
    "WindowWarning",
    "crossover",
    "fit_displacement",
    "fit_exponent",
    "fit_msd",
    "local_slope",
    "tamsd_covariance",
]

_LN10 = math.log(10.0)
#: fewest points a straight-line fit with an error estimate can use
MIN_FIT_POINTS = 3
_COV_STRINGS = ("independent", "fbm", "brownian")
_CURVES = ("msd", "displacement")


class UncalibratedStderrWarning(UserWarning):
    """The standard error assumes independent points, which a diffusion curve is not.

    Raised by fits of a single 1-D curve when no covariance information was given.
    Silence it deliberately with ``cov="independent"``; make the interval sound by
    passing 2-D ``y`` (one row per parameter block or seed), ``cov=<matrix>``, or
    ``cov="fbm"`` with ``n_snapshots`` and ``effective_dims``.
    """


# --------------------------------------------------------------------------- input checks


def _validate_curve(t: Any, y: Any, func: str, *, allow_rows: bool = True):
    """Check t (1-D, increasing, > 0) and y (1-D, or 2-D rows of curves, > 0).

    Returns t, the row array of shape (n_rows, len(t)) and whether y had rows.
    """
    t = as_real_array(t, "t", func)
    y = as_real_array(y, "y", func)
    if t.ndim != 1:
        raise ValueError(f"{func}: t must be 1-D, got shape {t.shape}")
    allowed = (1, 2) if allow_rows else (1,)
    if y.ndim not in allowed:
        what = "1-D, or 2-D with one curve per row" if allow_rows else "1-D"
        raise ValueError(f"{func}: y must be {what}, got shape {y.shape}")
    if y.shape[-1] != t.size:
        raise ValueError(
            f"{func}: y has {y.shape[-1]} points along its last axis but t has {t.size}; "
            "they must match"
        )
    if t.size < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: t has {t.size} points; a power-law fit with an error estimate needs "
            f"at least {MIN_FIT_POINTS}"
        )
    require_finite(t, "t", func)
    require_finite(y, "y", func)
    step = np.diff(t)
    if np.any(step <= 0):
        i = int(np.argmax(step <= 0)) + 1
        raise ValueError(
            f"{func}: t must be strictly increasing; t[{i}] = {t[i]} follows "
            f"t[{i - 1}] = {t[i - 1]}"
        )
    if t[0] <= 0:
        raise ValueError(
            f"{func}: t must be > 0 for a log-log fit; t[0] = {t[0]} "
            "(drop the zero lag: pass t[1:] and y[..., 1:])"
        )
    rows = y[np.newaxis, :] if y.ndim == 1 else y
    is_rows = y.ndim == 2
    if is_rows and rows.shape[0] < 2:
        raise ValueError(
            f"{func}: 2-D y needs at least 2 rows (replicate curves) to estimate the "
            f"covariance between points, got shape {y.shape}; pass a 1-D curve instead"
        )
    curve_mean = rows.mean(axis=0)
    if np.any(curve_mean <= 0):
        i = int(np.argmax(curve_mean <= 0))
        if is_rows:
            raise ValueError(
                f"{func}: the mean of the rows of y must be > 0 for a log-log fit; "
                f"it is {curve_mean[i]} at column {i} (t = {t[i]})"
            )
        raise ValueError(f"{func}: y must be > 0 for a log-log fit; y[{i}] = {y[i]} (t = {t[i]})")
    return t, rows, is_rows


def _resolve_window(window: Any, t: np.ndarray, func: str) -> tuple[float, float]:
    """A manual window (t_min, t_max) as floats, checked against the data."""
    if window is None:
        return float(t[0]), float(t[-1])
    if isinstance(window, str):
        raise ValueError(f"{func}: window must be 'auto', None or (t_min, t_max), got {window!r}")
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{func}: window must be 'auto', None or a pair (t_min, t_max) of numbers, "
            f"got {window!r}"
        ) from exc
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{func}: window must be finite, got {window!r}")
    if not 0 < lo < hi:
        raise ValueError(f"{func}: window must satisfy 0 < t_min < t_max, got {window!r}")
    if hi < t[0] or lo > t[-1]:
        raise ValueError(
            f"{func}: window ({lo:g}, {hi:g}) lies outside the data; t spans [{t[0]:g}, {t[-1]:g}]"
        )
    inside = np.count_nonzero(_window_mask(t, lo, hi))
    if inside < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: window ({lo:g}, {hi:g}) contains {inside} point(s) of t; a power-law "
            f"fit with an error estimate needs at least {MIN_FIT_POINTS}"
        )
    return lo, hi


def _window_mask(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    slack = 1e-12
    return (t >= lo * (1 - slack)) & (t <= hi * (1 + slack))


# --------------------------------------------------------------------------- log-even points


def _log_even_subset(t: np.ndarray, mask: np.ndarray, points_per_decade: float) -> np.ndarray:
    """Indices of ``t[mask]`` spread evenly in log t, at most ``points_per_decade`` a decade.

    For each target of a geometric grid the nearest point in log t is taken;
    duplicates collapse, so where the data are sparser than the grid (small
    integer lags) every point is kept.
    """
    candidates = np.flatnonzero(mask)
    x = np.log10(t[candidates])
    span = x[-1] - x[0]
    n_targets = max(int(math.ceil(span * points_per_decade)) + 1, 2)
    targets = np.linspace(x[0], x[-1], n_targets)
    right = np.clip(np.searchsorted(x, targets), 1, x.size - 1)
    left = right - 1
    nearest = np.where(targets - x[left] <= x[right] - targets, left, right)
    return candidates[np.unique(nearest)]


def _log_spacing_weights(x: np.ndarray) -> np.ndarray:
    """Width in log t that each point of ``x`` (increasing) stands for (trapezoid rule)."""
    if x.size == 1:
        return np.ones(1)
    gaps = np.diff(x)
    weights = np.empty_like(x)
    weights[0] = gaps[0] / 2
    weights[-1] = gaps[-1] / 2
    weights[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    return weights / weights.mean()


# --------------------------------------------------------------------------- covariance models


def tamsd_covariance(lags: Any, n_snapshots: int, hurst: float = 0.5, *, n_dims: float = 1):
    """Exact covariance of the time-averaged MSD of fractional Brownian motion.

    For ``n_dims`` independent coordinates, each a unit fBm sampled at integer
    times 0..T-1 (T = ``n_snapshots``) so that E[(x(t+n) - x(t))^2] = n^{2H}, the
    time-averaged MSD

        msd(n) = 1/N_n sum_{t=0}^{N_n - 1} ||x(t+n) - x(t)||^2,   N_n = T - n,

    has mean ``n_dims * n^{2H}`` and, between lags n and m,

        Cov[msd(n), msd(m)] = 2 n_dims / (N_n N_m) * sum_u c(u) g(u)^2.

    Derivation: write Delta_t(n) = x(t+n) - x(t) for one coordinate. From
    Cov[x(a), x(b)] = (|a|^{2H} + |b|^{2H} - |a - b|^{2H}) / 2,

        g(u) = Cov[Delta_t(n), Delta_{t+u}(m)]
             = (|n - u|^{2H} + |u + m|^{2H} - |u|^{2H} - |u + m - n|^{2H}) / 2,

    which depends only on the offset u = s - t. For zero-mean Gaussian variables
    Isserlis' theorem gives Cov[A^2, B^2] = 2 Cov[A, B]^2, so each pair of squared
    increments contributes 2 g(u)^2; c(u) = #{t in [0, N_n) : t + u in [0, N_m)}
    counts the pairs at offset u, and independent coordinates add. For Brownian
    motion (H = 1/2) g(u) is the overlap, in steps, of the windows [t, t+n) and
    [t+u, t+u+m), so only |u| < n + m contributes; for H != 1/2 every offset does
    (long-range correlated increments). The sum is evaluated exactly, O(T) per pair.

    Parameters
    ----------
    lags : array_like of int, shape (L,)
        Lags in snapshots, 1 <= lag <= n_snapshots - 1.
    n_snapshots : int
        Number of snapshots T behind the time-averaged MSD.
    hurst : float, default 0.5
        Hurst exponent H in (0, 1); the MSD exponent is 2H.
    n_dims : float, default 1
        Number of independent, identically diffusing coordinates (the covariance
        scales linearly, the relative covariance as 1 / n_dims).

    Returns
    -------
    ndarray, shape (L, L), float64
        Covariance of the time-averaged MSD at ``lags`` (in squared units of the
        unit-fBm coordinates). Divide by ``outer(mean, mean)`` with
        ``mean = n_dims * lags**(2*hurst)`` for the relative covariance.
    """
    func = "tamsd_covariance"
    lag_values = as_real_array(lags, "lags", func)
    if lag_values.ndim != 1 or lag_values.size == 0:
        raise ValueError(
            f"{func}: lags must be a non-empty 1-D array, got shape {lag_values.shape}"
        )
    require_finite(lag_values, "lags", func)
    n_snap = int(check_positive(n_snapshots, "n_snapshots", func, integer=True))
    if np.any(lag_values != np.round(lag_values)):
        raise ValueError(f"{func}: lags must be whole numbers of snapshots")
    lag_int = lag_values.astype(np.int64)
    if lag_int.min() < 1 or lag_int.max() > n_snap - 1:
        raise ValueError(
            f"{func}: lags must lie in [1, n_snapshots - 1] = [1, {n_snap - 1}], got "
            f"[{lag_int.min()}, {lag_int.max()}]"
        )
    if not 0.0 < float(hurst) < 1.0:
        raise ValueError(f"{func}: hurst must be in (0, 1), got {hurst!r}")
    dims = check_positive(n_dims, "n_dims", func)
    return dims * _tamsd_covariance_unit(lag_int, n_snap, float(hurst))


def _tamsd_covariance_unit(lags: np.ndarray, n_snap: int, hurst: float) -> np.ndarray:
    """:func:`tamsd_covariance` for one coordinate, no checks."""
    two_h = 2.0 * hurst
    max_lag = int(lags.max())
    # |v|^{2H} for v = -reach..reach, so every term of g(u) is a contiguous slice
    reach = n_snap + 2 * max_lag
    powers = np.abs(np.arange(-reach, reach + 1, dtype=np.float64)) ** two_h
    size = lags.size
    out = np.empty((size, size))
    for i in range(size):
        n = int(lags[i])
        count_n = n_snap - n
        for j in range(i, size):
            m = int(lags[j])
            count_m = n_snap - m
            lo, hi = 1 - count_n, count_m  # offsets u = lo..hi-1 have pairs
            u = np.arange(lo, hi, dtype=np.float64)
            pairs = np.minimum(count_n, count_m - u) - np.maximum(0.0, -u)
            # powers[reach + v] = |v|^{2H}; slices give |u|, |u + m|, |u + m - n|, |n - u|
            at_u = powers[reach + lo : reach + hi]
            at_u_m = powers[reach + lo + m : reach + hi + m]
            at_u_m_n = powers[reach + lo + m - n : reach + hi + m - n]
            at_n_u = powers[reach + lo - n : reach + hi - n]  # |u - n| = |n - u|
            g = 0.5 * (at_n_u + at_u_m - at_u - at_u_m_n)
            out[i, j] = out[j, i] = 2.0 * np.dot(pairs, g * g) / (count_n * count_m)
    return out


def _displacement_relative_covariance(times: np.ndarray, hurst: float) -> np.ndarray:
    """Relative covariance of R(t) = |x(t) - x(0)| for one unit-fBm coordinate (delta method).

    Cov[x(t)^2, x(s)^2] = 2 gamma(t, s)^2, gamma(t, s) = (t^{2H} + s^{2H} - |t-s|^{2H}) / 2;
    R = sqrt(R^2) so Cov[R(t), R(s)] / (R(t) R(s)) = Cov[R^2(t), R^2(s)] / (4 t^{2H} s^{2H}).
    """
    two_h = 2.0 * hurst
    tt, ss = np.meshgrid(times, times, indexing="ij")
    gamma = 0.5 * (tt**two_h + ss**two_h - np.abs(tt - ss) ** two_h)
    return 2.0 * gamma**2 / (4.0 * tt**two_h * ss**two_h)


@dataclass
class _Noise:
    """Where the covariance between the points of the fitted curve comes from."""

    source: str  # "rows", "cov", "fbm", "brownian" or "independent"
    dof: float  # degrees of freedom of the interval's t quantile
    t: np.ndarray
    curve: np.ndarray
    rows: np.ndarray | None = None  # relative deviations of the rows, (n_rows, N)
    relative_cov: np.ndarray | None = None  # cov of y / outer(y, y), (N, N)
    curve_kind: str = "msd"
    n_snapshots: int | None = None
    effective_dims: float | None = None
    snapshot_spacing: float = 1.0

    @property
    def known(self) -> bool:
        return self.source != "independent"

    def log_cov(self, idx: np.ndarray, exponent: float) -> np.ndarray | None:
        """Covariance of log10 of the curve at ``idx`` (None for 'independent')."""
        if self.source == "independent":
            return None
        if self.source == "rows":
            dev = self.rows[:, idx]
            rel = np.atleast_2d(np.cov(dev, rowvar=False)) / dev.shape[0]
        elif self.source == "cov":
            rel = self.relative_cov[np.ix_(idx, idx)]
        else:
            rel = self._analytic(idx, exponent)
        return rel / _LN10**2

    def hurst(self, exponent: float) -> float:
        if self.source == "brownian":
            return 0.5
        hurst = exponent / 2.0 if self.curve_kind == "msd" else exponent
        return float(np.clip(hurst, 0.02, 0.98))

    def _analytic(self, idx: np.ndarray, exponent: float) -> np.ndarray:
        hurst = self.hurst(exponent)
        if self.curve_kind == "msd":
            lags = np.round(self.t[idx] / self.snapshot_spacing).astype(np.int64)
            cov = _tamsd_covariance_unit(lags, self.n_snapshots, hurst)
            mean = lags.astype(np.float64) ** (2.0 * hurst)
            rel = cov / np.outer(mean, mean)
        else:
            rel = _displacement_relative_covariance(self.t[idx], hurst)
        return rel / self.effective_dims


def _resolve_noise(
    func: str,
    t: np.ndarray,
    rows: np.ndarray,
    is_rows: bool,
    curve: np.ndarray,
    *,
    cov: Any,
    n_snapshots: Any,
    effective_dims: Any,
    snapshot_spacing: Any,
    curve_kind: str,
    warn: bool = True,
) -> _Noise:
    if curve_kind not in _CURVES:
        raise ValueError(f"{func}: curve must be one of {_CURVES}, got {curve_kind!r}")
    spacing = check_positive(snapshot_spacing, "snapshot_spacing", func)
    n_snap = None
    if n_snapshots is not None:
        n_snap = int(check_positive(n_snapshots, "n_snapshots", func, integer=True))
    dims = None
    if effective_dims is not None:
        dims = check_positive(effective_dims, "effective_dims", func)
    common = dict(
        t=t,
        curve=curve,
        curve_kind=curve_kind,
        n_snapshots=n_snap,
        effective_dims=dims,
        snapshot_spacing=spacing,
    )
    if is_rows:
        if cov is not None:
            raise ValueError(
                f"{func}: pass either 2-D y (replicate curves, whose spread gives the "
                "covariance) or cov, not both"
            )
        n_rows = rows.shape[0]
        relative = rows / rows.mean(axis=0) - 1.0
        return _Noise("rows", float(n_rows - 1), rows=relative, **common)
    if cov is None:
        ready = dims is not None and (curve_kind == "displacement" or n_snap is not None)
        if ready:
            cov = "fbm"
        else:
            if warn:
                warn_at_caller(
                    f"{func}: the standard error of a single curve assumes independent "
                    "points, and the points of a diffusion curve are strongly correlated, "
                    "so the interval is too narrow. Pass 2-D y (one row per parameter "
                    "block or seed: fd.msd(X, groups=...) with random blocks), or "
                    "cov='fbm' with n_snapshots and effective_dims (e.g. "
                    "fd.effective_dimension(X)), or cov=<matrix>; cov='independent' "
                    "silences this warning.",
                    UncalibratedStderrWarning,
                )
            cov = "independent"
    if isinstance(cov, str):
        if cov not in _COV_STRINGS:
            raise ValueError(
                f"{func}: cov must be None, a (len(t), len(t)) matrix or one of "
                f"{_COV_STRINGS}, got {cov!r}"
            )
        if cov == "independent":
            return _Noise("independent", math.nan, **common)
        if dims is None:
            raise ValueError(
                f"{func}: cov={cov!r} needs effective_dims, the number of independent, "
                "identically diffusing coordinates (not the parameter count of a network; "
                "when unsure, pass per-block curves as 2-D y instead)"
            )
        if curve_kind == "msd":
            if n_snap is None:
                raise ValueError(
                    f"{func}: cov={cov!r} for a time-averaged MSD needs n_snapshots, the "
                    "number of snapshots T behind it"
                )
            lags = t / spacing
            if np.any(np.abs(lags - np.round(lags)) > 1e-6 * np.maximum(lags, 1.0)):
                raise ValueError(
                    f"{func}: cov={cov!r} needs t to be whole multiples of snapshot_spacing "
                    f"= {spacing:g} (lags in snapshots)"
                )
            if np.round(lags[-1]) > n_snap - 1:
                raise ValueError(
                    f"{func}: t reaches lag {np.round(lags[-1]):g} snapshots but n_snapshots "
                    f"= {n_snap} allows at most {n_snap - 1}"
                )
        return _Noise(cov, math.inf, **common)
    matrix = as_real_array(cov, "cov", func)
    if matrix.shape != (t.size, t.size):
        raise ValueError(
            f"{func}: cov must have shape (len(t), len(t)) = ({t.size}, {t.size}), got "
            f"{matrix.shape}"
        )
    require_finite(matrix, "cov", func)
    if not np.allclose(matrix, matrix.T, rtol=1e-8, atol=1e-14 * np.abs(matrix).max()):
        raise ValueError(f"{func}: cov must be symmetric")
    if np.any(np.diag(matrix) < 0):
        raise ValueError(f"{func}: cov must have a non-negative diagonal (variances)")
    relative = matrix / np.outer(curve, curve)
    return _Noise("cov", math.inf, relative_cov=relative, **common)


# --------------------------------------------------------------------------- line fits


def _curve_and_empirical_noise(func, t_arr, rows, is_rows, cov, combine_rows):
    """The combined curve and its noise model for functions that take only empirical
    covariance (rows, a matrix or "independent"), not the analytic fBm models."""
    if isinstance(cov, str) and cov != "independent":
        raise ValueError(f"{func}: cov must be None, 'independent' or a matrix, got {cov!r}")
    curve_values = _combine(rows, combine_rows, func)
    noise = _resolve_noise(
        func,
        t_arr,
        rows,
        is_rows,
        curve_values,
        cov=cov,
        n_snapshots=None,
        effective_dims=None,
        snapshot_spacing=1.0,
        curve_kind="msd",
        warn=False,
    )
    return curve_values, noise


def _weighted_line(x: np.ndarray, z: np.ndarray, w: np.ndarray):
    """Weighted least squares z = a + b (x - xc); returns (coef, A, X, xc) with coef = A z."""
    xc = float(np.sum(w * x) / np.sum(w))
    design = np.column_stack([np.ones_like(x), x - xc])
    weighted = design.T * w
    solver = np.linalg.solve(weighted @ design, weighted)
    return solver @ z, solver, design, xc


def _residual_cov(design: np.ndarray, z: np.ndarray, coef: np.ndarray, w: np.ndarray):
    resid = z - design @ coef
    dof = design.shape[0] - design.shape[1]
    if dof <= 0:
        return np.full((design.shape[1],) * 2, np.nan), 0.0
    scale = float(np.sum(w * resid**2) / dof)
    return scale * np.linalg.inv((design.T * w) @ design), float(dof)


class SingularCovarianceWarning(UserWarning):
    """GLS was given a (numerically) singular covariance and regularized it.

    Eigenvalues below 1e-10 of the largest were raised to that floor (a ridge on the
    precision matrix): the fit is defined, but directions of the data the covariance
    calls noise-free get a weight it cannot justify. Check the covariance (duplicated
    points, too few rows behind an estimated one) or use ``method="ols"``.
    """


#: eigenvalues of a covariance below this fraction of the largest count as zero
_SINGULAR_FLOOR = 1e-10


def _stable_inverse(matrix: np.ndarray, func: str = "fit_exponent", warn: bool = False):
    """Inverse of a covariance matrix with eigenvalues floored at 1e-10 of the largest.

    Raises ValueError for a covariance without a positive eigenvalue (no noise
    information at all); with ``warn``, a :class:`SingularCovarianceWarning` when the
    floor was applied to an eigenvalue that is not merely rounding (< 1e-10 * largest and
    the matrix was given, not analytic)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    largest = float(values.max()) if values.size else 0.0
    if not (math.isfinite(largest) and largest > 0):
        raise ValueError(
            f"{func}: the covariance of the fitted points has no positive eigenvalue (largest "
            f"{largest:g}); GLS weights by its inverse and needs it positive definite. Pass a "
            "covariance with non-zero variances, or use method='ols'"
        )
    floor = largest * _SINGULAR_FLOOR
    if warn and values.min() < floor:
        n_low = int(np.count_nonzero(values < floor))
        warn_at_caller(
            f"{func}: the covariance of the {values.size} fitted points is singular "
            f"({n_low} eigenvalue(s) below {_SINGULAR_FLOOR:g} of the largest); GLS "
            "regularized it by raising them to that floor (a ridge). The interval is only as "
            "good as that choice: check the covariance or use method='ols'",
            SingularCovarianceWarning,
        )
    return (vectors / np.maximum(values, floor)) @ vectors.T


def _gls_line(x: np.ndarray, z: np.ndarray, log_cov: np.ndarray, func: str = "fit_exponent",
              warn: bool = False):
    """Generalized least squares z = a + b (x - xc); returns (coef, cov_coef, xc)."""
    xc = float(x.mean())
    design = np.column_stack([np.ones_like(x), x - xc])
    precision = _stable_inverse(log_cov, func, warn)
    normal = design.T @ precision @ design
    coef_cov = np.linalg.inv(normal)
    coef = coef_cov @ (design.T @ precision @ z)
    return coef, coef_cov, xc


def _shrunk_correlation_cov(deviations: np.ndarray) -> np.ndarray:
    """Covariance of the mean of the rows, correlation shrunk toward the identity.

    Schaefer-Strimmer: the sample correlation r_ij is pulled toward 0 by the
    intensity lambda = sum_{i!=j} Var(r_ij) / sum_{i!=j} r_ij^2 (clipped to [0, 1]),
    so the matrix is invertible even with fewer rows than points.
    """
    n_rows = deviations.shape[0]
    centred = deviations - deviations.mean(axis=0)
    scale = centred.std(axis=0, ddof=1)
    scale = np.where(scale > 0, scale, 1e-300)
    standard = centred / scale
    products = standard[:, :, None] * standard[:, None, :]
    corr = products.sum(axis=0) / (n_rows - 1)
    corr_var = n_rows / (n_rows - 1) ** 3 * ((products - products.mean(axis=0)) ** 2).sum(axis=0)
    off = ~np.eye(corr.shape[0], dtype=bool)
    denom = float(np.sum(corr[off] ** 2))
    intensity = 1.0 if denom == 0 else float(np.clip(corr_var[off].sum() / denom, 0.0, 1.0))
    shrunk = (1.0 - intensity) * corr
    np.fill_diagonal(shrunk, 1.0)
    return shrunk * np.outer(scale, scale) / n_rows


def _gls_rows(x: np.ndarray, rows: np.ndarray):
    """GLS on the mean of the rows with a shrunk covariance; jackknife over rows for the error.

    ``rows`` are the replicate curves at the chosen points, shape (n_rows, L).
    Returns (coef, coef_cov, xc); coef_cov is the leave-one-row-out jackknife
    covariance, which includes the noise of the estimated weights.
    """

    def one(subset: np.ndarray):
        mean = subset.mean(axis=0)
        z = np.log10(mean)
        log_cov = _shrunk_correlation_cov(subset / mean - 1.0) / _LN10**2
        return _gls_line(x, z, log_cov)

    coef, _, xc = one(rows)
    n_rows = rows.shape[0]
    if n_rows < 3:
        return coef, np.full((2, 2), np.nan), xc
    leave_one_out = []
    for i in range(n_rows):
        subset = np.delete(rows, i, axis=0)
        if np.any(subset.mean(axis=0) <= 0):
            continue
        sub_coef, _, sub_xc = one(subset)
        # express in the same centring as the full fit
        leave_one_out.append([sub_coef[0] + sub_coef[1] * (xc - sub_xc), sub_coef[1]])
    jack = np.array(leave_one_out)
    k = jack.shape[0]
    diff = jack - jack.mean(axis=0)
    return coef, (k - 1) / k * (diff.T @ diff), xc


def _quantile(confidence: float, dof: float) -> float:
    upper = 0.5 + confidence / 2.0
    if not math.isfinite(dof):
        return float(stats.norm.ppf(upper))
    if dof <= 0:
        return math.nan
    return float(stats.t.ppf(upper, dof))


def _weighted_r2(z: np.ndarray, fitted: np.ndarray, w: np.ndarray) -> float:
    """Weighted r^2; 1 when the residuals are at rounding level (e.g. a constant curve)."""
    zbar = np.sum(w * z) / np.sum(w)
    total = float(np.sum(w * (z - zbar) ** 2))
    resid = float(np.sum(w * (z - fitted) ** 2))
    rounding = float(np.sum(w)) * (1e-12 * (1.0 + float(np.max(np.abs(z))))) ** 2
    if resid <= rounding:
        return 1.0
    return 1.0 - resid / total


# --------------------------------------------------------------------------- plotting


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False, repr=False)
class ExponentFit:
    """A power law y = prefactor * t^exponent fitted on log-log axes.

    Attributes
    ----------
    exponent : float
        Slope of log y against log t.
    stderr : float
        Standard error of ``exponent`` (see ``stderr_source``).
    ci : tuple of float
        Two-sided interval for ``exponent`` at level ``confidence`` (Student t
        with ``dof`` degrees of freedom; normal when ``dof`` is infinite).
    prefactor : float
        y at t = 1 on the fitted line, in the units of y (t in the units of t).
    prefactor_ci : tuple of float
        Interval for ``prefactor`` (exponentiated from the log10 intercept).
    r2 : float
        Coefficient of determination of the line in log10 space, with the
        log-even weights.
    window : tuple of float
        (first, last) t of the points used, in the units of t.
    method : str
        ``"ols"`` or ``"gls"``.
    stderr_source : str
        Where the covariance between points came from: ``"rows"`` (replicate
        curves), ``"cov"`` (matrix given), ``"fbm"`` / ``"brownian"`` (analytic
        model, see :func:`tamsd_covariance`) or ``"independent"`` (scatter about
        the line: not calibrated for correlated curves).
    confidence : float
        Level of ``ci`` and ``prefactor_ci``.
    dof : float
        Degrees of freedom of the interval's t quantile.
    t, y : ndarray, shape (n_points,)
        The points used (log-even subset of the window) and the fitted curve there.
    weights : ndarray, shape (n_points,)
        Log-spacing weights of the points (mean 1); used by OLS and by ``r2``.
    window_rule : str
        Why this window: the rule (``"auto"``, ``"last_regime"``, ``"first_regime"``,
        manual) and what it found (the crossovers, which regime of how many).
    regime_index : int or None
        0-based index of the fitted regime among ``regime_windows`` (automatic windows).
    regime_windows : tuple of (float, float)
        All regimes the automatic window rule found (t ranges), in increasing t.
    regime_exponents : tuple of float
        Their exponents (from the piecewise fit).
    curve : str
        What y is: ``"msd"`` or ``"displacement"``; names the exponent in the repr
        (``msd_exponent`` / ``displacement_exponent``).
    notes : tuple of str
        The caveats that were also issued as :class:`WindowWarning` (short window,
        transient regime).

    Notes
    -----
    ``exponent`` is the generic name of the log-log slope of whatever y is (kept for
    curves that are neither an MSD nor R(t)); for the named exponents use
    ``msd_exponent`` / ``displacement_exponent`` (they refuse the wrong curve) or
    :func:`fit_msd` / :func:`fit_displacement`.
    """

    exponent: float
    stderr: float
    ci: tuple[float, float]
    prefactor: float
    prefactor_ci: tuple[float, float]
    r2: float
    window: tuple[float, float]
    method: str
    stderr_source: str
    confidence: float
    dof: float
    t: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    t_data: np.ndarray = field(repr=False)
    y_data: np.ndarray = field(repr=False)
    window_rule: str = "manual"
    regime_index: int | None = None
    regime_windows: tuple = ()
    regime_exponents: tuple = ()
    curve: str = "msd"
    notes: tuple = ()

    @property
    def n_points(self) -> int:
        """Number of points the line was fitted to."""
        return int(self.t.size)

    @property
    def n_regimes(self) -> int | None:
        """Number of regimes the automatic window rule found (None for a manual window)."""
        return len(self.regime_windows) or None

    @property
    def regime(self) -> str:
        """Which regime the fit describes, in words (e.g. "regime 3 of 3 (last)")."""
        n = self.n_regimes
        if n is None or self.regime_index is None:
            return "manual window" if self.window_rule.startswith("manual") else "all points"
        k = self.regime_index
        if n == 1:
            return "the only regime (no crossover found)"
        where = "first" if k == 0 else "last" if k == n - 1 else "transient"
        return f"regime {k + 1} of {n} ({where})"

    @property
    def msd_exponent(self) -> float:
        """The exponent, when y is a time-averaged MSD (``curve="msd"``)."""
        if self.curve != "msd":
            raise AttributeError(f"this fit is of curve={self.curve!r}; use displacement_exponent")
        return self.exponent

    @property
    def displacement_exponent(self) -> float:
        """The exponent, when y is R(t) (``curve="displacement"``)."""
        if self.curve != "displacement":
            raise AttributeError(f"this fit is of curve={self.curve!r}; use msd_exponent")
        return self.exponent

    @property
    def exponent_name(self) -> str:
        """``"msd_exponent"`` or ``"displacement_exponent"``."""
        return "displacement_exponent" if self.curve == "displacement" else "msd_exponent"

    def predict(self, t: Any) -> np.ndarray:
        """Fitted power law at ``t`` (same units as the data)."""
        return self.prefactor * np.asarray(t, dtype=np.float64) ** self.exponent

    def __repr__(self) -> str:
        level = f"{100 * self.confidence:g}%"
        notes = "".join(f", note={n!r}" for n in self.notes)
        return (
            f"ExponentFit({self.exponent_name}={format_number(self.exponent)} ± "
            f"{format_number(self.stderr)} "
            f"[{level} CI {format_number(self.ci[0])}, {format_number(self.ci[1])}], "
            f"prefactor={format_number(self.prefactor)}, r2={self.r2:.4f}, "
            f"window=({format_number(self.window[0])}, {format_number(self.window[1])}) "
            f"[{self.regime}; {self.window_rule}], "
            f"n_points={self.n_points}, method={self.method!r}, "
            f"stderr_source={self.stderr_source!r}{notes})"
        )

    def plot(self, ax=None, *, show_data: bool = True, brownian: bool = True):
        """Data, fitted points, the fitted line and the window (shaded, with its rule).

        Axes are labelled by what the curve is (MSD(τ) against the lag τ, R(t) against t;
        in the units of t, e.g. steps); a dotted Brownian reference of slope 1 (MSD) or
        1/2 (R(t)) passes through the first fitted point.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Axes to draw on; a new figure is made when omitted.
        show_data : bool, default True
            Also draw the full input curve.
        brownian : bool, default True
            Draw the Brownian reference.

        Returns
        -------
        matplotlib Axes
        """
        ax = axes(ax)
        if show_data:
            ax.plot(self.t_data, self.y_data, color="0.7", lw=1, label="data")
        ax.plot(self.t, self.y, "o", ms=4, color="C0", label="fitted points")
        grid = np.geomspace(self.window[0], self.window[1], 100)
        symbol = "α" if self.curve == "displacement" else "β"
        ax.plot(
            grid,
            self.predict(grid),
            color="C3",
            lw=2,
            label=f"{self.exponent_name} {symbol} = {format_number(self.exponent)} ± "
            f"{format_number(self.stderr)}",
        )
        ax.axvspan(self.window[0], self.window[1], color="C3", alpha=0.08,
                   label=f"window: {self.regime}")
        if brownian:
            _brownian_reference(ax, self.curve, self.t_data, self.t[0], self.y[0])
        _label_curve_axes(ax, self.curve)
        ax.set_title(self.window_rule, fontsize="small", wrap=True)
        ax.legend(fontsize="small")
        return ax


def _label_curve_axes(ax, curve: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    if curve == "displacement":
        ax.set_xlabel("t since the reference snapshot (steps)")
        ax.set_ylabel("R(t) = ||W(t) - W(t0)||")
    else:
        ax.set_xlabel("lag τ (steps)")
        ax.set_ylabel("MSD(τ)")


def _brownian_reference(ax, curve: str, t_data, t0: float, y0: float) -> None:
    slope = 0.5 if curve == "displacement" else 1.0
    positive = np.asarray(t_data)[np.asarray(t_data) > 0]
    grid = np.geomspace(positive[0], positive[-1], 50)
    ax.plot(grid, y0 * (grid / t0) ** slope, color="0.4", ls=":", lw=1,
            label=f"Brownian (slope {slope:g})")


@dataclass(frozen=True, repr=False)
class Regime:
    """One straight segment of a piecewise power law.

    Attributes
    ----------
    window : tuple of float
        (t_start, t_end) of the segment; interior ends are breakpoints.
    exponent, stderr : float
        Slope of log y against log t in the segment and its standard error
        (conditional on the breakpoints: their uncertainty is not included).
    ci : tuple of float
        Interval for ``exponent``.
    prefactor : float
        y at t = 1 on the segment's line.
    """

    window: tuple[float, float]
    exponent: float
    stderr: float
    ci: tuple[float, float]
    prefactor: float

    def __repr__(self) -> str:
        return (
            f"Regime(t=({format_number(self.window[0])}, {format_number(self.window[1])}), "
            f"exponent={format_number(self.exponent)} ± {format_number(self.stderr)})"
        )


@dataclass(frozen=True, eq=False, repr=False)
class Crossover:
    """A continuous piecewise power law: straight segments in log-log joined at breakpoints.

    Attributes
    ----------
    regimes : tuple of Regime
        Segments in increasing t.
    breakpoints : tuple of float
        t where consecutive segments meet (len(regimes) - 1 of them).
    r2 : float
        Weighted r^2 of the whole piecewise line in log10 space.
    stderr_source : str
        As for :class:`ExponentFit`.
    confidence : float
        Level of the regimes' intervals.
    t, y, weights : ndarray
        Points used (log-even subset) and their weights.
    t_data, y_data : ndarray
        The full input curve.
    models : tuple of BreakModel
        Every number of breaks considered, with its BIC (empty for a fixed ``n_breaks``).
    runner_up : BreakModel or None
        The second-best admissible model when its BIC is within 4 of the chosen one.
    selection : str
        How the number of breaks was chosen.
    curve : str or None
        ``"msd"``, ``"displacement"`` or None (labels the plot).
    """

    regimes: tuple[Regime, ...]
    breakpoints: tuple[float, ...]
    r2: float
    stderr_source: str
    confidence: float
    t: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    t_data: np.ndarray = field(repr=False)
    y_data: np.ndarray = field(repr=False)
    models: tuple = ()
    runner_up: Any = None
    selection: str = ""
    curve: str | None = None

    @property
    def first_regime(self) -> Regime:
        """The earliest regime."""
        return self.regimes[0]

    @property
    def last_regime(self) -> Regime:
        """The latest regime (the late-time behaviour the paper's theory describes)."""
        return self.regimes[-1]

    @property
    def exponents(self) -> tuple[float, ...]:
        """Exponent of each regime, in increasing t."""
        return tuple(r.exponent for r in self.regimes)

    @property
    def n_breaks(self) -> int:
        """Number of breakpoints."""
        return len(self.breakpoints)

    def predict(self, t: Any) -> np.ndarray:
        """The piecewise power law at ``t``."""
        t = np.asarray(t, dtype=np.float64)
        out = np.empty_like(t)
        edges = np.concatenate([[-np.inf], self.breakpoints, [np.inf]])
        for regime, lo, hi in zip(self.regimes, edges[:-1], edges[1:]):
            inside = (t >= lo) & (t <= hi)
            out[inside] = regime.prefactor * t[inside] ** regime.exponent
        return out

    def __repr__(self) -> str:
        parts = ", ".join(repr(r) for r in self.regimes)
        breaks = ", ".join(format_number(b) for b in self.breakpoints)
        extra = ""
        if self.runner_up is not None:
            ru = self.runner_up
            bps = ", ".join(format_number(b) for b in ru.breakpoints)
            chosen = next((m.bic for m in self.models if m.n_breaks == self.n_breaks), math.nan)
            extra = (f", runner_up={ru.n_breaks} break(s) at ({bps}), ΔBIC="
                     f"{ru.bic - chosen:.2g}")
        return (f"Crossover(breakpoints=({breaks}), regimes=[{parts}], r2={self.r2:.4f}"
                f"{extra})")

    def plot(self, ax=None, *, show_data: bool = True, brownian: bool = True):
        """Data and the piecewise power law on log-log axes, breakpoints marked.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        show_data : bool, default True
        brownian : bool, default True
            With ``curve`` known, a dotted Brownian reference (slope 1 for an MSD, 1/2
            for R(t)).

        Returns
        -------
        matplotlib Axes
        """
        ax = axes(ax)
        if show_data:
            ax.plot(self.t_data, self.y_data, color="0.7", lw=1, label="data")
        ax.plot(self.t, self.y, "o", ms=3, color="C0", label="fitted points")
        for k, regime in enumerate(self.regimes):
            grid = np.geomspace(regime.window[0], regime.window[1], 50)
            ax.plot(
                grid,
                regime.prefactor * grid**regime.exponent,
                lw=2,
                color=f"C{(k + 1) % 10}",
                label=f"regime {k + 1}: slope {format_number(regime.exponent)} ± "
                f"{format_number(regime.stderr)}",
            )
        for b in self.breakpoints:
            ax.axvline(b, color="0.4", ls="--", lw=1)
        if self.curve is not None:
            if brownian:
                _brownian_reference(ax, self.curve, self.t_data, self.t[0], self.y[0])
            _label_curve_axes(ax, self.curve)
        else:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("t")
            ax.set_ylabel("y")
        title = f"{self.n_breaks} crossover(s): {self.selection}"
        if self.runner_up is not None:
            title += f"; close runner-up: {self.runner_up.n_breaks} break(s)"
        ax.set_title(title, fontsize="small")
        ax.legend(fontsize="small")
        return ax


@dataclass(frozen=True, eq=False, repr=False)
class LocalSlope:
    """Smoothed local exponent d log y / d log t.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Where the slope is evaluated (units of the input t).
    slope : ndarray, shape (n,)
        Local-linear kernel estimate of d log y / d log t.
    stderr : ndarray or None, shape (n,)
        Standard error of ``slope`` when the covariance between points is known
        (2-D y or ``cov``), else None.
    bandwidth : float
        Standard deviation of the Gaussian kernel, in decades of t.
    """

    t: np.ndarray
    slope: np.ndarray
    stderr: np.ndarray | None
    bandwidth: float
    curve: str | None = None

    def __repr__(self) -> str:
        return (
            f"LocalSlope(n={self.t.size}, t=({format_number(self.t[0])}..{format_number(self.t[-1])}), "
            f"slope=({format_number(float(self.slope.min()))}..{format_number(float(self.slope.max()))}), "
            f"bandwidth={self.bandwidth:g} decades)"
        )

    def plot(self, ax=None, *, reference: tuple[float, ...] | None = None):
        """Local slope against t (log x axis), with a band of ±2 stderr when known.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        reference : tuple of float, optional
            Horizontal reference lines. Default: the Brownian slope, 1 for an MSD (and for
            an unknown curve), 1/2 for R(t).

        Returns
        -------
        matplotlib Axes
        """
        ax = axes(ax)
        ax.plot(self.t, self.slope, color="C0", label="local slope")
        if self.stderr is not None:
            ax.fill_between(
                self.t,
                self.slope - 2 * self.stderr,
                self.slope + 2 * self.stderr,
                color="C0",
                alpha=0.25,
                label="±2 stderr",
            )
        if reference is None:
            reference = (0.5,) if self.curve == "displacement" else (1.0,)
        for level in reference:
            ax.axhline(level, color="0.5", ls=":", lw=1, label=f"Brownian ({level:g})"
                       if self.curve is not None else None)
        ax.set_xscale("log")
        if self.curve == "displacement":
            ax.set_xlabel("t since the reference snapshot (steps)")
            ax.set_ylabel("local slope d log R / d log t")
        elif self.curve == "msd":
            ax.set_xlabel("lag τ (steps)")
            ax.set_ylabel("local slope d log MSD / d log τ")
        else:
            ax.set_xlabel("t")
            ax.set_ylabel("d log y / d log t")
        ax.legend()
        return ax


# --------------------------------------------------------------------------- piecewise fits


@dataclass
class _Piecewise:
    breaks: np.ndarray  # in log10 t, increasing
    coef: np.ndarray  # [a, b0, d1..dk] of z = a + b0 (x - xc) + sum d_j (x - b_j)_+
    xc: float
    sse: float
    slopes: np.ndarray
    slope_cov: np.ndarray | None
    solver: np.ndarray  # coef = solver @ z


def _piecewise_design(x: np.ndarray, breaks: np.ndarray, xc: float) -> np.ndarray:
    cols = [np.ones_like(x), x - xc]
    cols.extend(np.maximum(x - b, 0.0) for b in breaks)
    return np.column_stack(cols)


def _segment_counts(x: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Points in each closed segment [edge_j, edge_{j+1}], for a (..., k) array of breaks."""
    lo = np.searchsorted(x, breaks, side="left")  # first index >= break
    hi = np.searchsorted(x, breaks, side="right")  # first index > break
    starts = np.concatenate([np.zeros(breaks.shape[:-1] + (1,), dtype=int), lo], axis=-1)
    ends = np.concatenate([hi, np.full(breaks.shape[:-1] + (1,), x.size)], axis=-1)
    return ends - starts


def _feasible(x: np.ndarray, breaks: np.ndarray, min_width: float, min_points: int) -> np.ndarray:
    edges = np.concatenate(
        [np.full(breaks.shape[:-1] + (1,), x[0]), breaks, np.full(breaks.shape[:-1] + (1,), x[-1])],
        axis=-1,
    )
    wide = np.all(np.diff(edges, axis=-1) >= min_width - 1e-12, axis=-1)
    return wide & np.all(_segment_counts(x, breaks) >= min_points, axis=-1)


def _batch_sse(x, z, w, breaks_batch: np.ndarray, xc: float) -> np.ndarray:
    """Weighted SSE of the best continuous piecewise line for each row of breakpoints."""
    hinge = np.maximum(x[None, :, None] - breaks_batch[:, None, :], 0.0)
    base = np.broadcast_to(
        np.column_stack([np.ones_like(x), x - xc])[None], (breaks_batch.shape[0], x.size, 2)
    )
    design = np.concatenate([base, hinge], axis=2)  # (n, L, p)
    weighted = design * w[None, :, None]
    normal = np.einsum("nlp,nlq->npq", weighted, design)
    rhs = np.einsum("nlp,l->np", weighted, z)
    coef = np.linalg.solve(normal, rhs[..., None])[..., 0]
    resid = z[None, :] - np.einsum("nlp,np->nl", design, coef)
    return np.sum(w[None, :] * resid**2, axis=1)


def _best_breaks(x, z, w, n_breaks, min_width, min_points) -> np.ndarray | None:
    """Breakpoints (log10 t) minimising the weighted SSE: grid search, then Nelder-Mead."""
    xc = float(np.sum(w * x) / np.sum(w))
    lo, hi = x[0] + min_width, x[-1] - min_width
    if hi <= lo:
        return None
    grid_size = {1: 120, 2: 48, 3: 24}.get(n_breaks, 14)
    grid = np.linspace(lo, hi, grid_size)
    combos = np.array(list(itertools.combinations(grid, n_breaks)))
    combos = combos[_feasible(x, combos, min_width, min_points)]
    if combos.shape[0] == 0:
        return None
    chunks = np.array_split(combos, max(1, combos.shape[0] // 2000))
    sse = np.concatenate([_batch_sse(x, z, w, chunk, xc) for chunk in chunks])
    start = combos[int(np.argmin(sse))]
    penalty = 10.0 * float(np.sum(w * (z - np.sum(w * z) / np.sum(w)) ** 2)) + 1.0

    def objective(b):
        b = np.sort(np.asarray(b, dtype=np.float64))
        if not _feasible(x, b[None, :], min_width, min_points)[0]:
            return penalty
        return float(_batch_sse(x, z, w, b[None, :], xc)[0])

    step = (grid[1] - grid[0]) if grid.size > 1 else 0.1
    simplex = np.vstack([start] + [start + step * np.eye(n_breaks)[i] for i in range(n_breaks)])
    result = optimize.minimize(
        objective,
        start,
        method="Nelder-Mead",
        options={
            "xatol": 1e-7,
            "fatol": 1e-14,
            "initial_simplex": simplex,
            "maxiter": 400 * n_breaks,
        },
    )
    best = np.sort(result.x) if result.fun <= objective(start) else start
    return best


def _fit_piecewise(x, z, w, breaks, log_cov) -> _Piecewise:
    xc = float(np.sum(w * x) / np.sum(w))
    design = _piecewise_design(x, breaks, xc)
    weighted = design.T * w
    solver = np.linalg.solve(weighted @ design, weighted)
    coef = solver @ z
    resid = z - design @ coef
    sse = float(np.sum(w * resid**2))
    k = breaks.size
    to_slopes = np.tril(np.ones((k + 1, k + 1)))
    mapping = np.zeros((k + 1, k + 2))
    mapping[:, 1:] = to_slopes
    slopes = mapping @ coef
    if log_cov is not None:
        coef_cov = solver @ log_cov @ solver.T
    else:
        coef_cov, _ = _residual_cov(design, z, coef, w)
    slope_cov = mapping @ coef_cov @ mapping.T
    return _Piecewise(breaks, coef, xc, sse, slopes, slope_cov, solver)


#: BIC difference below which the runner-up model is reported as close (Kass & Raftery:
#: differences below 2 are "not worth more than a bare mention", 2-6 "positive")
CLOSE_BIC = 4.0


@dataclass(frozen=True)
class BreakModel:
    """One candidate of :func:`crossover`'s model selection.

    Attributes
    ----------
    n_breaks : int
    breakpoints : tuple of float
        In units of t.
    bic : float
        Bayesian information criterion (lower is better; see :func:`crossover`, Notes).
    admissible : bool
        Whether every slope change passes ``min_exponent_change`` and, with a known
        covariance, the significance test.
    reason : str
        Why a model was not admissible ("" if it was).
    """

    n_breaks: int
    breakpoints: tuple[float, ...]
    bic: float
    admissible: bool
    reason: str = ""

    def __repr__(self) -> str:
        bps = ", ".join(format_number(b) for b in self.breakpoints)
        extra = "" if self.admissible else f", rejected: {self.reason}"
        return f"BreakModel(n_breaks={self.n_breaks}, breakpoints=({bps}), bic={self.bic:.2f}{extra})"


def _effective_points(resid: np.ndarray, w: np.ndarray, n_params: int) -> tuple[float, float]:
    """(n_eff, rho): points corrected for the lag-1 autocorrelation rho of the residuals.

    An AR(1) approximation of the residual correlation between neighbouring log-even
    points: n_eff = n (1 - rho) / (1 + rho), rho clipped to [0, 0.9]; at least
    n_params + 2 (and at most n)."""
    r = resid * np.sqrt(w)
    denom = float(np.dot(r, r))
    if r.size < 3 or denom <= 0:
        return float(r.size), 0.0
    rho = float(np.clip(np.dot(r[:-1], r[1:]) / denom, 0.0, 0.9))
    n_eff = r.size * (1.0 - rho) / (1.0 + rho)
    return float(min(r.size, max(n_eff, n_params + 2.0))), rho


def _bic_scores(models: list, x, z, w) -> tuple[np.ndarray, float, float]:
    """BIC_k = n_eff log(SSE_k / n_eff) + p_k log(n_eff), p_k = 2 + 2k, for each model.

    SSE is the weighted residual sum of squares (weights of mean 1); n_eff the number of
    effectively independent points, from the residual autocorrelation of the richest model
    (:func:`_effective_points`): the points of an MSD or R(t) curve are correlated, and the
    plain BIC with n would take correlated wiggles for regimes."""
    richest = models[-1]
    design = _piecewise_design(x, richest.breaks, richest.xc)
    resid = z - design @ richest.coef
    n_eff, rho = _effective_points(resid, w, 2 + 2 * richest.breaks.size)
    scale = float(np.sum(w * (z - np.average(z, weights=w)) ** 2)) / w.size
    floor = max(scale, 1e-300) * 1e-12  # exact data: SSE at rounding level
    out = []
    for m in models:
        sse = max(m.sse / w.size, floor)
        out.append(n_eff * math.log(sse) + (2 + 2 * m.breaks.size) * math.log(n_eff))
    return np.array(out), n_eff, rho


def _admissible(model: _Piecewise, log_cov, min_change: float, z_crit: float) -> str:
    """"" when every slope change of ``model`` is large enough, else the reason."""
    k = model.breaks.size
    if k == 0:
        return ""
    changes = np.diff(model.slopes)
    small = np.abs(changes) < min_change
    if np.any(small):
        j = int(np.argmax(small))
        return f"slope change {changes[j]:+.3g} at break {j + 1} < min_exponent_change"
    if log_cov is not None and model.slope_cov is not None:
        diff_op = np.diff(np.eye(k + 1), axis=0)
        change_se = np.sqrt(np.maximum(np.diag(diff_op @ model.slope_cov @ diff_op.T), 0.0))
        weak = np.abs(changes) < z_crit * change_se
        if np.any(weak):
            j = int(np.argmax(weak))
            return (f"slope change {changes[j]:+.3g} at break {j + 1} is within {z_crit:g} "
                    f"standard errors ({change_se[j]:.3g})")
    return ""


def _select_piecewise(
    x, z, w, log_cov, *, n_breaks, max_breaks, min_width, min_points, min_change, z_crit=2.0
):
    """Fixed ``n_breaks``, or (``n_breaks=None``) the number of breaks with the lowest BIC.

    Every number of breaks 0..``max_breaks`` is fitted (best breakpoints by grid search
    and Nelder-Mead) and scored together (:func:`_bic_scores`); models whose slope changes
    are below ``min_change`` or, with a known covariance, below ``z_crit`` standard errors
    are not admissible. Returns (model, candidates) with candidates a list of
    (n_breaks, model, bic, reason) -- empty for a fixed ``n_breaks``.
    """
    if n_breaks is not None:
        if n_breaks == 0:
            return _fit_piecewise(x, z, w, np.zeros(0), log_cov), []
        breaks = _best_breaks(x, z, w, n_breaks, min_width, min_points)
        if breaks is None:
            return None, []
        return _fit_piecewise(x, z, w, breaks, log_cov), []
    models = [_fit_piecewise(x, z, w, np.zeros(0), log_cov)]
    for k in range(1, max_breaks + 1):
        breaks = _best_breaks(x, z, w, k, min_width, min_points)
        if breaks is None:
            break
        models.append(_fit_piecewise(x, z, w, breaks, log_cov))
    scores, _, _ = _bic_scores(models, x, z, w)
    candidates = [
        (m.breaks.size, m, float(b), _admissible(m, log_cov, min_change, z_crit))
        for m, b in zip(models, scores)
    ]
    ok = [c for c in candidates if not c[3]]
    best = min(ok, key=lambda c: c[2])
    return best[1], candidates


# --------------------------------------------------------------------------- public fits


def _combine(rows: np.ndarray, combine_rows: str, func: str) -> np.ndarray:
    if combine_rows == "mean":
        return rows.mean(axis=0)
    if combine_rows == "sum":
        return rows.sum(axis=0)
    raise ValueError(f"{func}: combine_rows must be 'mean' or 'sum', got {combine_rows!r}")


#: most points per decade a fit may ask for (the log-even grid costs memory and time
#: proportional to it; real curves hold far fewer points per decade)
MAX_POINTS_PER_DECADE = 10_000


def _check_points_per_decade(value: Any, func: str) -> float:
    ppd = check_positive(value, "points_per_decade", func)
    if not 2 <= ppd <= MAX_POINTS_PER_DECADE:
        raise ValueError(
            f"{func}: points_per_decade must be in [2, {MAX_POINTS_PER_DECADE}], got {value!r}"
        )
    return ppd


WINDOW_RULES = ("auto", "last_regime", "first_regime")
#: a window narrower than this (decades of t) gets a warning: a power law over less than a
#: decade is hard to tell from a curve
MIN_WINDOW_DECADES = 1.0


class WindowWarning(UserWarning):
    """The fitted window is short (< 1 decade) or a transient regime between two crossovers.

    The exponent then describes a passing stage of the curve, or too little of it to tell a
    power law from a bend. Look at ``fit.plot()`` / ``crossover(t, y).plot()`` and choose the
    regime deliberately (``window="last_regime"`` for the late-time exponent the paper's
    theory is about, ``"first_regime"``, or ``(t_min, t_max)``).
    """


@dataclass(frozen=True)
class _WindowChoice:
    lo: float
    hi: float
    rule: str
    regime_index: int | None = None  # 0-based
    regime_windows: tuple[tuple[float, float], ...] = ()
    regime_exponents: tuple[float, ...] = ()

    @property
    def n_regimes(self) -> int | None:
        return len(self.regime_windows) or None


def _auto_window(
    t, curve, noise: _Noise, func, *, upper, points_per_decade, max_breaks, min_exponent_change,
    rule: str = "auto",
) -> _WindowChoice:
    """The window of one regime of the continuous piecewise power law below ``upper``.

    ``rule``: "auto" the widest regime (in decades), "last_regime" the last, "first_regime"
    the first. Regimes are found by :func:`crossover`'s global selection (BIC)."""
    mask = t <= upper * (1 + 1e-12)
    if np.count_nonzero(mask) < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: only {np.count_nonzero(mask)} point(s) of t lie below the automatic "
            f"upper limit {upper:g} (max_lag_fraction * n_snapshots * snapshot_spacing); "
            f"a fit needs at least {MIN_FIT_POINTS}. Pass a manual window or a larger "
            "max_lag_fraction"
        )
    idx = _log_even_subset(t, mask, points_per_decade)
    x = np.log10(t[idx])
    z = np.log10(curve[idx])
    w = _log_spacing_weights(x)
    full = (float(t[idx[0]]), float(t[idx[-1]]))
    capped = "" if upper >= t[-1] else f", t <= {upper:g} (max_lag_fraction of the run)"
    min_points = 4
    if idx.size < 2 * min_points:
        return _WindowChoice(*full, f"{rule}: all points{capped} (too few to look for crossovers)",
                             0, (full,))
    slope = _weighted_line(x, z, w)[0][1]
    log_cov = noise.log_cov(idx, slope)
    model, _ = _select_piecewise(
        x,
        z,
        w,
        log_cov,
        n_breaks=None,
        max_breaks=max_breaks,
        min_width=0.3,
        min_points=min_points,
        min_change=min_exponent_change,
    )
    edges = np.concatenate([[x[0]], model.breaks, [x[-1]]])
    windows = tuple((float(10.0 ** edges[j]), float(10.0 ** edges[j + 1]))
                    for j in range(edges.size - 1))
    exps = tuple(float(v) for v in model.slopes)
    if model.breaks.size == 0:
        return _WindowChoice(*full, f"{rule}: one power law over all points{capped} "
                             "(no crossover found)", 0, windows, exps)
    widths = np.diff(edges)
    n_reg = widths.size
    if rule == "last_regime":
        k = n_reg - 1
        why = f"last of {n_reg} regimes"
    elif rule == "first_regime":
        k = 0
        why = f"first of {n_reg} regimes"
    else:
        k = int(np.argmax(widths))
        why = f"widest of {n_reg} regimes (regime {k + 1})"
    lo, hi = edges[k], edges[k + 1]
    trim = min(0.1, 0.15 * widths[k])  # crossovers are gradual: keep clear of breakpoints
    if k > 0:
        lo += trim
    if k < widths.size - 1:
        hi -= trim
    inside = (x >= lo - 1e-12) & (x <= hi + 1e-12)
    if np.count_nonzero(inside) < MIN_FIT_POINTS:
        inside = (x >= edges[k] - 1e-12) & (x <= edges[k + 1] + 1e-12)
    chosen = idx[inside]
    bps = ", ".join(format_number(10.0**b) for b in model.breaks)
    text = (f"{rule}: {why}, crossovers at t = {bps} (crossover(), BIC){capped}; "
            "trimmed 0.1 decade from interior crossovers")
    return _WindowChoice(float(t[chosen[0]]), float(t[chosen[-1]]), text, k, windows, exps)


def _window_warnings(choice: _WindowChoice, lo: float, hi: float) -> list[str]:
    out = []
    span = math.log10(hi / lo)
    if span < MIN_WINDOW_DECADES - 0.01:  # slack: a requested decade thinned to log-even points
        out.append(f"the window t = {lo:g}..{hi:g} spans {span:.2f} decades (< "
                   f"{MIN_WINDOW_DECADES:g}): a power law over so short a range is hard to tell "
                   "from a bend")
    n = choice.n_regimes
    if n is not None and n >= 3 and choice.regime_index is not None and 0 < choice.regime_index < n - 1:
        out.append(f"the window is regime {choice.regime_index + 1} of {n}, a transient between "
                   "two crossovers; window='last_regime' gives the late-time exponent")
    return out


def fit_exponent(
    t: Any,
    y: Any,
    *,
    window: Any = "auto",
    method: str = "ols",
    cov: Any = None,
    n_snapshots: int | None = None,
    effective_dims: float | None = None,
    snapshot_spacing: float = 1.0,
    curve: str = "msd",
    combine_rows: str = "mean",
    confidence: float = 0.95,
    points_per_decade: float = 10,
    max_lag_fraction: float = 0.1,
    max_breaks: int = 3,
    min_exponent_change: float = 0.1,
    warn_window: bool = True,
) -> ExponentFit:
    """Fit y = prefactor * t^exponent on log-log axes, with a calibrated interval.

    The line is fitted to a subset of the points spread evenly in log t (at most
    ``points_per_decade`` a decade), each weighted by the width in log t that it
    stands for, so each decade of t counts the same whatever the sampling.

    Parameters
    ----------
    t : array_like, shape (N,)
        Lags or times, strictly increasing and > 0, in any unit.
    y : array_like, shape (N,) or (n_rows, N)
        The curve (> 0), in any unit. A 2-D array holds replicate curves, one per
        row -- time-averaged MSDs of disjoint parameter blocks, or of independent
        seeds. The fit is to their mean (or sum, ``combine_rows``) and the
        covariance between points is estimated from their spread: this is the
        recommended way to get a sound interval for real training runs. Rows must
        be exchangeable: split parameters into blocks at random (not by layer), so
        that every block is a sample of the same dynamics; blocks that differ only
        by a constant factor do not inflate the error of the exponent.
    window : "auto", "last_regime", "first_regime", None or (t_min, t_max), default "auto"
        Range of t to fit (units of t). None uses all points. A manual window
        may reach past the data; ``ExponentFit.window`` reports the t range that
        was actually used. The three rules cap t at ``max_lag_fraction *
        n_snapshots * snapshot_spacing`` for an MSD whose ``n_snapshots`` is given
        (larger lags average over too few windows), then find the regimes with
        :func:`crossover` (continuous piecewise power law, up to ``max_breaks``
        breakpoints, number chosen by BIC) and fit one of them, trimmed by up to
        0.1 decade at interior breakpoints: ``"auto"`` the widest (in decades),
        ``"last_regime"`` the last -- the late-time exponent the paper's theory
        (and its Eq. 17) is about -- and ``"first_regime"`` the first. The result
        says which (``window_rule``, ``regime``, ``regime_windows``).
    method : {"ols", "gls"}, default "ols"
        ``"ols"``: weighted least squares with the log-even weights above; its
        standard error is the sandwich sqrt(A C A^T) with A the least-squares
        map from log y to (intercept, slope) and C the covariance of log y
        (delta method, C = Cov[y] / (y y^T)). ``"gls"``: generalized least squares
        with C^{-1} as the weight matrix -- the best linear unbiased estimator
        when C is right; its standard error is sqrt((X^T C^{-1} X)^{-1}). With 2-D
        ``y`` the correlation matrix is shrunk toward the identity
        (Schaefer-Strimmer) so it can be inverted, and the standard error is a
        leave-one-row-out jackknife, which also counts the noise of the
        estimated weights. ``"gls"`` needs covariance information (2-D ``y``,
        ``cov`` matrix, ``"fbm"`` or ``"brownian"``).
    cov : None, "independent", "fbm", "brownian" or array_like (N, N)
        Covariance between the points of a 1-D ``y``. A matrix is Cov[y] in
        squared units of y. ``"fbm"``: the exact covariance of a time-averaged MSD
        of fractional Brownian motion (:func:`tamsd_covariance`) or, with
        ``curve="displacement"``, of R(t) of fBm, with the Hurst exponent taken
        self-consistently from the fit (H = exponent / 2 for an MSD, = exponent
        for R(t)); ``"brownian"`` fixes H = 1/2. Both need ``effective_dims`` and,
        for an MSD, ``n_snapshots``. ``"independent"``: treat the points as
        independent and take the error from the scatter about the line (only
        right for independent noise; not for an MSD or R(t)). None (default):
        the rows of a 2-D ``y``; else ``"fbm"`` if ``effective_dims`` (and for an MSD
        ``n_snapshots``) are given; else ``"independent"`` with an
        :class:`UncalibratedStderrWarning`.
    n_snapshots : int, optional
        Number of snapshots T behind a time-averaged MSD. Enables the automatic
        upper lag limit and the analytic covariance.
    effective_dims : float, optional
        Number of independent, identically diffusing coordinates, for the
        analytic covariance (relative variances scale as 1 / effective_dims).
        For a network this is far below the parameter count; prefer 2-D ``y``.
    snapshot_spacing : float, default 1.0
        Spacing of consecutive snapshots in the units of t (lags in snapshots are
        t / snapshot_spacing).
    curve : {"msd", "displacement"}, default "msd"
        What y is: a time-averaged MSD at lags t, or the displacement R(t) from a
        reference snapshot at time t after it. Only the analytic covariance and
        the automatic lag limit depend on it.
    combine_rows : {"mean", "sum"}, default "mean"
        How rows of a 2-D ``y`` combine into the fitted curve: "sum" for
        parameter blocks (the total MSD is the sum of the block MSDs), "mean" for
        seeds. The exponent and its error do not depend on it; the prefactor does.
    confidence : float, default 0.95
        Level of the intervals.
    points_per_decade : float, default 10
        Density of the log-even subset the line is fitted to (>= 2).
    max_lag_fraction : float, default 0.1
        For ``window="auto"`` with ``n_snapshots``: largest lag used, as a
        fraction of the trajectory length.
    max_breaks : int, default 3
        For the automatic windows: most breakpoints considered (0-3).
    min_exponent_change : float, default 0.1
        For the automatic windows: smallest change of slope counted as a crossover.
    warn_window : bool, default True
        Issue a :class:`WindowWarning` when the window spans less than one decade or
        is a transient regime between two crossovers (the caveat is also kept in
        ``ExponentFit.notes``).

    Returns
    -------
    ExponentFit

    Raises
    ------
    TypeError
        Non-numeric ``t``, ``y``, ``cov`` or ``window``.
    ValueError
        Shapes that do not match, NaN or inf, t not increasing, t <= 0 or y <= 0,
        fewer than 3 points in the window, a window outside the data, bad options.

    Warns
    -----
    UncalibratedStderrWarning
        For a 1-D ``y`` without covariance information (see ``cov``).
    WindowWarning
        For a window under one decade or a transient regime (``warn_window``).

    Notes
    -----
    The interval is exponent +- q * stderr with q the Student-t quantile on
    n_rows - 1 degrees of freedom for 2-D ``y`` (the covariance is estimated from
    n_rows curves), the normal quantile for a given or analytic covariance, and
    the t quantile on n_points - 2 degrees of freedom for ``"independent"``.
    Fitting the log of the mean curve rather than the mean of the logs keeps the
    bias of the log (about -Var[y] / (2 y^2)) small, since averaging shrinks Var[y].

    Examples
    --------
    >>> lags = np.arange(1, 1000)
    >>> fit = fit_exponent(lags, 3.0 * lags**0.7, window=None, cov="independent")
    >>> round(fit.exponent, 6), round(fit.prefactor, 6)
    (0.7, 3.0)
    """
    func = "fit_exponent"
    t_arr, rows, is_rows = _validate_curve(t, y, func)
    if method not in ("ols", "gls"):
        raise ValueError(f"{func}: method must be 'ols' or 'gls', got {method!r}")
    confidence = check_probability(confidence, "confidence", func)
    ppd = _check_points_per_decade(points_per_decade, func)
    fraction = check_probability(max_lag_fraction, "max_lag_fraction", func)
    max_breaks = check_int_range(max_breaks, "max_breaks", func, 0, 3)
    min_change = check_positive(min_exponent_change, "min_exponent_change", func)
    curve_values = _combine(rows, combine_rows, func)
    noise = _resolve_noise(
        func,
        t_arr,
        rows,
        is_rows,
        curve_values,
        cov=cov,
        n_snapshots=n_snapshots,
        effective_dims=effective_dims,
        snapshot_spacing=snapshot_spacing,
        curve_kind=curve,
    )
    if method == "gls" and not noise.known:
        raise ValueError(
            f"{func}: method='gls' needs the covariance between points: pass 2-D y "
            "(replicate curves), a cov matrix, or cov='fbm'/'brownian' with its options"
        )
    if method == "gls" and is_rows and rows.shape[0] < 3:
        raise ValueError(
            f"{func}: method='gls' with 2-D y needs at least 3 rows (its standard error is a "
            f"leave-one-row-out jackknife), got {rows.shape[0]}"
        )
    if isinstance(window, str) and window in WINDOW_RULES:
        upper = float(t_arr[-1])
        if noise.n_snapshots is not None and curve == "msd":
            upper = min(upper, fraction * noise.n_snapshots * noise.snapshot_spacing)
        choice = _auto_window(
            t_arr,
            curve_values,
            noise,
            func,
            upper=upper,
            points_per_decade=ppd,
            max_breaks=int(max_breaks),
            min_exponent_change=min_change,
            rule=window,
        )
        lo, hi = choice.lo, choice.hi
    else:
        lo, hi = _resolve_window(window, t_arr, func)
        choice = _WindowChoice(lo, hi, "all points (window=None)" if window is None
                               else f"manual: window=({lo:g}, {hi:g})")
    idx = _log_even_subset(t_arr, _window_mask(t_arr, lo, hi), ppd)
    if idx.size < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: window ({lo:g}, {hi:g}) leaves {idx.size} point(s) after thinning to "
            f"{ppd:g} per decade; a fit needs at least {MIN_FIT_POINTS} (raise "
            "points_per_decade or widen the window)"
        )
    x = np.log10(t_arr[idx])
    z = np.log10(curve_values[idx])
    w = _log_spacing_weights(x)
    coef, solver, design, xc = _weighted_line(x, z, w)
    dof = noise.dof
    if method == "ols":
        log_cov = noise.log_cov(idx, coef[1])
        if log_cov is None:
            coef_cov, dof = _residual_cov(design, z, coef, w)
        else:
            coef_cov = solver @ log_cov @ solver.T
    elif noise.source == "rows":
        coef, coef_cov, xc = _gls_rows(x, rows[:, idx])
        if combine_rows == "sum":  # _gls_rows fits the mean of the rows
            coef[0] += math.log10(rows.shape[0])
    else:
        iterations = 2 if noise.source == "fbm" else 1
        for _ in range(iterations):
            log_cov = noise.log_cov(idx, coef[1])
            coef, coef_cov, xc = _gls_line(x, z, log_cov, func, warn=noise.source == "cov")
    slope = float(coef[1])
    stderr = float(math.sqrt(max(coef_cov[1, 1], 0.0)))
    q = _quantile(confidence, dof)
    log_prefactor = coef[0] - coef[1] * xc
    log_prefactor_var = coef_cov[0, 0] + xc**2 * coef_cov[1, 1] - 2 * xc * coef_cov[0, 1]
    log_prefactor_se = math.sqrt(max(log_prefactor_var, 0.0))
    fitted = log_prefactor + slope * x
    used = (float(t_arr[idx[0]]), float(t_arr[idx[-1]]))
    notes = tuple(_window_warnings(choice, *used))
    if warn_window:
        for note in notes:
            warn_at_caller(f"{func}: {note}", WindowWarning)
    return ExponentFit(
        exponent=slope,
        stderr=stderr,
        ci=(slope - q * stderr, slope + q * stderr),
        prefactor=float(10.0**log_prefactor),
        prefactor_ci=(
            float(10.0 ** (log_prefactor - q * log_prefactor_se)),
            float(10.0 ** (log_prefactor + q * log_prefactor_se)),
        ),
        r2=_weighted_r2(z, fitted, w),
        window=used,
        method=method,
        stderr_source=noise.source,
        confidence=confidence,
        dof=float(dof),
        t=t_arr[idx],
        y=curve_values[idx],
        weights=w,
        t_data=t_arr.copy(),
        y_data=curve_values,
        window_rule=choice.rule,
        regime_index=choice.regime_index,
        regime_windows=choice.regime_windows,
        regime_exponents=choice.regime_exponents,
        curve=curve,
        notes=notes,
    )


def crossover(
    t: Any,
    y: Any,
    *,
    n_breaks: int | str = "auto",
    max_breaks: int = 3,
    window: Any = None,
    cov: Any = None,
    combine_rows: str = "mean",
    confidence: float = 0.95,
    points_per_decade: float = 20,
    min_regime_decades: float = 0.3,
    min_exponent_change: float = 0.1,
    curve: str | None = None,
) -> Crossover:
    """Fit a continuous piecewise power law and return its regimes.

    In log-log coordinates x = log10 t, z = log10 y the model is

        z = a + b_0 x + sum_j d_j (x - x_j)_+,

    straight segments that meet at the breakpoints x_j, so regime j has exponent
    b_0 + d_1 + ... + d_j. Breakpoints are found by a grid search over all
    placements that leave every regime at least ``min_regime_decades`` wide with
    at least 4 points, refined by Nelder-Mead; the rest is linear least squares
    with the log-even weights of :func:`fit_exponent`. The paper's picture --
    super-diffusive early, sub-diffusive late -- is one breakpoint.

    Parameters
    ----------
    t : array_like, shape (N,)
        Strictly increasing, > 0.
    y : array_like, shape (N,) or (n_rows, N)
        The curve (> 0), or replicate curves one per row (their spread gives the
        regimes' standard errors and the significance test below).
    n_breaks : int or "auto", default "auto"
        Number of breakpoints (0-3). ``"auto"`` fits every number of breakpoints
        from 0 to ``max_breaks`` and keeps the one with the lowest BIC (Notes) among
        those whose every exponent change is at least ``min_exponent_change`` and,
        when the covariance is known (2-D ``y`` or ``cov``), at least 2 standard
        errors. The models are compared together, not one break at a time: a
        curve whose bends only two breaks together explain gets two.
    max_breaks : int, default 3
        Upper limit for ``"auto"`` (at most 3).
    window : None or (t_min, t_max), default None
        Range of t used (None: all).
    cov : None, "independent" or array_like (N, N)
        Covariance of a 1-D ``y``, as in :func:`fit_exponent`; None uses the rows
        of a 2-D ``y``, else the scatter about the line (no warning: the
        exponents' errors here are descriptive).
    combine_rows : {"mean", "sum"}, default "mean"
    confidence : float, default 0.95
    points_per_decade : float, default 20
        Density of the log-even subset used.
    min_regime_decades : float, default 0.3
        Narrowest regime allowed, in decades of t.
    min_exponent_change : float, default 0.1
        Smallest exponent change that ``"auto"`` accepts as a crossover.
    curve : {"msd", "displacement"}, optional
        What y is; only labels the plot (axes, Brownian reference).

    Returns
    -------
    Crossover
        ``models`` lists every candidate with its BIC, ``runner_up`` the second-best
        admissible model when its BIC is within 4 of the chosen one (then the data do
        not decide clearly between them).

    Notes
    -----
    BIC_k = n_eff log(SSE_k / n_eff) + (2 + 2k) log(n_eff) for k breaks (2 + 2k
    parameters: intercept, first slope, and a slope change and a location per break),
    SSE the weighted residual sum of squares in log10 y. The points of a diffusion
    curve are correlated (neighbouring lags share their data; a smooth misfit makes
    the residuals correlated too), so n is replaced by n_eff = n (1 - rho) / (1 + rho),
    rho the lag-1 autocorrelation of the residuals of the richest model: with
    correlated residuals fewer effective points carry the evidence for a break.
        ``regimes`` with their windows, exponents, standard errors (conditional
        on the breakpoints) and prefactors, and the ``breakpoints`` in units of t.

    Raises
    ------
    TypeError, ValueError
        As :func:`fit_exponent`; also when the data cannot hold ``n_breaks``
        regimes of the minimum width.
    """
    func = "crossover"
    t_arr, rows, is_rows = _validate_curve(t, y, func)
    confidence = check_probability(confidence, "confidence", func)
    ppd = _check_points_per_decade(points_per_decade, func)
    min_width = check_positive(min_regime_decades, "min_regime_decades", func)
    min_change = check_positive(min_exponent_change, "min_exponent_change", func)
    if isinstance(n_breaks, str) and n_breaks == "auto":
        fixed = None
    else:
        try:
            fixed = check_int_range(n_breaks, "n_breaks", func, 0, 3)
        except ValueError:
            raise ValueError(
                f"{func}: n_breaks must be an integer in [0, 3] or 'auto', got {n_breaks!r}"
            ) from None
    max_breaks = check_int_range(max_breaks, "max_breaks", func, 0, 3)
    if curve is not None and curve not in _CURVES:
        raise ValueError(f"{func}: curve must be None or one of {_CURVES}, got {curve!r}")
    curve_values, noise = _curve_and_empirical_noise(func, t_arr, rows, is_rows, cov,
                                                     combine_rows)
    lo, hi = _resolve_window(window, t_arr, func)
    idx = _log_even_subset(t_arr, _window_mask(t_arr, lo, hi), ppd)
    x = np.log10(t_arr[idx])
    z = np.log10(curve_values[idx])
    w = _log_spacing_weights(x)
    min_points = 4
    wanted = fixed if fixed is not None else 0
    if idx.size < max(MIN_FIT_POINTS, (wanted + 1) * min_points - wanted):
        raise ValueError(
            f"{func}: {idx.size} log-even points are too few for {wanted + 1} regime(s) of "
            f"at least {min_points} points each (raise points_per_decade or widen the window)"
        )
    log_cov = noise.log_cov(idx, _weighted_line(x, z, w)[0][1])
    model, candidates = _select_piecewise(
        x,
        z,
        w,
        log_cov,
        n_breaks=fixed,
        max_breaks=int(max_breaks),
        min_width=min_width,
        min_points=min_points,
        min_change=min_change,
    )
    if model is None:
        raise ValueError(
            f"{func}: the data span {x[-1] - x[0]:.3g} decades with {idx.size} points, too "
            f"little for {fixed + 1} regimes each at least min_regime_decades = "
            f"{min_width:g} decades wide with {min_points} points"
        )
    dof = noise.dof if noise.known else float(idx.size - model.coef.size)
    q = _quantile(confidence, dof)
    edges = np.concatenate([[x[0]], model.breaks, [x[-1]]])
    intercept0 = model.coef[0] - model.coef[1] * model.xc
    regimes = []
    for j, slope in enumerate(model.slopes):
        intercept = intercept0 - float(np.sum(model.coef[2 : 2 + j] * model.breaks[:j]))
        se = float(math.sqrt(max(model.slope_cov[j, j], 0.0)))
        regimes.append(
            Regime(
                window=(float(10.0 ** edges[j]), float(10.0 ** edges[j + 1])),
                exponent=float(slope),
                stderr=se,
                ci=(float(slope - q * se), float(slope + q * se)),
                prefactor=float(10.0**intercept),
            )
        )
    fitted = _piecewise_design(x, model.breaks, model.xc) @ model.coef
    models = tuple(
        BreakModel(k, tuple(float(10.0**b) for b in m.breaks), bic, not reason, reason)
        for k, m, bic, reason in candidates
    )
    runner_up = None
    if models:
        chosen_bic = next(m.bic for m in models if m.n_breaks == model.breaks.size)
        others = [m for m in models if m.admissible and m.n_breaks != model.breaks.size]
        if others:
            second = min(others, key=lambda m: m.bic)
            if second.bic - chosen_bic < CLOSE_BIC:
                runner_up = second
        selection = (f"BIC over 0..{int(max_breaks)} breaks (n_eff from the residual "
                     "correlation)")
    else:
        selection = f"fixed: n_breaks={fixed}"
    return Crossover(
        regimes=tuple(regimes),
        breakpoints=tuple(float(10.0**b) for b in model.breaks),
        r2=_weighted_r2(z, fitted, w),
        stderr_source=noise.source,
        confidence=confidence,
        t=t_arr[idx],
        y=curve_values[idx],
        weights=w,
        t_data=t_arr.copy(),
        y_data=curve_values,
        models=models,
        runner_up=runner_up,
        selection=selection,
        curve=curve,
    )


def local_slope(
    t: Any,
    y: Any,
    *,
    bandwidth: float = 0.15,
    at: Any = None,
    points_per_decade: float = 20,
    cov: Any = None,
    combine_rows: str = "mean",
    curve: str | None = None,
) -> LocalSlope:
    """Smoothed local exponent d log y / d log t, for plots and for spotting regimes.

    At each evaluation point x0 = log10 t0 a straight line is fitted to
    (log10 t, log10 y) with weights w_i exp(-(x_i - x0)^2 / (2 h^2)), where h is
    ``bandwidth`` (decades) and w_i the log-spacing weights that make the data
    even in log t; the line's slope is the estimate (local-linear kernel
    regression, which is unbiased at the ends of the data for a power law).

    Parameters
    ----------
    t : array_like, shape (N,)
        Strictly increasing, > 0.
    y : array_like, shape (N,) or (n_rows, N)
        The curve (> 0), or replicate curves one per row (then ``stderr`` is given).
    bandwidth : float, default 0.15
        Kernel standard deviation in decades of t. Larger is smoother.
    at : array_like, optional
        Where to evaluate (units of t, within the data range). Default: a subset of
        t spread evenly in log t, ``points_per_decade`` a decade.
    points_per_decade : float, default 20
    cov : None, "independent" or array_like (N, N)
        Covariance of a 1-D ``y`` (gives ``stderr``).
    combine_rows : {"mean", "sum"}, default "mean"
    curve : {"msd", "displacement"}, optional
        What y is; labels the plot and sets its Brownian reference (1 or 1/2).

    Returns
    -------
    LocalSlope
    """
    func = "local_slope"
    t_arr, rows, is_rows = _validate_curve(t, y, func)
    h = check_positive(bandwidth, "bandwidth", func)
    ppd = _check_points_per_decade(points_per_decade, func)
    curve_values, noise = _curve_and_empirical_noise(func, t_arr, rows, is_rows, cov,
                                                     combine_rows)
    x = np.log10(t_arr)
    z = np.log10(curve_values)
    w = _log_spacing_weights(x)
    if at is None:
        t_eval = t_arr[_log_even_subset(t_arr, np.ones(t_arr.size, dtype=bool), ppd)]
    else:
        t_eval = as_real_array(at, "at", func).ravel()
        require_finite(t_eval, "at", func)
        if t_eval.size == 0:
            raise ValueError(f"{func}: at must not be empty")
        if t_eval.min() < t_arr[0] * (1 - 1e-12) or t_eval.max() > t_arr[-1] * (1 + 1e-12):
            raise ValueError(
                f"{func}: at must lie within the data, t spans [{t_arr[0]:g}, {t_arr[-1]:g}]; "
                f"got [{t_eval.min():g}, {t_eval.max():g}]"
            )
    x_eval = np.log10(t_eval)
    slopes = np.empty(x_eval.size)
    stderr = np.empty(x_eval.size) if noise.known else None
    chunk = max(1, min(256, 4_000_000 // x.size))  # kernel block of at most ~32 MB
    for start in range(0, x_eval.size, chunk):
        stop = min(start + chunk, x_eval.size)
        kernel = w[None, :] * np.exp(-0.5 * ((x[None, :] - x_eval[start:stop, None]) / h) ** 2)
        total = kernel.sum(axis=1, keepdims=True)
        centre = (kernel * x[None, :]).sum(axis=1, keepdims=True) / total
        dx = x[None, :] - centre
        sxx = (kernel * dx**2).sum(axis=1, keepdims=True)
        if np.any(sxx <= 0):
            raise ValueError(
                f"{func}: bandwidth = {h:g} decades is too narrow for the spacing of t; increase it"
            )
        coeff = kernel * dx / sxx  # slope = coeff @ z
        slopes[start:stop] = coeff @ z
        if stderr is not None:
            if noise.source == "rows":
                per_row = noise.rows @ coeff.T / _LN10  # (n_rows, chunk)
                var = per_row.var(axis=0, ddof=1) / noise.rows.shape[0]
            else:
                var = np.einsum("ij,jk,ik->i", coeff, noise.relative_cov, coeff) / _LN10**2
            stderr[start:stop] = np.sqrt(np.maximum(var, 0.0))
    if curve is not None and curve not in _CURVES:
        raise ValueError(f"{func}: curve must be None or one of {_CURVES}, got {curve!r}")
    return LocalSlope(t=t_eval, slope=slopes, stderr=stderr, bandwidth=h, curve=curve)


# --------------------------------------------------------------------------- named exponents


@dataclass(frozen=True, eq=False, repr=False)
class DiffusionExponents:
    """The three names of one anomalous-diffusion exponent (DESIGN.md section 1).

    msd(tau) ~ tau^beta with beta = ``msd_exponent``; R(t) ~ t^alpha with
    alpha = ``displacement_exponent`` = beta / 2 = 1 / d_walk (the paper's Table 1
    "alpha"); d_walk = ``walk_dimension`` = 2 / beta. Brownian motion: beta = 1,
    alpha = 1/2, d_walk = 2; sub-diffusion: beta < 1, d_walk > 2.

    Build one with :func:`fit_msd`, :func:`fit_displacement` or the
    ``from_*`` constructors. Standard errors follow by the delta method
    (first-order Taylor expansion): se(alpha) = se(beta) / 2 and
    se(d_walk) = 2 se(beta) / beta^2; intervals for d_walk map the interval of
    beta through 2 / beta (exact for a monotone map, unlike the delta method).

    Attributes
    ----------
    msd_exponent : float
    msd_exponent_stderr : float
    confidence : float
        Level of the ``*_ci`` intervals.
    dof : float
        Degrees of freedom of the interval's t quantile (inf: normal).
    fit : ExponentFit or None
        The fit this came from (of the MSD or of R(t), see ``source``).
    source : str
        ``"msd"``, ``"displacement"`` or ``"given"``.
    """

    msd_exponent: float
    msd_exponent_stderr: float = 0.0
    confidence: float = 0.95
    dof: float = math.inf
    fit: ExponentFit | None = None
    source: str = "given"

    # -- constructors
    @classmethod
    def from_msd_exponent(cls, value: float, stderr: float = 0.0, *, confidence: float = 0.95):
        """From beta (msd ~ tau^beta) and its standard error."""
        func = "DiffusionExponents.from_msd_exponent"
        value = _finite_number(value, "value", func)
        stderr = _stderr_number(stderr, "stderr", func)
        return cls(value, stderr, check_probability(confidence, "confidence", func))

    @classmethod
    def from_displacement_exponent(
        cls, value: float, stderr: float = 0.0, *, confidence: float = 0.95
    ):
        """From alpha = 1 / d_walk (R ~ t^alpha; the paper's Table 1 "alpha")."""
        func = "DiffusionExponents.from_displacement_exponent"
        value = _finite_number(value, "value", func)
        stderr = _stderr_number(stderr, "stderr", func)
        return cls(2.0 * value, 2.0 * stderr, check_probability(confidence, "confidence", func))

    @classmethod
    def from_walk_dimension(cls, value: float, stderr: float = 0.0, *, confidence: float = 0.95):
        """From d_walk (> 0); se(beta) = 2 se(d_walk) / d_walk^2 (delta method)."""
        func = "DiffusionExponents.from_walk_dimension"
        value = check_positive(value, "value", func)
        stderr = _stderr_number(stderr, "stderr", func)
        return cls(
            2.0 / value, 2.0 * stderr / value**2, check_probability(confidence, "confidence", func)
        )

    # -- the three names
    @property
    def _q(self) -> float:
        return _quantile(self.confidence, self.dof)

    @property
    def msd_exponent_ci(self) -> tuple[float, float]:
        """Interval for beta."""
        half = self._q * self.msd_exponent_stderr
        return (self.msd_exponent - half, self.msd_exponent + half)

    @property
    def displacement_exponent(self) -> float:
        """alpha = beta / 2 = 1 / d_walk (slope of log R against log t)."""
        return self.msd_exponent / 2.0

    @property
    def displacement_exponent_stderr(self) -> float:
        """se(alpha) = se(beta) / 2."""
        return self.msd_exponent_stderr / 2.0

    @property
    def displacement_exponent_ci(self) -> tuple[float, float]:
        """Interval for alpha."""
        lo, hi = self.msd_exponent_ci
        return (lo / 2.0, hi / 2.0)

    @property
    def walk_dimension(self) -> float:
        """d_walk = 2 / beta (inf for beta = 0)."""
        return math.inf if self.msd_exponent == 0 else 2.0 / self.msd_exponent

    @property
    def walk_dimension_stderr(self) -> float:
        """se(d_walk) = 2 se(beta) / beta^2 (delta method)."""
        if self.msd_exponent == 0:
            return math.inf
        return 2.0 * self.msd_exponent_stderr / self.msd_exponent**2

    @property
    def walk_dimension_ci(self) -> tuple[float, float]:
        """Interval for d_walk: 2 / (interval of beta); the upper end is inf if it reaches 0."""
        lo, hi = self.msd_exponent_ci
        if lo <= 0:
            return (2.0 / hi if hi > 0 else math.inf, math.inf)
        return (2.0 / hi, 2.0 / lo)

    @property
    def diffusion_type(self) -> str:
        """ "sub-diffusive", "Brownian", "super-diffusive" or "ballistic", judged by the interval.

        "Brownian" when the interval of beta contains 1, "ballistic" when it lies
        above 1 and contains 2. The interval is widened by 1e-6 so that exact
        data (stderr 0) are classified despite rounding.
        """
        lo, hi = self.msd_exponent_ci
        lo, hi = lo - 1e-6, hi + 1e-6
        if lo <= 1.0 <= hi:
            return "Brownian"
        if hi < 1.0:
            return "sub-diffusive"
        if lo <= 2.0 <= hi:
            return "ballistic"
        return "super-diffusive"

    @property
    def window(self) -> tuple[float, float] | None:
        """The t range the exponent was fitted over (None for given values)."""
        return None if self.fit is None else self.fit.window

    @property
    def regime(self) -> str:
        """Which regime of the curve the exponent describes, in words, with its window."""
        if self.fit is None:
            return "given"
        lo, hi = self.fit.window
        return f"{self.fit.regime}, t = {format_number(lo)}..{format_number(hi)}"

    def __repr__(self) -> str:
        where = "" if self.fit is None else f", regime={self.regime!r}"
        return (
            f"DiffusionExponents(msd_exponent={format_number(self.msd_exponent)} ± "
            f"{format_number(self.msd_exponent_stderr)}, displacement_exponent="
            f"{format_number(self.displacement_exponent)} ± {format_number(self.displacement_exponent_stderr)}, "
            f"walk_dimension={format_number(self.walk_dimension)} ± {format_number(self.walk_dimension_stderr)}, "
            f"{self.diffusion_type}, source={self.source!r}{where})"
        )

    def plot(self, ax=None, **kwargs: Any):
        """The underlying fit's plot (:meth:`ExponentFit.plot`); needs ``fit``."""
        if self.fit is None:
            raise ValueError("DiffusionExponents.plot: these exponents were given, not fitted")
        return self.fit.plot(ax=ax, **kwargs)


def _finite_number(value: Any, name: str, func: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{func}: {name} must be a real number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{func}: {name} must be finite, got {value!r}")
    return float(value)


def _stderr_number(value: Any, name: str, func: str) -> float:
    number = _finite_number(value, name, func)
    if number < 0:
        raise ValueError(f"{func}: {name} must be >= 0, got {value!r}")
    return number


def fit_msd(lags: Any, msd: Any, *, snapshot_steps: Any = None,
            **options: Any) -> DiffusionExponents:
    """Fit msd(tau) ~ tau^beta and return all three named exponents.

    Parameters
    ----------
    lags : array_like, shape (N,)
        Lags tau > 0 (drop tau = 0), in any time unit; with ``n_snapshots`` and the
        analytic covariance they must be multiples of ``snapshot_spacing``.
    msd : array_like, shape (N,) or (n_rows, N)
        Time-averaged MSD (squared parameter units), or one row per parameter
        block or seed.
    snapshot_steps : array_like, optional
        The training steps of the snapshots behind the MSD (e.g. ``store.steps``). They
        must be evenly spaced (a log-spaced store has no meaningful MSD lag: ValueError,
        which points to :func:`fit_displacement`); they set ``snapshot_spacing`` and
        ``n_snapshots`` unless those are given.
    **options
        Passed to :func:`fit_exponent` (``window``, ``method``, ``cov``,
        ``n_snapshots``, ``effective_dims``, ...).

    Returns
    -------
    DiffusionExponents
        ``msd_exponent`` beta = the fitted slope; ``fit`` holds the ExponentFit.
    """
    if "curve" in options:
        raise TypeError("fit_msd: curve is fixed to 'msd'; use fit_exponent for other curves")
    if snapshot_steps is not None:
        steps = as_real_array(snapshot_steps, "snapshot_steps", "fit_msd")
        require_finite(steps, "snapshot_steps", "fit_msd")
        if steps.ndim != 1 or steps.size < 2:
            raise ValueError("fit_msd: snapshot_steps must be 1-D with at least 2 entries, got "
                             f"shape {steps.shape}")
        gaps = np.diff(steps)
        if np.any(gaps <= 0) or not np.allclose(gaps, gaps[0], rtol=1e-9, atol=0.0):
            raise ValueError(
                "fit_msd: the snapshots are not evenly spaced in steps (gaps from "
                f"{gaps.min():g} to {gaps.max():g}): a time-averaged MSD over lags counted in "
                "snapshots then mixes different time lags. Fit R(t) at the recorded steps "
                "instead: fit_displacement(steps[1:] - steps[0], R[1:]) (its fBm covariance "
                "uses the actual times), or record at a fixed interval"
            )
        options.setdefault("snapshot_spacing", float(gaps[0]))
        options.setdefault("n_snapshots", int(steps.size))
    fit = fit_exponent(lags, msd, curve="msd", **options)
    return DiffusionExponents(
        msd_exponent=fit.exponent,
        msd_exponent_stderr=fit.stderr,
        confidence=fit.confidence,
        dof=fit.dof,
        fit=fit,
        source="msd",
    )


def fit_displacement(times: Any, displacement: Any, **options: Any) -> DiffusionExponents:
    """Fit R(t) ~ t^alpha (alpha = 1 / d_walk) and return all three named exponents.

    Parameters
    ----------
    times : array_like, shape (N,)
        Time since the reference snapshot, > 0 (drop t = t0, where R = 0).
    displacement : array_like, shape (N,) or (n_rows, N)
        R(t) = ||W[t] - W[t0]||_2 (parameter units), or one row per seed.
    **options
        Passed to :func:`fit_exponent`; ``cov="fbm"`` uses the exact covariance of
        R(t) for fBm with H = alpha and needs ``effective_dims``.

    Returns
    -------
    DiffusionExponents
        ``displacement_exponent`` alpha = the fitted slope (``msd_exponent`` = 2 alpha);
        ``fit`` holds the ExponentFit of R(t).
    """
    if "curve" in options:
        raise TypeError(
            "fit_displacement: curve is fixed to 'displacement'; use fit_exponent for other curves"
        )
    fit = fit_exponent(times, displacement, curve="displacement", **options)
    return DiffusionExponents(
        msd_exponent=2.0 * fit.exponent,
        msd_exponent_stderr=2.0 * fit.stderr,
        confidence=fit.confidence,
        dof=fit.dof,
        fit=fit,
        source="displacement",
    )

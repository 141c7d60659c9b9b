"""Noise models of diffusion curves and the line fits that use them: the exact covariance of the
time-averaged MSD of fractional Brownian motion (:func:`tamsd_covariance`), covariances from
replicate rows or a given matrix, shrunk covariances, weighted and generalized least squares,
weighted r^2 and interval quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .._validation import (
    as_real_array,
    check_positive,
    require_finite,
    warn_at_caller,
)
from .curves import CURVES, combined_curve

__all__ = [
    "SingularCovarianceWarning",
    "UncalibratedStderrWarning",
    "tamsd_covariance",
]


LN10 = math.log(10.0)
_COV_STRINGS = ("independent", "fbm", "brownian")


class UncalibratedStderrWarning(UserWarning):
    """The standard error assumes independent points, which a diffusion curve is not.

    Raised by fits of a single 1-D curve when no covariance information was given.
    Silence it deliberately with ``cov="independent"``; make the interval sound by
    passing 2-D ``y`` (one row per parameter block or seed), ``cov=<matrix>``, or
    ``cov="fbm"`` with ``n_snapshots`` and ``effective_dims``.
    """


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
class Noise:
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
        return rel / LN10**2

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


def resolve_noise(
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
) -> Noise:
    if curve_kind not in CURVES:
        raise ValueError(f"{func}: curve must be one of {CURVES}, got {curve_kind!r}")
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
        return Noise("rows", float(n_rows - 1), rows=relative, **common)
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
            return Noise("independent", math.nan, **common)
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
        return Noise(cov, math.inf, **common)
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
    return Noise("cov", math.inf, relative_cov=relative, **common)


# --------------------------------------------------------------------------- line fits


def curve_and_empirical_noise(func, t_arr, rows, is_rows, cov, combine_rows):
    """The combined curve and its noise model for functions that take only empirical
    covariance (rows, a matrix or "independent"), not the analytic fBm models."""
    if isinstance(cov, str) and cov != "independent":
        raise ValueError(f"{func}: cov must be None, 'independent' or a matrix, got {cov!r}")
    curve_values = combined_curve(rows, combine_rows, func)
    noise = resolve_noise(
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


def weighted_line(x: np.ndarray, z: np.ndarray, w: np.ndarray):
    """Weighted least squares z = a + b (x - xc); returns (coef, A, X, xc) with coef = A z."""
    xc = float(np.sum(w * x) / np.sum(w))
    design = np.column_stack([np.ones_like(x), x - xc])
    weighted = design.T * w
    solver = np.linalg.solve(weighted @ design, weighted)
    return solver @ z, solver, design, xc


def residual_cov(design: np.ndarray, z: np.ndarray, coef: np.ndarray, w: np.ndarray):
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


def gls_line(x: np.ndarray, z: np.ndarray, log_cov: np.ndarray, func: str = "fit_exponent",
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


def gls_rows(x: np.ndarray, rows: np.ndarray):
    """GLS on the mean of the rows with a shrunk covariance; jackknife over rows for the error.

    ``rows`` are the replicate curves at the chosen points, shape (n_rows, L).
    Returns (coef, coef_cov, xc); coef_cov is the leave-one-row-out jackknife
    covariance, which includes the noise of the estimated weights.
    """

    def one(subset: np.ndarray):
        mean = subset.mean(axis=0)
        z = np.log10(mean)
        log_cov = _shrunk_correlation_cov(subset / mean - 1.0) / LN10**2
        return gls_line(x, z, log_cov)

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


def quantile(confidence: float, dof: float) -> float:
    upper = 0.5 + confidence / 2.0
    if not math.isfinite(dof):
        return float(stats.norm.ppf(upper))
    if dof <= 0:
        return math.nan
    return float(stats.t.ppf(upper, dof))


def weighted_r2(z: np.ndarray, fitted: np.ndarray, w: np.ndarray) -> float:
    """Weighted r^2; 1 when the residuals are at rounding level (e.g. a constant curve)."""
    zbar = np.sum(w * z) / np.sum(w)
    total = float(np.sum(w * (z - zbar) ** 2))
    resid = float(np.sum(w * (z - fitted) ** 2))
    rounding = float(np.sum(w)) * (1e-12 * (1.0 + float(np.max(np.abs(z))))) ** 2
    if resid <= rounding:
        return 1.0
    return 1.0 - resid / total

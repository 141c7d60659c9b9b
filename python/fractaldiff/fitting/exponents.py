"""Power-law exponents of diffusion curves, with honest uncertainties.

The curves this module fits are the time-averaged mean squared displacement
msd(tau) ~ tau^beta (``msd_exponent`` beta) and the displacement from a reference
snapshot R(t) ~ t^(1/d_walk) (``displacement_exponent`` = beta / 2 = 1 / d_walk,
the "alpha" of the paper's Table 1; ``walk_dimension`` d_walk = 2 / beta).
Every fit is a straight line in log10 y versus log10 t.

Three things make such a fit statistically sound, and :func:`fit_exponent` does all three:

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

The pieces live in ``curves`` (inputs, log-even points), ``noise`` (covariances, GLS),
``regimes`` (crossovers, local slopes) and ``windows`` (window rules); this module holds the
fits and their results.
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
    check_probability,
    format_number,
    require_finite,
    warn_at_caller,
)
from .curves import (
    MIN_FIT_POINTS,
    brownian_reference,
    check_points_per_decade,
    combined_curve,
    label_curve_axes,
    log_even_subset,
    log_spacing_weights,
    resolve_window,
    validate_curve,
    window_mask,
)
from .noise import (
    gls_line,
    gls_rows,
    quantile,
    residual_cov,
    resolve_noise,
    weighted_line,
    weighted_r2,
)
from .windows import WINDOW_RULES, WindowChoice, WindowWarning, auto_window, window_warnings

__all__ = [
    "DiffusionExponents",
    "ExponentFit",
    "fit_displacement",
    "fit_exponent",
    "fit_msd",
]


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
            brownian_reference(ax, self.curve, self.t_data, self.t[0], self.y[0])
        label_curve_axes(ax, self.curve)
        ax.set_title(self.window_rule, fontsize="small", wrap=True)
        ax.legend(fontsize="small")
        return ax


# --------------------------------------------------------------------------- public fits


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
    t_arr, rows, is_rows = validate_curve(t, y, func)
    if method not in ("ols", "gls"):
        raise ValueError(f"{func}: method must be 'ols' or 'gls', got {method!r}")
    confidence = check_probability(confidence, "confidence", func)
    ppd = check_points_per_decade(points_per_decade, func)
    fraction = check_probability(max_lag_fraction, "max_lag_fraction", func)
    max_breaks = check_int_range(max_breaks, "max_breaks", func, 0, 3)
    min_change = check_positive(min_exponent_change, "min_exponent_change", func)
    curve_values = combined_curve(rows, combine_rows, func)
    noise = resolve_noise(
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
        choice = auto_window(
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
        lo, hi = resolve_window(window, t_arr, func)
        choice = WindowChoice(lo, hi, "all points (window=None)" if window is None
                               else f"manual: window=({lo:g}, {hi:g})")
    idx = log_even_subset(t_arr, window_mask(t_arr, lo, hi), ppd)
    if idx.size < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: window ({lo:g}, {hi:g}) leaves {idx.size} point(s) after thinning to "
            f"{ppd:g} per decade; a fit needs at least {MIN_FIT_POINTS} (raise "
            "points_per_decade or widen the window)"
        )
    x = np.log10(t_arr[idx])
    z = np.log10(curve_values[idx])
    w = log_spacing_weights(x)
    coef, solver, design, xc = weighted_line(x, z, w)
    dof = noise.dof
    if method == "ols":
        log_cov = noise.log_cov(idx, coef[1])
        if log_cov is None:
            coef_cov, dof = residual_cov(design, z, coef, w)
        else:
            coef_cov = solver @ log_cov @ solver.T
    elif noise.source == "rows":
        coef, coef_cov, xc = gls_rows(x, rows[:, idx])
        if combine_rows == "sum":  # gls_rows fits the mean of the rows
            coef[0] += math.log10(rows.shape[0])
    else:
        iterations = 2 if noise.source == "fbm" else 1
        for _ in range(iterations):
            log_cov = noise.log_cov(idx, coef[1])
            coef, coef_cov, xc = gls_line(x, z, log_cov, func, warn=noise.source == "cov")
    slope = float(coef[1])
    stderr = float(math.sqrt(max(coef_cov[1, 1], 0.0)))
    q = quantile(confidence, dof)
    log_prefactor = coef[0] - coef[1] * xc
    log_prefactor_var = coef_cov[0, 0] + xc**2 * coef_cov[1, 1] - 2 * xc * coef_cov[0, 1]
    log_prefactor_se = math.sqrt(max(log_prefactor_var, 0.0))
    fitted = log_prefactor + slope * x
    used = (float(t_arr[idx[0]]), float(t_arr[idx[-1]]))
    notes = tuple(window_warnings(choice, *used))
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
        r2=weighted_r2(z, fitted, w),
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
        return quantile(self.confidence, self.dof)

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
            f"{format_number(self.displacement_exponent)} ± "
            f"{format_number(self.displacement_exponent_stderr)}, "
            f"walk_dimension={format_number(self.walk_dimension)} ± "
            f"{format_number(self.walk_dimension_stderr)}, "
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

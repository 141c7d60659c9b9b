"""Crossovers between power-law regimes: continuous piecewise power laws in log-log chosen by
BIC (:func:`crossover`, :class:`Crossover`, :class:`Regime`, :class:`BreakModel`), and the
local slope d log y / d log t (:func:`local_slope`, :class:`LocalSlope`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from .._plotting import axes
from .._validation import (
    as_real_array,
    check_int_range,
    check_positive,
    check_probability,
    format_number,
    require_finite,
)
from .curves import (
    CURVES,
    MIN_FIT_POINTS,
    brownian_reference,
    check_points_per_decade,
    label_curve_axes,
    log_even_subset,
    log_spacing_weights,
    resolve_window,
    validate_curve,
    window_mask,
)
from .noise import (
    LN10,
    curve_and_empirical_noise,
    quantile,
    residual_cov,
    weighted_line,
    weighted_r2,
)

__all__ = [
    "BreakModel",
    "Crossover",
    "LocalSlope",
    "Regime",
    "crossover",
    "local_slope",
]


# --------------------------------------------------------------------------- results


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
                brownian_reference(ax, self.curve, self.t_data, self.t[0], self.y[0])
            label_curve_axes(ax, self.curve)
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
            f"LocalSlope(n={self.t.size}, "
            f"t=({format_number(self.t[0])}..{format_number(self.t[-1])}), "
            f"slope=({format_number(float(self.slope.min()))}.."
            f"{format_number(float(self.slope.max()))}), "
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
        coef_cov, _ = residual_cov(design, z, coef, w)
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
        return (f"BreakModel(n_breaks={self.n_breaks}, breakpoints=({bps}), "
                f"bic={self.bic:.2f}{extra})")


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


def select_piecewise(
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
    t_arr, rows, is_rows = validate_curve(t, y, func)
    confidence = check_probability(confidence, "confidence", func)
    ppd = check_points_per_decade(points_per_decade, func)
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
    if curve is not None and curve not in CURVES:
        raise ValueError(f"{func}: curve must be None or one of {CURVES}, got {curve!r}")
    curve_values, noise = curve_and_empirical_noise(func, t_arr, rows, is_rows, cov,
                                                     combine_rows)
    lo, hi = resolve_window(window, t_arr, func)
    idx = log_even_subset(t_arr, window_mask(t_arr, lo, hi), ppd)
    x = np.log10(t_arr[idx])
    z = np.log10(curve_values[idx])
    w = log_spacing_weights(x)
    min_points = 4
    wanted = fixed if fixed is not None else 0
    if idx.size < max(MIN_FIT_POINTS, (wanted + 1) * min_points - wanted):
        raise ValueError(
            f"{func}: {idx.size} log-even points are too few for {wanted + 1} regime(s) of "
            f"at least {min_points} points each (raise points_per_decade or widen the window)"
        )
    log_cov = noise.log_cov(idx, weighted_line(x, z, w)[0][1])
    model, candidates = select_piecewise(
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
    q = quantile(confidence, dof)
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
        r2=weighted_r2(z, fitted, w),
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
    t_arr, rows, is_rows = validate_curve(t, y, func)
    h = check_positive(bandwidth, "bandwidth", func)
    ppd = check_points_per_decade(points_per_decade, func)
    curve_values, noise = curve_and_empirical_noise(func, t_arr, rows, is_rows, cov,
                                                     combine_rows)
    x = np.log10(t_arr)
    z = np.log10(curve_values)
    w = log_spacing_weights(x)
    if at is None:
        t_eval = t_arr[log_even_subset(t_arr, np.ones(t_arr.size, dtype=bool), ppd)]
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
                per_row = noise.rows @ coeff.T / LN10  # (n_rows, chunk)
                var = per_row.var(axis=0, ddof=1) / noise.rows.shape[0]
            else:
                var = np.einsum("ij,jk,ik->i", coeff, noise.relative_cov, coeff) / LN10**2
            stderr[start:stop] = np.sqrt(np.maximum(var, 0.0))
    if curve is not None and curve not in CURVES:
        raise ValueError(f"{func}: curve must be None or one of {CURVES}, got {curve!r}")
    return LocalSlope(t=t_eval, slope=slopes, stderr=stderr, bandwidth=h, curve=curve)

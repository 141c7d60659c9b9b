"""Fractal-dimension estimates of a point cloud and how their scaling region is chosen.

Shared by :func:`fractaldiff.box_counting_dimension` and
:func:`fractaldiff.correlation_dimension`: both fit a straight line to a log-log curve
(box counts N(eps) against 1/eps, or the correlation integral C(r) against r) over a *scaling
region*, found automatically by the rule in :func:`select_window` or given by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._plotting import pyplot

__all__ = ["DimensionEstimate", "ResolutionWarning", "correlation_jackknife",
           "eckmann_ruelle_limit", "occupancy_limit", "select_window"]


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line y = a + b x: (slope b, intercept a, standard error of b)."""
    n = x.size
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    b = float(np.sum((x - xm) * (y - ym)) / sxx)
    a = float(ym - b * xm)
    if n > 2:
        res = y - (a + b * x)
        se = math.sqrt(float(np.sum(res**2)) / (n - 2) / sxx)
    else:
        se = 0.0
    return b, a, se


def select_window(x: Any, y: Any, candidate: Any, *, min_points: int = 3,
                  min_span: float = 0.0, tolerance: float = 0.1) -> tuple[int, int]:
    """Choose a scaling region of a log-log curve: the rule used by the dimension estimates.

    Parameters
    ----------
    x, y : array_like, 1-D
        log of the scale and log of the measure (e.g. log(1/eps), log N), x increasing.
    candidate : array_like of bool
        Points allowed in the region (the caller removes saturated or under-sampled scales).
    min_points : int
        Fewest points in a region.
    min_span : float
        Smallest extent of a region in x (natural log units).
    tolerance : float
        Largest relative deviation of a local slope from the region's fitted slope.

    Returns
    -------
    (start, stop) : tuple of int
        The region is ``x[start:stop]``.

    Notes
    -----
    The rule: among the contiguous runs of candidate points, take the **longest** window
    (most points; ties broken by the smaller residual of the straight-line fit) in which the
    least-squares slopes of the window's two halves agree within ``tolerance`` (relative to
    the window's slope). A power law has a constant slope; curvature (finite-size saturation on
    one side, too few samples or boxes on the other) makes the halves disagree, while
    log-periodic wiggles of self-similar sets (the Cantor set's C(r)) average out over each
    half. The longest such window uses the most data. If no window passes, the longest
    candidate run is returned; the halves' difference then enters the standard error.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.asarray(candidate, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return 0, 0
    # contiguous runs of candidates
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    best: tuple[int, float, int, int] | None = None  # (n, -resid, start, stop)
    for run in runs:
        lo_run, hi_run = int(run[0]), int(run[-1]) + 1
        for start in range(lo_run, hi_run):
            for stop in range(start + min_points, hi_run + 1):
                xs, ys = x[start:stop], y[start:stop]
                if xs[-1] - xs[0] < min_span:
                    continue
                b, a, _ = _line(xs, ys)
                n = stop - start
                h = (n + 1) // 2
                b1 = _line(xs[:h], ys[:h])[0] if h >= 2 else b
                b2 = _line(xs[n - h:], ys[n - h:])[0] if h >= 2 else b
                if abs(b1 - b2) > tolerance * abs(b):
                    continue
                resid = float(np.sqrt(np.mean((ys - a - b * xs) ** 2)))
                key = (stop - start, -resid, start, stop)
                if best is None or key[:2] > best[:2]:
                    best = key
    if best is not None:
        return best[2], best[3]
    longest = max(runs, key=len)
    return int(longest[0]), int(longest[-1]) + 1


#: Chao1 estimates are drawn only at scales with at least this sample coverage
PLOT_MIN_COVERAGE = 0.5


@dataclass(frozen=True, eq=False, repr=False)
class DimensionEstimate:
    """A fractal dimension fitted as a log-log slope over a scaling region.

    Attributes
    ----------
    method : str
        ``"box counting"`` or ``"correlation"``.
    dimension : float
        The slope: of log N(eps) against log(1/eps) (box counting) or of log C(r) against
        log r (correlation).
    stderr : float
        Standard error of ``dimension``: the straight-line fit's standard error combined (in
        quadrature) with the systematic spread of the slope within the window (half the
        difference between the slopes of its two halves) and, for several box grids, the
        grid-to-grid scatter. See the functions' Notes for the finite-sample bias.
    window : tuple of float
        The scaling region used, ``(smallest, largest)`` eps or r (inclusive).
    scales : numpy.ndarray
        All scales: eps (box counting, ascending) or r (correlation, ascending).
    values : numpy.ndarray
        N(eps) (mean over grids) or C(r) at ``scales``.
    n_points : int
        Number of snapshots (points) T.
    window_rule : str
        How the window was chosen ("auto: ..." or "manual").
    intercept : float
        Intercept of the fitted line (natural logs).
    takens : float or None
        Takens' maximum-likelihood estimate of the correlation dimension (correlation only).
    takens_stderr : float or None
        Its standard error, takens / sqrt(M), M = pairs below the window's upper radius.
    details : dict
        Extra results: per-grid counts (box counting); the Theiler window, pair counts and the
        MSD cross-check (correlation).
    """

    method: str
    dimension: float
    stderr: float
    window: tuple[float, float]
    scales: np.ndarray
    values: np.ndarray
    n_points: int
    window_rule: str
    intercept: float
    takens: float | None = None
    takens_stderr: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    # names that say what the scales and values are
    @property
    def eps(self) -> np.ndarray:
        """Box sides eps (box counting)."""
        return self.scales

    @property
    def counts(self) -> np.ndarray:
        """Occupied boxes N(eps) (box counting), mean over grids."""
        return self.values

    @property
    def r(self) -> np.ndarray:
        """Radii r (correlation)."""
        return self.scales

    @property
    def C(self) -> np.ndarray:  # noqa: N802 - the standard symbol
        """Correlation integral C(r) (correlation)."""
        return self.values

    @property
    def in_window(self) -> np.ndarray:
        """Boolean mask of the scales inside the fitted window."""
        lo, hi = self.window
        return (self.scales >= lo * (1 - 1e-12)) & (self.scales <= hi * (1 + 1e-12))

    def __repr__(self) -> str:
        lo, hi = self.window
        extra = ""
        if self.takens is not None:
            extra = f", takens={self.takens:.4g} ± {self.takens_stderr:.2g}"
        if self.details.get("resolution_limited"):
            extra += ", resolution-limited: a lower bound"
        return (
            f"DimensionEstimate(method={self.method!r}, dimension={self.dimension:.4g} ± "
            f"{self.stderr:.2g}, window=({lo:.4g}, {hi:.4g}) [{self.window_rule}], "
            f"n_points={self.n_points}{extra})"
        )

    def plot(self, ax=None, **kwargs: Any):
        """Plot the log-log curve with the fitted window and line marked.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on (a new figure by default).
        **kwargs
            Passed to the marker plot of the data.

        Returns
        -------
        matplotlib.axes.Axes
        """
        plt = pyplot()
        if ax is None:
            _, ax = plt.subplots()
        s, v = self.scales, self.values
        pos = v > 0
        kwargs.setdefault("marker", "o")
        kwargs.setdefault("linestyle", "none")
        label = self.method
        raw = self.details.get("raw_counts")
        coverage = self.details.get("coverage")
        if raw is not None and self.details.get("correction"):
            label = f"{self.method} ({self.details['correction']} estimate)"
            seen = raw > 0
            ax.loglog(s[seen], raw[seen], marker=".", linestyle="none", color="0.6",
                      label="boxes seen")
            if coverage is not None:
                # below half coverage most boxes hold one point: Chao1 means nothing there
                pos &= np.asarray(coverage) >= PLOT_MIN_COVERAGE
        ax.loglog(s[pos], v[pos], label=label, **kwargs)
        inw = self.in_window & pos
        sign = -1.0 if self.method == "box counting" else 1.0
        xs = s[inw]
        if xs.size:
            fit = np.exp(self.intercept + sign * self.dimension * np.log(xs))
            bound = " (lower bound)" if self.details.get("resolution_limited") else ""
            ax.loglog(xs, fit, "-",
                      label=f"slope {self.dimension:.3g} ± {self.stderr:.2g}{bound}")
            ax.axvspan(xs.min(), xs.max(), alpha=0.12, label="window")
            ax.set_title(f"window: {self.window_rule}", fontsize="small", wrap=True)
        if self.method == "box counting":
            ax.set_xlabel("box side eps")
            ax.set_ylabel("occupied boxes N(eps)")
        else:
            ax.set_xlabel("radius r")
            ax.set_ylabel("correlation integral C(r)")
        ax.legend()
        return ax


def scaling_fit(x: np.ndarray, y: np.ndarray, start: int, stop: int) -> tuple[float, float, float]:
    """Slope, intercept and an honest standard error on x[start:stop]."""
    xs, ys = x[start:stop], y[start:stop]
    b, a, se = _line(xs, ys)
    n = stop - start
    if n >= 4:  # systematic: slopes of the two halves (overlapping at the middle for odd n)
        h = (n + 1) // 2
        b1 = _line(xs[:h], ys[:h])[0]
        b2 = _line(xs[n - h:], ys[n - h:])[0]
        sys_err = abs(b1 - b2) / 2
    elif n == 3:
        local = np.diff(ys) / np.diff(xs)
        sys_err = abs(local[1] - local[0]) / 2
    else:
        sys_err = 0.0
    return b, a, math.sqrt(se**2 + sys_err**2)


def resolve_scale_window(window: Any, scales: np.ndarray, func: str) -> tuple[int, int]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise TypeError(
            f"{func}: window must be 'auto' or a pair (smallest, largest) scale, got {window!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"{func}: window must satisfy 0 < smallest < largest, got {window!r}")
    sel = np.flatnonzero((scales >= lo * (1 - 1e-12)) & (scales <= hi * (1 + 1e-12)))
    if sel.size < 2:
        raise ValueError(
            f"{func}: window {window!r} holds {sel.size} scale(s); a slope needs at least 2 "
            f"(available scales: {scales.min():.4g} .. {scales.max():.4g})"
        )
    return int(sel[0]), int(sel[-1]) + 1


#: groups of the delete-a-group jackknife over points (contiguous blocks in time)
JACKKNIFE_GROUPS = 20


class ResolutionWarning(UserWarning):
    """A dimension estimate is near the largest dimension the sample can resolve.

    For the correlation integral that is the Eckmann-Ruelle limit, about 2 log10 N for N
    points; for box counting the occupancy limit log2(N / (2 min_count)) / 3 (three
    octaves of boxes between ``min_count`` and N/2). Near it the estimate is biased low by
    more than a standard error can express: read it as a lower bound, or use more points.
    """


def pair_group_counts(sq: np.ndarray, theiler: int, r: np.ndarray, r0: float,
                      n_groups: int = JACKKNIFE_GROUPS):
    """Pair counts below each radius and Takens sums, per pair of contiguous point groups.

    The T points are cut into ``n_groups`` contiguous blocks (blocks in time for a
    trajectory; for an unordered sample any split is a random one). Returns
    ``(below, n_pairs, takens_sum, takens_n, bounds)``: below[g, h, k] = pairs (i in g,
    j in h, j - i >= theiler) with distance < r[k]; n_pairs[g, h] all such pairs;
    takens_sum[g, h] = sum of log(d / r0) over those pairs with 0 < d < r0 and takens_n
    their number. Only g <= h is filled. Cost O(T^2 log n_radii), memory O(block^2)."""
    t = sq.shape[0]
    n_groups = max(2, min(n_groups, t // 2))
    bounds = np.linspace(0, t, n_groups + 1).astype(int)
    k = r.size
    below = np.zeros((n_groups, n_groups, k))
    n_pairs = np.zeros((n_groups, n_groups))
    tsum = np.zeros((n_groups, n_groups))
    tn = np.zeros((n_groups, n_groups))
    for g in range(n_groups):
        a, b = bounds[g], bounds[g + 1]
        for h in range(g, n_groups):
            c, d = bounds[h], bounds[h + 1]
            block = sq[a:b, c:d]
            i = np.arange(a, b)[:, None]
            j = np.arange(c, d)[None, :]
            keep = (j - i) >= theiler
            if not keep.any():
                continue
            dist = np.sqrt(block[keep])
            n_pairs[g, h] = dist.size
            bins = np.searchsorted(r, dist, side="right")  # d < r[m] for all m >= bin
            hist = np.bincount(bins, minlength=k + 1)[:k]
            below[g, h] = np.cumsum(hist)
            near = dist[(dist > 0) & (dist < r0)]
            tn[g, h] = near.size
            tsum[g, h] = float(np.sum(np.log(near / r0)))
    return below, n_pairs, tsum, tn, bounds


def _leave_one_group_out(table: np.ndarray) -> np.ndarray:
    """For an upper-triangular (g <= h) table of per-group-pair sums, the totals without
    each group: total - sum over pairs that involve g (a pair within g counted once)."""
    full = table + np.swapaxes(table, 0, 1)
    g = table.shape[0]
    idx = np.arange(g)
    full[idx, idx] = table[idx, idx]
    total = table.sum(axis=(0, 1))
    return total[None] - full.sum(axis=1)


def jackknife_se(values: np.ndarray) -> float:
    """Delete-a-group jackknife standard error of an estimate from its leave-one-out values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan
    return math.sqrt((v.size - 1) / v.size * float(np.sum((v - v.mean()) ** 2)))


def correlation_jackknife(sq: np.ndarray, theiler: int, r: np.ndarray, start: int, stop: int,
                          n_groups: int = JACKKNIFE_GROUPS) -> dict[str, Any]:
    """Delete-a-group jackknife of the correlation dimension's slope and of Takens' estimate.

    Pairs that share a point are dependent, so the scatter of C(r) about a line says little
    about the error of its slope (Grassberger-Procaccia's formal stderr is several times too
    small). Leaving out one contiguous block of points at a time and refitting on the same
    window resamples the points themselves: the jackknife of a U-statistic, and, for a
    trajectory, a block jackknife over time (blocks of T / n_groups snapshots, far longer
    than the Theiler window, keep the serial dependence inside a block)."""
    r0 = float(r[stop - 1])
    below, n_pairs, tsum, tn, bounds = pair_group_counts(sq, theiler, r, r0, n_groups)
    loo_below = _leave_one_group_out(below)  # (G, K)
    loo_pairs = _leave_one_group_out(n_pairs)  # (G,)
    loo_tsum = _leave_one_group_out(tsum)
    loo_tn = _leave_one_group_out(tn)
    x = np.log(r[start:stop])
    slopes, takens = [], []
    for g in range(loo_below.shape[0]):
        cb = loo_below[g, start:stop]
        if np.any(cb <= 0) or loo_pairs[g] <= 0:
            continue
        slopes.append(_line(x, np.log(cb / loo_pairs[g]))[0])
        if loo_tn[g] >= 2 and loo_tsum[g] < 0:
            takens.append(-loo_tn[g] / loo_tsum[g])
    return {"slope_se": jackknife_se(np.array(slopes)),
            "takens_se": jackknife_se(np.array(takens)),
            "n_groups": int(bounds.size - 1), "group_size": int(bounds[1] - bounds[0])}


def eckmann_ruelle_limit(n_points: int) -> float:
    """Largest correlation dimension N points can resolve: about 2 log10 N (Eckmann & Ruelle
    1992, with a scaling range of one decade in r)."""
    return 2.0 * math.log10(max(n_points, 2))


def occupancy_limit(n_points: int, min_count: int = 16) -> float:
    """Largest box-counting dimension N points can resolve over three octaves of boxes: the
    count must grow from ``min_count`` to at most N/2 (coverage), 2^(3 d) <= N / (2 min_count)."""
    return math.log2(max(n_points / (2.0 * min_count), 2.0)) / 3.0


def correlation_uncertainty(sq: np.ndarray, theiler: int, r: np.ndarray, x: np.ndarray,
                            y: np.ndarray, start: int, stop: int, n_points: int,
                            dimension: float, takens: float) -> dict[str, Any]:
    """Standard errors of the correlation dimension and of Takens' estimate.

    ``stderr`` = sqrt(jackknife^2 + curvature^2): the delete-a-group jackknife over points
    (:func:`correlation_jackknife`) for the sampling error -- it counts the dependence of
    pairs that share a point, which the scatter of C(r) about the line does not -- and the
    difference of the slopes of the window's two halves for the systematic error of a
    finite scaling range (a bias term: edge effects bend C(r) at large r). Takens' estimate
    gets its own jackknife error (the formal
    takens / sqrt(M) treats the M pairs as independent and is far too small) combined with
    its difference from the slope and the curvature term (it averages over all radii below
    r0, so curvature there biases it). Near the
    Eckmann-Ruelle limit both are flagged as lower bounds and a :class:`ResolutionWarning`
    is issued (``details["resolution_limited"]``)."""
    from .._validation import warn_at_caller

    jack = correlation_jackknife(sq, theiler, r, start, stop)
    xs, ys = x[start:stop], y[start:stop]
    n = stop - start
    fit_se = _line(xs, ys)[2]
    curvature = 0.0
    if n >= 4:
        # the full difference of the halves' slopes: with the local slope drifting across the
        # window (edge effects of a filled set bend C(r) down at large r), the window's slope
        # is off the small-r limit by about the difference between its halves, not half of it
        h = (n + 1) // 2
        curvature = abs(_line(xs[:h], ys[:h])[0] - _line(xs[n - h:], ys[n - h:])[0])
    sampling = jack["slope_se"] if math.isfinite(jack["slope_se"]) else fit_se
    stderr = math.sqrt(sampling**2 + curvature**2)
    # Takens' MLE weighs every pair below r0, so curvature of C(r) below the window's top
    # biases it; its difference from the slope enters as a systematic term
    takens_jack = jack["takens_se"]
    takens_se = (math.sqrt(takens_jack**2 + (takens - dimension) ** 2 + curvature**2)
                 if math.isfinite(takens_jack) else math.nan)
    limit = eckmann_ruelle_limit(n_points)
    limited = dimension > RESOLUTION_FRACTION * limit
    if limited:
        warn_at_caller(
            f"correlation_dimension: the estimate {dimension:.3g} is above "
            f"{RESOLUTION_FRACTION:g} of the Eckmann-Ruelle limit 2 log10 N = {limit:.3g} for "
            f"N = {n_points} points: edge effects and too few small pairs bias it (and "
            "Takens') low by more than its standard error. Read it as a lower bound "
            "(details['interval'] is one-sided) or use more points",
            ResolutionWarning,
        )
    z = 1.959963984540054
    interval = (dimension - z * stderr, math.inf if limited else dimension + z * stderr)
    return {
        "stderr": stderr,
        "takens_stderr": takens_se,
        "details": {
            "stderr_terms": {"jackknife": jack["slope_se"], "curvature": curvature,
                             "fit": fit_se},
            "takens_stderr_terms": {"jackknife": takens_jack,
                                    "difference_from_slope": abs(takens - dimension),
                                    "curvature": curvature},
            "resampling": (f"delete-a-group jackknife over {jack['n_groups']} contiguous "
                           f"blocks of {jack['group_size']} points"),
            "resolution_limit": limit,
            "resolution_limited": bool(limited),
            "interval": interval,
            "takens_is_lower_bound": bool(limited),
        },
    }


#: a correlation dimension above this fraction of the Eckmann-Ruelle limit is flagged (N <
#: 10^(1.25 d): measured, filled cubes of 1000-2000 points are 0.1-0.2 low, beyond their
#: stderr, at about this point; benchmarks/coverage.py)
RESOLUTION_FRACTION = 0.4
#: a box-counting dimension above this fraction of the occupancy limit is flagged
BOX_RESOLUTION_FRACTION = 0.5


def box_resolution(dimension: float, stderr: float, n_points: int,
                   min_count: int) -> dict[str, Any]:
    """The resolution flag of a box-counting estimate (see :class:`ResolutionWarning`)."""
    from .._validation import warn_at_caller

    limit = occupancy_limit(n_points, min_count)
    limited = dimension > BOX_RESOLUTION_FRACTION * limit
    if limited:
        warn_at_caller(
            f"box_counting_dimension: the estimate {dimension:.3g} is above "
            f"{BOX_RESOLUTION_FRACTION:g} of the occupancy limit {limit:.3g} for N = "
            f"{n_points} points (three octaves of boxes between min_count = {min_count} and "
            "N/2): the finite sample biases it low by more than its standard error. Read it "
            "as a lower bound (details['interval'] is one-sided) or use more points",
            ResolutionWarning,
        )
    z = 1.959963984540054
    return {"resolution_limit": limit, "resolution_limited": bool(limited),
            "interval": (dimension - z * stderr,
                         math.inf if limited else dimension + z * stderr)}

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

__all__ = ["DimensionEstimate", "select_window"]


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
                  min_span: float = 0.0, tolerance: float = 0.1,
                  slope_span: int = 1) -> tuple[int, int]:
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
    slope_span : int
        Unused (kept for compatibility of the signature).

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
        return (
            f"DimensionEstimate(method={self.method!r}, dimension={self.dimension:.4g} ± "
            f"{self.stderr:.2g}, window=({lo:.4g}, {hi:.4g}), n_points={self.n_points}{extra})"
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
        if raw is not None and self.details.get("correction"):
            label = f"{self.method} ({self.details['correction']} estimate)"
            seen = raw > 0
            ax.loglog(s[seen], raw[seen], marker=".", linestyle="none", color="0.6",
                      label="boxes seen")
        ax.loglog(s[pos], v[pos], label=label, **kwargs)
        inw = self.in_window & pos
        sign = -1.0 if self.method == "box counting" else 1.0
        xs = s[inw]
        if xs.size:
            fit = np.exp(self.intercept + sign * self.dimension * np.log(xs))
            ax.loglog(xs, fit, "-", label=f"slope {self.dimension:.3g} ± {self.stderr:.2g}")
            ax.axvspan(xs.min(), xs.max(), alpha=0.12)
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

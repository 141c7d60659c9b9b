"""Curve inputs shared by every fit: checks of t and y, manual windows, the log-even subset
of points and its weights, the combination of replicate rows, and the axes of curve plots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import (
    as_real_array,
    check_positive,
    require_finite,
)

#: fewest points a straight-line fit with an error estimate can use
MIN_FIT_POINTS = 3
#: the curves a fit knows: the time-averaged MSD and the displacement R(t)
CURVES = ("msd", "displacement")


# --------------------------------------------------------------------------- input checks


def validate_curve(t: Any, y: Any, func: str, *, allow_rows: bool = True):
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


def resolve_window(window: Any, t: np.ndarray, func: str) -> tuple[float, float]:
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
    inside = np.count_nonzero(window_mask(t, lo, hi))
    if inside < MIN_FIT_POINTS:
        raise ValueError(
            f"{func}: window ({lo:g}, {hi:g}) contains {inside} point(s) of t; a power-law "
            f"fit with an error estimate needs at least {MIN_FIT_POINTS}"
        )
    return lo, hi


def window_mask(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    slack = 1e-12
    return (t >= lo * (1 - slack)) & (t <= hi * (1 + slack))


# --------------------------------------------------------------------------- log-even points


def log_even_subset(t: np.ndarray, mask: np.ndarray, points_per_decade: float) -> np.ndarray:
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


def log_spacing_weights(x: np.ndarray) -> np.ndarray:
    """Width in log t that each point of ``x`` (increasing) stands for (trapezoid rule)."""
    if x.size == 1:
        return np.ones(1)
    gaps = np.diff(x)
    weights = np.empty_like(x)
    weights[0] = gaps[0] / 2
    weights[-1] = gaps[-1] / 2
    weights[1:-1] = (gaps[:-1] + gaps[1:]) / 2
    return weights / weights.mean()


# --------------------------------------------------------------------------- rows and grid density


def combined_curve(rows: np.ndarray, combine_rows: str, func: str) -> np.ndarray:
    if combine_rows == "mean":
        return rows.mean(axis=0)
    if combine_rows == "sum":
        return rows.sum(axis=0)
    raise ValueError(f"{func}: combine_rows must be 'mean' or 'sum', got {combine_rows!r}")


#: most points per decade a fit may ask for (the log-even grid costs memory and time
#: proportional to it; real curves hold far fewer points per decade)
MAX_POINTS_PER_DECADE = 10_000


def check_points_per_decade(value: Any, func: str) -> float:
    ppd = check_positive(value, "points_per_decade", func)
    if not 2 <= ppd <= MAX_POINTS_PER_DECADE:
        raise ValueError(
            f"{func}: points_per_decade must be in [2, {MAX_POINTS_PER_DECADE}], got {value!r}"
        )
    return ppd


# --------------------------------------------------------------------------- plotting


def label_curve_axes(ax, curve: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    if curve == "displacement":
        ax.set_xlabel("t since the reference snapshot (steps)")
        ax.set_ylabel("R(t) = ||W(t) - W(t0)||")
    else:
        ax.set_xlabel("lag τ (steps)")
        ax.set_ylabel("MSD(τ)")


def brownian_reference(ax, curve: str, t_data, t0: float, y0: float) -> None:
    slope = 0.5 if curve == "displacement" else 1.0
    positive = np.asarray(t_data)[np.asarray(t_data) > 0]
    grid = np.geomspace(positive[0], positive[-1], 50)
    ax.plot(grid, y0 * (grid / t0) ** slope, color="0.4", ls=":", lw=1,
            label=f"Brownian (slope {slope:g})")

"""Automatic fit windows: the rules ``"auto"``, ``"last_regime"`` and ``"first_regime"`` each pick
one regime of the piecewise power law below the lag cap, and :class:`WindowWarning` flags a
window that is short or a transient between two crossovers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import format_number
from .curves import MIN_FIT_POINTS, log_even_subset, log_spacing_weights
from .noise import Noise, weighted_line
from .regimes import select_piecewise

__all__ = [
    "WindowWarning",
]


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
class WindowChoice:
    lo: float
    hi: float
    rule: str
    regime_index: int | None = None  # 0-based
    regime_windows: tuple[tuple[float, float], ...] = ()
    regime_exponents: tuple[float, ...] = ()

    @property
    def n_regimes(self) -> int | None:
        return len(self.regime_windows) or None


def auto_window(
    t, curve, noise: Noise, func, *, upper, points_per_decade, max_breaks, min_exponent_change,
    rule: str = "auto",
) -> WindowChoice:
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
    idx = log_even_subset(t, mask, points_per_decade)
    x = np.log10(t[idx])
    z = np.log10(curve[idx])
    w = log_spacing_weights(x)
    full = (float(t[idx[0]]), float(t[idx[-1]]))
    capped = "" if upper >= t[-1] else f", t <= {upper:g} (max_lag_fraction of the run)"
    min_points = 4
    if idx.size < 2 * min_points:
        return WindowChoice(*full, f"{rule}: all points{capped} (too few to look for crossovers)",
                             0, (full,))
    slope = weighted_line(x, z, w)[0][1]
    log_cov = noise.log_cov(idx, slope)
    model, _ = select_piecewise(
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
        return WindowChoice(*full, f"{rule}: one power law over all points{capped} "
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
    return WindowChoice(float(t[chosen[0]]), float(t[chosen[-1]]), text, k, windows, exps)


def window_warnings(choice: WindowChoice, lo: float, hi: float) -> list[str]:
    out = []
    span = math.log10(hi / lo)
    if span < MIN_WINDOW_DECADES - 0.01:  # slack: a requested decade thinned to log-even points
        out.append(f"the window t = {lo:g}..{hi:g} spans {span:.2f} decades (< "
                   f"{MIN_WINDOW_DECADES:g}): a power law over so short a range is hard to tell "
                   "from a bend")
    n = choice.n_regimes
    k = choice.regime_index
    if n is not None and n >= 3 and k is not None and 0 < k < n - 1:
        out.append(f"the window is regime {choice.regime_index + 1} of {n}, a transient between "
                   "two crossovers; window='last_regime' gives the late-time exponent")
    return out

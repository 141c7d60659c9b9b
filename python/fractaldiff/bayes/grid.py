"""Exact LLC of 1-3 parameter losses on a grid: :func:`grid_llc`."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ._engine import LLCWarning, check_count, check_nonneg, check_pos, default_nbeta

__all__ = ["GridLLCResult", "grid_llc"]

_DEFAULT_POINTS = {1: 20001, 2: 1201, 3: 161}


@dataclass(repr=False)
class GridLLCResult:
    """Learning coefficient of a small model from a grid.

    Attributes
    ----------
    llc : float
        nβ (E_w[L(w)] - L(w*)) under p(w) ∝ exp(-nβ L(w) - (γ/2)||w - w*||²) restricted to the
        box, by quadrature: the exact value of the finite-nβ quantity SGLD estimates.
    volume_exponent : float
        Slope of log V(ε) against log ε, V(ε) the prior (uniform on the ball of ``radius``)
        volume of {K(w) < ε}, K = L - L(w*) (the paper's Eqs. 5-7); -> λ as ε -> 0, with the
        log corrections of the singularity at finite ε.
    volume_exponent_stderr : float
        Regression standard error of the slope (it does not include the log-correction bias).
    eps, volume : numpy.ndarray
        The (ε, V(ε)/V(ball)) points of the fit.
    boundary_mass : float
        Posterior mass in the outermost grid cells (small when the box contains the posterior).
    settings : dict
        nbeta, localization, radius, n_points, center, init_loss.
    """

    llc: float
    volume_exponent: float
    volume_exponent_stderr: float
    eps: np.ndarray
    volume: np.ndarray
    boundary_mass: float
    settings: dict[str, Any]

    def __repr__(self) -> str:
        return (
            f"GridLLCResult(llc={self.llc:.5g} (nβ={self.settings['nbeta']:.4g}, "
            f"γ={self.settings['localization']:.3g}), volume_exponent="
            f"{self.volume_exponent:.4g} ± {self.volume_exponent_stderr:.2g})"
        )


def grid_llc(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    center: Any,
    radius: float | Any,
    *,
    n: int | None = None,
    nbeta: float | None = None,
    localization: float = 1.0,
    n_points: int | None = None,
    volume_fraction: tuple[float, float] | None = None,
    chunk: int = 1 << 18,
) -> GridLLCResult:
    """The local learning coefficient of a 1-3 parameter loss, exactly, on a grid.

    Two definitions, both at the centre w*:

    * **quadrature**: lambda_nβ = nβ (E[L(w)] - L(w*)) with the tempered, localized posterior
      p(w) ∝ exp(-nβ L(w) - (γ/2) ||w - w*||²) on the box ``center ± radius`` (a regular
      grid, midpoint rule). This is the very quantity :func:`estimate_llc` estimates by SGLD
      (same nβ, same γ), so the two can be compared at finite nβ;
    * **volume scaling**: V(ε) ∝ ε^λ for the prior volume of {w in B_r(w*): L(w) - L(w*) < ε}
      (uniform prior on the ball of radius ``min(radius)``): the slope of log V against log ε
      over the smallest volumes the grid resolves.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(w)`` for a flat tensor w of length d (1 <= d <= 3), torch ops (vmapped over
        grid points, float64).
    center : sequence of float
        w*, length d.
    radius : float or sequence of float
        Half-width of the box per parameter (> 0). Make it contain the posterior
        (``boundary_mass`` tells).
    n, nbeta : optional
        nβ, default n / log n (one of the two is required).
    localization : float, default 1.0
        γ (>= 0), as in :func:`estimate_llc`.
    n_points : int, optional
        Grid points per axis (default 20001, 1201, 161 for d = 1, 2, 3).
    volume_fraction : (float, float), optional
        Range of V(ε)/V(ball) fitted (default: from 400 grid cells, at most 0.005, up to
        0.05).
    chunk : int
        Grid points per vmapped evaluation.

    Returns
    -------
    GridLLCResult
    """
    func = "grid_llc"
    if not callable(loss_fn):
        raise TypeError(f"{func}: loss_fn must be callable")
    c = np.atleast_1d(np.asarray(center, dtype=np.float64))
    if c.ndim != 1 or not 1 <= c.size <= 3:
        raise ValueError(f"{func}: center must have 1 to 3 parameters, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"{func}: center must be finite")
    d = c.size
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (d,)).copy()
    if not (np.isfinite(r).all() and (r > 0).all()):
        raise ValueError(f"{func}: radius must be finite and > 0, got {radius!r}")
    if nbeta is None:
        if n is None:
            raise TypeError(f"{func}: give n (for nβ = n / log n) or nbeta")
        nb = default_nbeta(check_count(n, "n", func, 2))
    else:
        nb = check_pos(nbeta, "nbeta", func)
    gamma = check_nonneg(localization, "localization", func)
    m = _DEFAULT_POINTS[d] if n_points is None else check_count(n_points, "n_points", func, 11)
    axes = [np.linspace(c[i] - r[i], c[i] + r[i], m) for i in range(d)]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, d)
    f = torch.func.vmap(lambda w: loss_fn(w).reshape(()))
    with torch.no_grad():
        center_loss = loss_fn(torch.as_tensor(c))
        if not isinstance(center_loss, torch.Tensor) or center_loss.numel() != 1:
            raise ValueError(f"{func}: loss_fn must return a scalar tensor")
        l0 = float(center_loss)
        if not math.isfinite(l0):
            raise ValueError(f"{func}: the loss at center is not finite ({l0})")
        vals = np.empty(len(mesh))
        for a in range(0, len(mesh), chunk):
            vals[a:a + chunk] = f(torch.as_tensor(mesh[a:a + chunk])).double().numpy()
    if not np.isfinite(vals).all():
        raise ValueError(f"{func}: loss_fn is not finite everywhere on the grid")
    k = vals - l0
    if k.min() < -1e-12 * max(1.0, abs(l0)):
        warnings.warn(f"{func}: the loss goes below L(center) inside the box (min "
                      f"K = {k.min():.3g}): center is not a minimum there", LLCWarning,
                      stacklevel=2)
    dist2 = ((mesh - c) ** 2).sum(1)
    logp = -nb * k - 0.5 * gamma * dist2
    logp -= logp.max()
    p = np.exp(logp)
    p /= p.sum()
    llc = float(nb * (p * k).sum())
    shape = (m,) * d
    pg = p.reshape(shape)
    inner = pg[(slice(1, -1),) * d].sum() if m > 2 else 0.0
    boundary = float(1.0 - inner)
    if boundary > 1e-4:
        warnings.warn(f"{func}: {boundary:.2g} of the posterior mass lies on the box edge; "
                      "increase radius", LLCWarning, stacklevel=2)
    # volume scaling on the ball of radius min(r)
    ball = dist2 <= r.min() ** 2
    kb = np.sort(k[ball])
    total = kb.size
    if volume_fraction is None:
        volume_fraction = (min(400.0 / total, 0.005), 0.05)
    lo_frac, hi_frac = volume_fraction
    if not 0 < lo_frac < hi_frac <= 1:
        raise ValueError(f"{func}: volume_fraction must be (lo, hi) with 0 < lo < hi <= 1")
    ranks = np.unique(np.geomspace(max(1, lo_frac * total), hi_frac * total, 40).astype(int))
    eps = kb[ranks - 1]
    vol = ranks / total
    keep = eps > 0
    eps, vol = eps[keep], vol[keep]
    if eps.size >= 3:
        x, y = np.log(eps), np.log(vol)
        A = np.vstack([x, np.ones_like(x)]).T
        coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
        slope = float(coef[0])
        resid = y - A @ coef
        s2 = float(resid @ resid) / max(1, len(x) - 2)
        se = math.sqrt(s2 / float(((x - x.mean()) ** 2).sum()))
    else:
        slope, se = float("nan"), float("nan")
    return GridLLCResult(llc, slope, se, eps, vol, boundary,
                         dict(nbeta=nb, localization=gamma, radius=r, n_points=m,
                              center=c, init_loss=l0))

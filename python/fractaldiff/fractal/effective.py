"""The effective number of independently diffusing coordinates of a trajectory.

The analytic covariance of a time-averaged MSD or of R(t) (``cov="fbm"`` in
:func:`fractaldiff.fit_exponent`) scales as 1 / n for n independent, identically diffusing
coordinates. A network's parameters are neither: their steps are correlated and of very
different sizes. For Gaussian steps with covariance C (D x D), the principal axes are
independent, and the relative variance of the summed MSD is sum(l_i^2) / (sum l_i)^2 for the
eigenvalues l_i of C: the same as for ``n = (tr C)^2 / tr(C^2)`` identical coordinates, the
*participation ratio* of the steps. That is what :func:`effective_dimension` returns, from the
T x T Gram matrix of the steps (never a D x D matrix).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .correlation import centered_gram

__all__ = ["effective_dimension", "participation_ratio_of_steps"]


def participation_ratio_of_steps(gram: Any) -> float:
    """(tr C)^2 / tr(C^2) of the step covariance, from the centred Gram matrix of snapshots.

    Parameters
    ----------
    gram : array_like, shape (T, T)
        Centred Gram matrix of the snapshots (:func:`fractaldiff.centered_gram`), T >= 3.

    Returns
    -------
    float
        The participation ratio, in [1, min(D, T - 2)].
    """
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 3:
        raise ValueError(f"gram must be a square (T, T) matrix with T >= 3, got shape {g.shape}")
    # steps dW_i = W_{i+1} - W_i: their Gram is A G A^T with A the difference operator
    steps = g[1:, 1:] - g[1:, :-1] - g[:-1, 1:] + g[:-1, :-1]
    # centre the steps over time (C is a covariance): H S H with H = I - 11^T / n
    steps = steps - steps.mean(axis=0) - steps.mean(axis=1)[:, None] + steps.mean()
    trace = float(np.trace(steps))
    frob = float(np.sum(steps * steps))
    if not trace > 0 or not frob > 0:
        raise ValueError("the trajectory does not move (all steps are zero)")
    return trace * trace / frob


def effective_dimension(X: Any, *, start: int | None = None, stop: int | None = None,
                        n_threads: int | None = None, device: str = "auto",
                        memory_limit: int | str | None = None,
                        progress: bool | None = None) -> float:
    """Effective number of independently diffusing coordinates: the participation ratio of
    the steps, for ``effective_dims`` of the analytic (``cov="fbm"``) fit covariance.

    Parameters
    ----------
    X : array_like, shape (T, D), or a store / source
        Snapshots, as for :func:`fractaldiff.msd` (T >= 3).
    start, stop : int, optional
        Snapshot range (as for :func:`fractaldiff.centered_gram`); use the same range as the
        fitted curve.
    n_threads, device, memory_limit, progress
        As for :func:`fractaldiff.centered_gram`.

    Returns
    -------
    float
        (tr C)^2 / tr(C^2) for the covariance C of the steps W[t+1] - W[t]. Equal to D for
        D independent, identical coordinates; 1 when one direction dominates.

    Notes
    -----
    Cost: one centred Gram matrix (T^2 D multiply-adds, (T, T) float64 memory). The ratio is
    estimated from T - 1 steps, so it is at most T - 2; with fewer steps than directions that
    matter it is biased low, which makes the interval wider, not narrower. It assumes the
    same exponent in every direction; 2-D rows of random parameter blocks
    (``fd.msd(X, groups=...)``) need no such assumption.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> W = np.cumsum(np.random.default_rng(0).standard_normal((2000, 8)), axis=0)
    >>> 6.5 < fd.effective_dimension(W) <= 8
    True
    """
    g = centered_gram(X, start=start, stop=stop, n_threads=n_threads, device=device,
                      memory_limit=memory_limit, progress=progress)
    return participation_ratio_of_steps(g)

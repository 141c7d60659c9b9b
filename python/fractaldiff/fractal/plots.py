"""Plots of fractal-analysis results that do not fit on their own class's module."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._plotting import pyplot

__all__ = ["plot_trajectory_pca"]


def plot_trajectory_pca(pca: Any, ax=None, *, components: tuple[int, int] = (0, 1),
                        steps: Any = None):
    """The trajectory in the plane of two principal components, coloured by time.

    Parameters
    ----------
    pca : TrajectoryPCA
    ax : matplotlib Axes, optional
    components : (int, int), default (0, 1)
        Which components on x and y (0-based).
    steps : array_like, shape (T,), optional
        Training step of each snapshot for the colour bar (default: the snapshot index).

    Returns
    -------
    matplotlib Axes
    """
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots()
    i, j = components
    k = pca.scores.shape[1]
    if not (0 <= i < k and 0 <= j < k and i != j):
        raise ValueError(f"components must be two different indices in [0, {k}), got "
                         f"{components!r}")
    t = np.arange(pca.scores.shape[0]) if steps is None else np.asarray(steps)
    if t.shape != (pca.scores.shape[0],):
        raise ValueError(f"steps must have shape ({pca.scores.shape[0]},), got {t.shape}")
    ax.plot(pca.scores[:, i], pca.scores[:, j], color="0.8", lw=0.6, zorder=1)
    art = ax.scatter(pca.scores[:, i], pca.scores[:, j], c=t, s=6, cmap="viridis", zorder=2)
    ax.figure.colorbar(art, ax=ax, label="step" if steps is not None else "snapshot")
    r = pca.explained_variance_ratio
    ax.set_xlabel(f"PC{i + 1} ({100 * r[i]:.1f} % of the variance)")
    ax.set_ylabel(f"PC{j + 1} ({100 * r[j]:.1f} % of the variance)")
    ax.set_title("trajectory in the principal-component plane")
    return ax

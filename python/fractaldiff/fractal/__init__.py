"""Fractal dimensions of a trajectory's point cloud {W[t]}: box counting, the correlation
integral (with Gram / pairwise distances and trajectory PCA), and scaling-window selection."""

from __future__ import annotations

from .boxcount import box_counting_dimension, box_counts, chao1, grid_offsets
from .correlation import (
    TrajectoryPCA,
    centered_gram,
    correlation_dimension,
    msd_from_sqdist,
    pairwise_sqdist,
    trajectory_pca,
)
from .effective import effective_dimension
from .windows import DimensionEstimate, ResolutionWarning, select_window

__all__ = [
    "DimensionEstimate",
    "ResolutionWarning",
    "TrajectoryPCA",
    "box_counting_dimension",
    "box_counts",
    "centered_gram",
    "chao1",
    "correlation_dimension",
    "effective_dimension",
    "grid_offsets",
    "msd_from_sqdist",
    "pairwise_sqdist",
    "select_window",
    "trajectory_pca",
]

"""fractaldiff: how neural-network weights diffuse during training.

Record weight snapshots W[t, d] from a training run, then measure the trajectory: the
time-averaged mean-squared displacement over all lags (:func:`msd`), the displacement from a
reference snapshot (:func:`displacement`), and the exponents and dimensions that describe
anomalous diffusion on a fractal loss landscape.
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "fractaldiff's compiled extension (fractaldiff._core) could not be imported: "
        f"{exc}. Install the package with `pip install .` so that it gets built."
    ) from exc

from ._info import build_info
from .boxcount import box_counting_dimension, box_counts
from .correlation import (
    TrajectoryPCA,
    centered_gram,
    correlation_dimension,
    msd_from_sqdist,
    pairwise_sqdist,
    trajectory_pca,
)
from .diffusion import MSDAccumulator, displacement, msd
from .dimension import DimensionEstimate
from .sources import ArraySource, as_source

__version__ = _core.__version__

__all__ = [
    "ArraySource",
    "DimensionEstimate",
    "MSDAccumulator",
    "TrajectoryPCA",
    "__version__",
    "as_source",
    "box_counting_dimension",
    "box_counts",
    "build_info",
    "centered_gram",
    "correlation_dimension",
    "displacement",
    "msd",
    "msd_from_sqdist",
    "pairwise_sqdist",
    "trajectory_pca",
]

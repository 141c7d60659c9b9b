"""fractaldiff: how neural-network weights diffuse during training.

Record weight snapshots W[t, d] from a training run, then measure the trajectory: the
time-averaged mean-squared displacement over all lags (:func:`msd`), the displacement from a
reference snapshot (:func:`displacement`), the exponents of anomalous diffusion
(:func:`fit_exponent`, :func:`crossover`, :func:`fit_msd`) and the paper's derived dimensions
(:mod:`fractaldiff.dims`).
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "fractaldiff's compiled extension (fractaldiff._core) could not be imported: "
        f"{exc}. Install the package with `pip install .` so that it gets built."
    ) from exc

from . import dims, ensemble
from ._info import build_info
from .boxcount import box_counting_dimension, box_counts
from .checkpoints import CheckpointFolder
from .correlation import (
    TrajectoryPCA,
    centered_gram,
    correlation_dimension,
    msd_from_sqdist,
    pairwise_sqdist,
    trajectory_pca,
)
from .diffusion import (
    DisplacementAccumulator,
    LagsAccumulator,
    MSDAccumulator,
    displacement,
    msd,
)
from .dimension import DimensionEstimate
from .dims import (
    Estimate,
    SpectralBoundCheck,
    check_spectral_bound,
    coarse_grained_diffusion_coefficient,
    effective_temperature,
    exponents_from_dimensions,
    spectral_dimension,
)
from .ensemble import (
    EnsembleFit,
    ergodicity_breaking,
    fit_ensemble,
    reference_ergodicity_breaking,
)
from .fitting import (
    Crossover,
    DiffusionExponents,
    ExponentFit,
    LocalSlope,
    Regime,
    UncalibratedStderrWarning,
    crossover,
    fit_displacement,
    fit_exponent,
    fit_msd,
    local_slope,
    tamsd_covariance,
)
from .sources import ArraySource, SlicedSource, Source, as_source
from .store import (
    LayoutEntry,
    ParameterLayout,
    SnapshotStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreRecoveryWarning,
    is_store,
    open_store,
)

__version__ = _core.__version__

__all__ = [
    "ArraySource",
    "CheckpointFolder",
    "Crossover",
    "DiffusionExponents",
    "DimensionEstimate",
    "DisplacementAccumulator",
    "EnsembleFit",
    "Estimate",
    "ExponentFit",
    "LagsAccumulator",
    "LayoutEntry",
    "LocalSlope",
    "MSDAccumulator",
    "ParameterLayout",
    "Regime",
    "SlicedSource",
    "SnapshotStore",
    "Source",
    "SpectralBoundCheck",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreRecoveryWarning",
    "TrajectoryPCA",
    "UncalibratedStderrWarning",
    "__version__",
    "as_source",
    "box_counting_dimension",
    "box_counts",
    "build_info",
    "centered_gram",
    "check_spectral_bound",
    "coarse_grained_diffusion_coefficient",
    "correlation_dimension",
    "crossover",
    "dims",
    "displacement",
    "effective_temperature",
    "ensemble",
    "ergodicity_breaking",
    "exponents_from_dimensions",
    "fit_displacement",
    "fit_ensemble",
    "fit_exponent",
    "fit_msd",
    "is_store",
    "local_slope",
    "msd",
    "msd_from_sqdist",
    "open_store",
    "pairwise_sqdist",
    "reference_ergodicity_breaking",
    "spectral_dimension",
    "tamsd_covariance",
    "trajectory_pca",
]

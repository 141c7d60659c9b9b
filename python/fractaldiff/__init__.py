"""fractaldiff: how neural-network weights diffuse during training.

Record weight snapshots W[t, d] from a training run, then measure the trajectory: the
time-averaged mean-squared displacement over all lags (:func:`msd`), the displacement from a
reference snapshot (:func:`displacement`), the exponents of anomalous diffusion
(:func:`fit_exponent`, :func:`crossover`, :func:`fit_msd`) and the paper's derived dimensions
(:mod:`fractaldiff.theory`).
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "fractaldiff's compiled extension (fractaldiff._core) could not be imported: "
        f"{exc}. Install the package with `pip install .` so that it gets built."
    ) from exc

from . import theory
from ._info import build_info
from .diffusion import displacement, msd
from .engine import (
    ArraySource,
    DisplacementAccumulator,
    LagsAccumulator,
    MSDAccumulator,
    SlicedSource,
    Source,
    as_source,
)
from .fitting import (
    Crossover,
    DiffusionExponents,
    EnsembleFit,
    ExponentFit,
    LocalSlope,
    Regime,
    SingularCovarianceWarning,
    UncalibratedStderrWarning,
    WindowWarning,
    crossover,
    ergodicity_breaking,
    fit_displacement,
    fit_ensemble,
    fit_exponent,
    fit_groups,
    fit_msd,
    local_slope,
    reference_ergodicity_breaking,
    tamsd_covariance,
)
from .fractal import (
    DimensionEstimate,
    ResolutionWarning,
    TrajectoryPCA,
    box_counting_dimension,
    box_counts,
    centered_gram,
    correlation_dimension,
    effective_dimension,
    msd_from_sqdist,
    pairwise_sqdist,
    trajectory_pca,
)
from .io import (
    CheckpointFolder,
    LayoutEntry,
    ParameterLayout,
    SnapshotStore,
    StoreCorruptedError,
    StoreLockedError,
    StoreRecoveryWarning,
    is_store,
    open_store,
)
from .theory import (
    Estimate,
    SpectralBoundCheck,
    check_spectral_bound,
    coarse_grained_diffusion_coefficient,
    effective_temperature,
    exponents_from_dimensions,
    spectral_dimension,
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
    "WindowWarning",
    "SingularCovarianceWarning",
    "__version__",
    "as_source",
    "box_counting_dimension",
    "box_counts",
    "build_info",
    "centered_gram",
    "check_spectral_bound",
    "coarse_grained_diffusion_coefficient",
    "correlation_dimension",
    "effective_dimension",
    "ResolutionWarning",
    "crossover",
    "displacement",
    "effective_temperature",
    "ergodicity_breaking",
    "exponents_from_dimensions",
    "fit_displacement",
    "fit_ensemble",
    "fit_exponent",
    "fit_groups",
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
    "theory",
    "trajectory_pca",
]

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
from .diffusion import MSDAccumulator, displacement, msd
from .fitting import ExponentFit, fit_exponent
from .sources import ArraySource, as_source

__version__ = _core.__version__

__all__ = [
    "ArraySource",
    "ExponentFit",
    "MSDAccumulator",
    "__version__",
    "as_source",
    "build_info",
    "displacement",
    "fit_exponent",
    "msd",
]

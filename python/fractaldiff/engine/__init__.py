"""The fold engine: column-block sources, accumulators, parameter groups, and the one driver
(:func:`fractaldiff.engine.folds.run`) that folds and merges them on local threads, dask or the
GPU. Nothing here knows about an analysis; docs/architecture.md describes the design.
"""

from __future__ import annotations

from .accumulators import (
    Accumulator,
    BoxIdsAccumulator,
    DisplacementAccumulator,
    GramAccumulator,
    LagsAccumulator,
    MSDAccumulator,
)
from .folds import run
from .sources import ArraySource, RowRangeSource, SlicedSource, Source, as_source, iter_blocks

__all__ = [
    "Accumulator",
    "ArraySource",
    "BoxIdsAccumulator",
    "DisplacementAccumulator",
    "GramAccumulator",
    "LagsAccumulator",
    "MSDAccumulator",
    "RowRangeSource",
    "SlicedSource",
    "Source",
    "as_source",
    "iter_blocks",
    "run",
]

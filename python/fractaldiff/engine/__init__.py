"""The fold engine: column-block sources, accumulators, and the drivers that fold and merge them.

A source (array, memmap, store, zarr/HDF5, checkpoint folder, dask array) yields column blocks
``[T x B]``; a compiled kernel folds each block into a small accumulator; accumulators merge by
addition; the analysis finishes the merged sum. Local threads, dask and the GPU streamer are
drivers around the same accumulators. Nothing here knows about fitting or plotting.
"""

from __future__ import annotations

from .accumulators import (
    Accumulator,
    DisplacementAccumulator,
    LagsAccumulator,
    MSDAccumulator,
)
from .sources import ArraySource, SlicedSource, Source, as_source, iter_blocks

__all__ = [
    "Accumulator",
    "ArraySource",
    "DisplacementAccumulator",
    "LagsAccumulator",
    "MSDAccumulator",
    "SlicedSource",
    "Source",
    "as_source",
    "iter_blocks",
]

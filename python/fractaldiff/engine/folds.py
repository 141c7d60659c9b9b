"""The one driver every analysis over parameters goes through.

:func:`run` folds a snapshot matrix into an accumulator (one per parameter group atom) and
merges the partial accumulators, on one of three drivers:

* local data (arrays, memory maps, stores, zarr, HDF5, checkpoint folders): read block by block
  by :func:`~fractaldiff.engine.sources.iter_blocks` (bounded memory, reads overlapping the
  kernels), folded by the compiled CPU kernels;
* dask arrays: each column chunk (all T rows) becomes a task, and the partials are reduced by a
  tree of tasks, so only one reduced partial travels back;
* the GPU (:mod:`fractaldiff.engine.gpu`): device arrays read in place, host sources streamed.

The driver only calls the :class:`~fractaldiff.engine.accumulators.Accumulator` interface, so
every analysis runs the same code on every driver.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .. import _core
from .._validation import AnalysisOptions
from .accumulators import Accumulator
from .groups import fold_atoms, group_results, merge_atoms, resolve_groups
from .sources import Source, as_source, is_dask_array, iter_blocks, select_rows, to_kernel_dtype

__all__ = [
    "KernelStatus",
    "check_status",
    "column_ranges",
    "kernel_error",
    "map_reduce",
    "prepare_input",
    "run",
]


class KernelStatus(Exception):
    """Raised by a block function when a kernel returns a status other than OK; the driver
    turns it into a clear error (finding the first bad value where there is one)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def check_status(status: int) -> None:
    """Raise :class:`KernelStatus` unless ``status`` is OK."""
    if status != _core.STATUS_OK:
        raise KernelStatus(status)


def prepare_input(X: Any, min_rows: int, what: str, n_threads: int
                  ) -> tuple[Any, int, int, int]:
    """Validate X for an analysis: a snapshot :class:`Source` (anything
    :func:`~fractaldiff.engine.sources.as_source` takes) or a 2-D dask array (1-D becomes one
    column).

    Returns ``(X, T, D, n_threads)``; on dask the default of 0 threads becomes 1 per task (a
    worker runs several tasks at once).
    """
    if is_dask_array(X):
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(f"X must be 1-D (T,) or 2-D (T, D), got a {X.ndim}-D dask array "
                             f"of shape {X.shape}")
        if np.dtype(X.dtype).kind not in "fiub":
            raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
        t, d = int(X.shape[0]), int(X.shape[1])
        if t < min_rows:
            raise ValueError(f"X has T={t} snapshot(s); {what} needs at least {min_rows}")
        if d == 0:
            raise ValueError(f"X has D=0 parameters (shape {X.shape})")
        return X, t, d, n_threads or 1
    src = as_source(X, "X")
    src.require(min_rows=min_rows, what=what)
    return src, src.n_rows, src.n_cols, n_threads


def kernel_error(status: int, func: str, locate: Callable[[], Any], name: str) -> Exception:
    """The exception a kernel status code stands for; ``locate()`` finds the first bad value."""
    if status == _core.STATUS_OUT_OF_MEMORY:
        return MemoryError(f"{func}: could not allocate the kernel's workspace")
    if status == _core.STATUS_OUT_OF_RANGE:
        return ValueError(f"{func}: a quantized coordinate left [0, 2^31) (or {name} changed "
                          f"between the min/max pass and the box pass); raise eps0")
    bad = locate()
    if bad is not None:
        t, d, value = bad
        return ValueError(
            f"{name} contains {value} at snapshot t={t}, parameter d={d} (the first "
            f"non-finite value in row-major order); {func} needs finite values"
        )
    return ValueError(
        f"{name} holds values too large for float64 sums of squares (|x| ~ 1e150 or more); "
        f"rescale it before calling {func}"
    )


def block_locator(block: np.ndarray, start: int) -> Callable[[], Any]:
    """A ``locate`` for :func:`kernel_error` that searches one in-memory block."""

    def locate():
        bad = np.argwhere(~np.isfinite(block))
        if bad.size == 0:
            return None
        t, d = bad[0]
        return int(t), start + int(d), float(block[t, d])

    return locate


def _task(fn, block, start, args, func, name):
    block = to_kernel_dtype(np.asarray(block))
    try:
        return fn(block, start, *args)
    except KernelStatus as exc:
        raise kernel_error(exc.status, func, block_locator(block, start), name) from None


def _tree(reduce, *parts):
    return reduce(list(parts))


def map_reduce(
    X: Any,
    fn: Callable[..., Any],
    reduce: Callable[[list[Any]], Any],
    *,
    block_args: Callable[[int, int], tuple] | None = None,
    func: str,
    name: str = "X",
    memory_limit: int,
    progress: Any = None,
    fan_in: int = 8,
) -> Any:
    """``reduce([fn(block, start, *block_args(start, stop)) for every column block])``.

    Parameters
    ----------
    X : Source or dask array
        The snapshot matrix (see :func:`fractaldiff.engine.sources.as_source`).
    fn : callable
        ``fn(block, start, *args) -> partial``, block a kernel-ready (T, B) array of the columns
        ``start:start+B``. Must be picklable (a module-level function or a partial of one) when
        X is a dask array. It reports bad kernel statuses with :func:`check_status`.
    reduce : callable
        Combines a list of partials into one partial (associative).
    block_args : callable, optional
        ``block_args(start, stop)`` gives extra per-block arguments for ``fn``.
    func, name
        Function and argument names for error messages (and the progress bar).
    memory_limit, progress
        For local sources, as in :func:`fractaldiff.engine.sources.iter_blocks`.
    """
    args_of = block_args or (lambda a, b: ())
    if is_dask_array(X):
        import dask

        if X.ndim == 1:
            X = X[:, None]
        X = X.rechunk({0: -1})  # every task needs all snapshots of its columns
        blocks = X.to_delayed().reshape(-1)
        bounds = np.concatenate(([0], np.cumsum(X.chunks[1])))
        task = dask.delayed(_task, pure=True)
        parts = [
            task(fn, blk, int(a), args_of(int(a), int(b)), func, name)
            for blk, a, b in zip(blocks, bounds[:-1], bounds[1:])
        ]
        tree = dask.delayed(_tree, pure=True)
        while len(parts) > 1:
            parts = [tree(reduce, *parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
        (out,) = dask.compute(parts[0])
        return out
    if not isinstance(X, Source):
        raise TypeError(f"{func}: expected a snapshot source or a dask array")
    acc = None
    for start, block in iter_blocks(X, memory_limit=memory_limit, progress=progress, desc=func):
        try:
            part = fn(block, start, *args_of(start, start + block.shape[1]))
        except KernelStatus as exc:
            raise kernel_error(exc.status, func, X.first_nonfinite, X.name) from None
        acc = part if acc is None else reduce([acc, part])
    return acc


# ---- the driver ---------------------------------------------------------------------------------


def _cpu_fold(n_threads: int, acc: Accumulator, block: np.ndarray, start: int) -> None:
    check_status(acc.fold(block, start, n_threads))


def _fold_block(block, start, proto, groups, n_threads):
    return fold_atoms(block, start, proto, groups, partial(_cpu_fold, n_threads))


def run(X: Any, make: Callable[[int], Accumulator], options: AnalysisOptions, *,
        min_rows: int, what: str, groups: Any = None, start: Any = None, stop: Any = None
        ) -> Any:
    """Fold X into the accumulator ``make(T)`` and merge; returns the merged accumulator, or
    ``{"total": acc, group: acc, ...}`` with ``groups``.

    Parameters
    ----------
    X : anything :func:`~fractaldiff.engine.sources.as_source` takes, a dask array, or an array
        in CUDA device memory.
    make : callable
        ``make(T)``: a zero accumulator for T snapshots (raises for bad per-T arguments).
    options : AnalysisOptions
        n_threads, device, memory_limit, progress (validated).
    min_rows, what
        At least ``min_rows`` snapshots are needed for ``what`` (the error message).
    groups : see :func:`fractaldiff.engine.groups.resolve_groups`
    start, stop : int, optional
        Only snapshots ``start:stop`` are read.
    """
    from .gpu import choose_device, run_gpu

    X = select_rows(X, start, stop)
    where, index = choose_device(options.device, X, options.func)
    if where == "cuda":
        return run_gpu(X, make, options, index, min_rows=min_rows, what=what, groups=groups)
    X, t, d, nt = prepare_input(X, min_rows, what, options.n_threads)
    proto = make(t)
    grp = resolve_groups(groups, X, d)
    accs = map_reduce(X, partial(_fold_block, proto=proto, groups=grp, n_threads=nt),
                      merge_atoms, func=options.func, memory_limit=options.memory_limit,
                      progress=options.progress)
    return group_results(accs or {}, proto, grp)


# ---- per-column ranges (the first pass of box counting) -----------------------------------------


def _minmax_block(block: np.ndarray, start: int, n_threads: int) -> list:
    lo, hi = np.empty(block.shape[1]), np.empty(block.shape[1])
    check_status(_core.box_minmax(block, lo, hi, n_threads))
    return [(start, lo, hi)]


def _concat(parts: list[list]) -> list:
    return [item for part in parts for item in part]


def column_ranges(X: Any, options: AnalysisOptions, *, what: str = "box counting"
                  ) -> tuple[Any, int, int, np.ndarray, np.ndarray, str, int]:
    """Per-column minima and maxima of X: ``(X, T, D, mins, maxs, where, device_index)``.

    X comes back as the validated source (or dask / device array) the following pass reads.
    On the GPU, device arrays are reduced by ``_core.cuda_box_minmax``; host data by the CPU
    kernel while it is read.
    """
    from .gpu import choose_device, gpu_column_ranges

    where, index = choose_device(options.device, X, options.func)
    if where == "cuda":
        X, t, d, mins, maxs = gpu_column_ranges(X, index, options)
        return X, t, d, mins, maxs, where, index
    X, t, d, nt = prepare_input(X, 1, what, options.n_threads)
    mins, maxs = np.empty(d), np.empty(d)
    pieces = map_reduce(X, partial(_minmax_block, n_threads=nt), _concat, func=options.func,
                        memory_limit=options.memory_limit, progress=options.progress)
    for a, lo, hi in pieces:
        mins[a:a + lo.size] = lo
        maxs[a:a + hi.size] = hi
    return X, t, d, mins, maxs, where, index

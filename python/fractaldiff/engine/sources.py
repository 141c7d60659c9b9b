"""Where snapshot data comes from, and how it reaches the kernels.

A *source* is a 2-D snapshot matrix W[t, d] (T snapshots in time, D parameters) that yields
**column blocks**: all T rows of a range of columns, as native-endian float32/float64 numpy arrays
the compiled kernels read without copying (docs/architecture.md: the fold engine).

Sources
-------
* numpy arrays and memory maps (any strides, byte order and real dtype), array likes that
  ``numpy.asarray`` understands, torch CPU tensors: :class:`ArraySource`. float32/float64 data
  is read in place, with no copy at all.
* a path to a ``.npy`` file (memory-mapped), to a :class:`~fractaldiff.SnapshotStore`
  directory, to a zarr array, or to a folder of checkpoint files.
* any object with ``.shape``, ``.dtype`` and numpy-style ``[:, a:b]`` slicing, e.g. zarr arrays
  and h5py datasets: :class:`SlicedSource`, read one column block at a time.
* snapshots ``start:stop`` of any of these: :func:`select_rows` (:class:`RowRangeSource`).

Numpy masked arrays are refused (the kernels would read the masked values).

Reading and computing overlap: while the kernel folds one block (without the GIL), a reader
thread fetches the next. The working set stays within ``memory_limit`` bytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._validation import DEFAULT_MEMORY_LIMIT, check_real_dtype, check_snapshot_ndim

__all__ = [
    "ArraySource",
    "DEFAULT_BLOCK_BYTES",
    "DEFAULT_MEMORY_LIMIT",
    "SlicedSource",
    "RowRangeSource",
    "Source",
    "as_source",
    "iter_blocks",
    "is_dask_array",
    "select_rows",
]

#: Largest converted block, in bytes, when no memory_limit is given.
DEFAULT_BLOCK_BYTES = 64 * 2**20


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_dask_array(x: Any) -> bool:
    """True for a dask array (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


def kernel_ready(a: np.ndarray) -> bool:
    """True when the compiled kernels can read ``a`` in place."""
    dt = a.dtype
    return (
        dt.kind == "f"
        and dt.itemsize in (4, 8)
        and dt.isnative
        and all(s % dt.itemsize == 0 for s in a.strides)
    )


def to_kernel_dtype(block: np.ndarray) -> np.ndarray:
    """``block`` itself when the kernels can read it, else a float32/float64 contiguous copy
    (float32 for float16/float32 data, float64 for everything else: exact for integers)."""
    if kernel_ready(block):
        return block
    kind, size = block.dtype.kind, block.dtype.itemsize
    target = np.float32 if (kind == "f" and size <= 4) else np.float64
    return np.ascontiguousarray(block, dtype=target)


class Source:
    """A snapshot matrix that can be read in column blocks (base class).

    Subclasses set ``name``, ``shape`` (T, D), ``dtype`` and implement :meth:`read_block` and
    :meth:`read_rows`. ``zero_copy`` is True when blocks are views of memory already present
    (no reading, no allocation). ``layout`` optionally lists the parameter groups, as
    ``[(name, start, stop), ...]`` column ranges, for ``groups="layers"``.
    """

    name: str = "X"
    shape: tuple[int, int] = (0, 0)
    dtype: np.dtype = np.dtype(np.float64)
    zero_copy: bool = False
    layout: list[tuple[str, int, int]] | None = None

    @property
    def n_rows(self) -> int:
        """Number of snapshots T."""
        return self.shape[0]

    @property
    def n_cols(self) -> int:
        """Number of parameters D."""
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        """Size of the data as stored, in bytes."""
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def read_block(self, start: int, stop: int) -> np.ndarray:
        """All T rows of columns ``start:stop`` as a numpy array (any real dtype)."""
        raise NotImplementedError

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (all columns) as a numpy array; used to locate bad values."""
        raise NotImplementedError

    def require(self, *, min_rows: int = 1, what: str = "this analysis") -> None:
        """Raise if there are fewer than ``min_rows`` snapshots or no parameters."""
        t, d = self.shape
        if t < min_rows:
            raise ValueError(f"{self.name} has T={t} snapshot(s); {what} needs at least {min_rows}")
        if d == 0:
            raise ValueError(f"{self.name} has D=0 parameters (shape {self.shape})")

    def first_nonfinite(self) -> tuple[int, int, float] | None:
        """Position ``(t, d, value)`` of the first NaN/Inf in row-major order, or None."""
        if self.dtype.kind in "iub":
            return None
        t, d = self.shape
        height = max(1, DEFAULT_BLOCK_BYTES // (8 * max(d, 1)))
        for start in range(0, t, height):
            rows = np.asarray(self.read_rows(start, min(t, start + height)))
            if rows.dtype.kind not in "fc":
                continue
            bad = ~np.isfinite(rows)
            if bad.any():
                i, j = np.argwhere(bad)[0]
                return start + int(i), int(j), float(rows[i, j])
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, shape={self.shape}, dtype={self.dtype})"


class ArraySource(Source):
    """A snapshot matrix held in memory or memory-mapped.

    Parameters
    ----------
    data : numpy.ndarray, numpy.memmap, array_like or torch.Tensor (CPU)
        Shape ``(T,)`` (one coordinate) or ``(T, D)``. Real numeric dtype.
    name : str
        Argument name used in error messages.
    layout : list of (name, start, stop), optional
        Parameter groups as column ranges (for ``groups="layers"``).

    Notes
    -----
    Never copies the whole array: float32/float64 data is read in place; anything else is
    converted one column block at a time.
    """

    def __init__(self, data: Any, name: str = "X", layout=None) -> None:
        self.name = name
        self.layout = layout
        check_not_masked(data, name)
        self._torch = _is_torch_tensor(data)
        if self._torch:
            if data.device.type != "cpu":
                raise ValueError(
                    f"{name} is a torch tensor on {data.device}; this function reads CPU "
                    f"memory: pass {name}.cpu()"
                )
            data = data.detach()
            if data.is_complex():
                raise TypeError(f"{name} has complex dtype {data.dtype}; snapshots must be real")
            if str(data.dtype) in ("torch.float32", "torch.float64"):
                data = data.numpy()  # zero-copy view of the tensor's memory
                self._torch = False
            # other dtypes (float16, bfloat16, integers, bool) are converted block by block
        if not self._torch:
            if not isinstance(data, np.ndarray):
                try:
                    data = np.asarray(data)
                except (ValueError, TypeError) as exc:
                    raise TypeError(
                        f"{name} could not be converted to a numeric array: {exc}"
                    ) from exc
            check_real_dtype(data.dtype, name)
        ndim = data.dim() if self._torch else data.ndim
        check_snapshot_ndim(ndim, tuple(data.shape), name)
        if ndim == 1:
            data = data.unsqueeze(1) if self._torch else data.reshape(-1, 1)
        self._data = data
        self.shape = (int(data.shape[0]), int(data.shape[1]))
        self.dtype = np.dtype(np.float64) if self._torch else data.dtype
        self.zero_copy = (not self._torch) and kernel_ready(data)

    def read_block(self, start: int, stop: int) -> np.ndarray:
        if self._torch:
            torch = sys.modules["torch"]
            return self._data[:, start:stop].to(torch.float64).numpy()
        return self._data[:, start:stop]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        if self._torch:
            torch = sys.modules["torch"]
            return self._data[start:stop].to(torch.float64).numpy()
        return self._data[start:stop]


class SlicedSource(Source):
    """A lazily read snapshot matrix: any object with ``.shape``, ``.dtype`` and numpy-style
    ``obj[:, a:b]`` / ``obj[a:b]`` slicing that returns arrays (zarr arrays, h5py datasets,
    snapshot stores, checkpoint folders). Only the requested block is ever read."""

    def __init__(self, obj: Any, name: str = "X", layout=None) -> None:
        self.name = name
        self._obj = obj
        shape = tuple(int(s) for s in obj.shape)
        check_snapshot_ndim(len(shape), shape, name)
        self._one_d = len(shape) == 1
        self.shape = (shape[0], 1) if self._one_d else (shape[0], shape[1])
        self.dtype = np.dtype(obj.dtype)
        check_real_dtype(self.dtype, name)
        self.layout = layout if layout is not None else _layout_of(obj)

    def read_block(self, start: int, stop: int) -> np.ndarray:
        if self._one_d:
            return np.asarray(self._obj[:]).reshape(-1, 1)[:, start:stop]
        block = getattr(self._obj, "column_block", None)
        if block is not None:
            return np.asarray(block(start, stop))
        return np.asarray(self._obj[:, start:stop])

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        rows = np.asarray(self._obj[start:stop])
        return rows.reshape(-1, 1) if self._one_d else rows


def check_not_masked(data: Any, name: str) -> None:
    """Refuse numpy masked arrays: the kernels would read the masked values as data."""
    if isinstance(data, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must not be a numpy masked array (its masked values would be read as "
            f"data); pass {name}.filled(value) or {name}.compressed() rows explicitly"
        )


class RowRangeSource(Source):
    """Snapshots ``start:stop`` of another source; the other rows are never read."""

    def __init__(self, base: Source, start: int, stop: int) -> None:
        self._base, self._start, self._stop = base, int(start), int(stop)
        self.name = base.name
        self.shape = (self._stop - self._start, base.n_cols)
        self.dtype = base.dtype
        self.zero_copy = base.zero_copy
        self.layout = base.layout

    def read_block(self, start: int, stop: int) -> np.ndarray:
        if isinstance(self._base, ArraySource) and not self._base._torch:
            return self._base._data[self._start:self._stop, start:stop]
        if isinstance(self._base, SlicedSource) and not self._base._one_d:
            obj = self._base._obj
            return np.asarray(obj[self._start:self._stop, start:stop])
        return self._base.read_block(start, stop)[self._start:self._stop]

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        return self._base.read_rows(self._start + start, self._start + stop)


def select_rows(X: Any, start: Any, stop: Any, name: str = "X") -> Any:
    """Snapshots ``start:stop`` of X (Python slice semantics; None keeps X as it is).

    Sources and everything :func:`as_source` takes become a :class:`Source` that reads only
    those rows; dask arrays and arrays in CUDA device memory are sliced (views)."""
    if start is None and stop is None:
        return X
    from .._validation import check_int

    for value, what in ((start, "start"), (stop, "stop")):
        if value is not None:
            check_int(value, what)
    if is_dask_array(X) or hasattr(X, "__cuda_array_interface__") or (
        _is_torch_tensor(X) and X.device.type != "cpu"
    ):
        n = int(X.shape[0])
        a, b, _ = slice(start, stop).indices(n)
        return X[a:max(a, b)]
    src = as_source(X, name)
    a, b, _ = slice(start, stop).indices(src.n_rows)
    return RowRangeSource(src, a, max(a, b))


def _layout_of(obj: Any) -> list[tuple[str, int, int]] | None:
    """Column ranges of named parameter groups, if ``obj`` describes its parameter layout.

    Understands a list of ``(name, start, stop)`` tuples or of dicts with ``name``, ``offset``
    and either ``size`` or ``shape``.
    """
    layout = getattr(obj, "layout", None)
    if not layout:
        return None
    out = []
    for entry in layout:
        if isinstance(entry, dict):
            start = int(entry["offset"])
            size = entry.get("size")
            if size is None:
                size = int(np.prod(entry.get("shape") or (1,)))
            out.append((str(entry["name"]), start, start + int(size)))
        else:
            out.append((str(entry[0]), int(entry[1]), int(entry[2])))
    return out


def _open_path(path: str, name: str) -> Source:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file or directory: {path!r}")
    if os.path.isfile(path) and path.endswith(".npy"):
        try:
            mm = np.load(path, mmap_mode="r")
        except ValueError as exc:
            raise ValueError(f"{name}: cannot memory-map {path!r}: {exc}") from exc
        return ArraySource(mm, name)
    if os.path.isdir(path):
        from ..io import store as _store

        if _store.is_store(path):
            return as_source(_store.open_store(path), name)
        if os.path.exists(os.path.join(path, "zarr.json")) or os.path.exists(
            os.path.join(path, ".zarray")
        ):
            try:
                import zarr
            except ImportError as exc:
                raise ImportError(f"{name}: reading {path!r} needs zarr: pip install zarr") from exc
            return SlicedSource(zarr.open_array(path, mode="r"), name)
        from ..io.checkpoints import CheckpointFolder

        return SlicedSource(CheckpointFolder(path), name)
    raise ValueError(
        f"{name}: don't know how to read {path!r} (expected a .npy file, a snapshot store, a "
        f"zarr array or a folder of checkpoints)"
    )


def as_source(data: Any, name: str = "X") -> Source:
    """Wrap ``data`` as a snapshot :class:`Source`.

    Accepts sources, numpy arrays/memmaps/array likes, torch CPU tensors, paths (``.npy``,
    store, zarr or checkpoint folder) and lazily sliceable arrays (zarr, h5py, stores).
    Dask arrays are handled by the analysis functions themselves (they run on the cluster).

    Parameters
    ----------
    data : Source, array_like, torch.Tensor or str or os.PathLike
        The snapshots, shape (T, D); a :class:`Source` is returned unchanged.
    name : str, default "X"
        The name used in error messages.

    Returns
    -------
    Source

    Raises
    ------
    TypeError
        ``data`` is a dask array.
    """
    if isinstance(data, Source):
        return data
    if isinstance(data, (str, os.PathLike)):
        return _open_path(os.fspath(data), name)
    if is_dask_array(data):
        raise TypeError(f"{name} is a dask array: use it through the analysis functions")
    as_mm = getattr(data, "as_memmap", None)
    if as_mm is not None and callable(as_mm):  # stores: zero-copy view of the committed data
        return ArraySource(as_mm(), name, layout=_layout_of(data))
    check_not_masked(data, name)
    if isinstance(data, np.ndarray) or _is_torch_tensor(data):
        return ArraySource(data, name)
    if hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__"):
        try:
            np.dtype(data.dtype)
        except TypeError:
            pass
        else:
            return SlicedSource(data, name)
    return ArraySource(data, name)


def _block_width(src: Source, memory_limit: int, n_blocks_hint: int) -> int:
    t, d = src.shape
    if src.zero_copy:
        return max(1, -(-d // n_blocks_hint))
    # in flight: the block being folded, the next one being read, and a converted copy
    per_column = 3 * t * 8
    width = memory_limit // per_column
    if width < 1:
        raise ValueError(
            f"memory_limit={memory_limit} bytes is too small for {src.name} with T={t} "
            f"snapshots: one column needs {per_column} bytes in flight"
        )
    return int(min(d, width))


def iter_blocks(
    src: Source,
    *,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    progress: Any = None,
    desc: str = "reading",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start_column, block)`` over all columns of ``src``, each block kernel-ready.

    Blocks of a zero-copy source are views (no memory). Other sources are read by a background
    thread one block ahead, so reading overlaps the kernel working on the current block; the
    width is chosen so that the blocks in flight fit in ``memory_limit`` bytes.
    """
    t, d = src.shape
    show = _want_progress(progress, src)
    width = _block_width(src, memory_limit, 64 if show else 1)
    starts = list(range(0, d, width))
    bar = _progress_bar(show, src, desc)
    try:
        if src.zero_copy or len(starts) == 1:
            for a in starts:
                b = min(d, a + width)
                yield a, to_kernel_dtype(src.read_block(a, b))
                if bar is not None:
                    bar.update(b - a)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fractaldiff-read") as pool:

            def read(a: int) -> np.ndarray:
                return to_kernel_dtype(src.read_block(a, min(d, a + width)))

            pending = pool.submit(read, starts[0])
            for i, a in enumerate(starts):
                block = pending.result()
                if i + 1 < len(starts):
                    pending = pool.submit(read, starts[i + 1])
                yield a, block
                del block
                if bar is not None:
                    bar.update(min(d, a + width) - a)
    finally:
        if bar is not None:
            bar.close()


def _want_progress(progress: Any, src: Source) -> bool:
    from .._validation import check_progress

    progress = check_progress(progress)
    if progress is None:  # auto: a terminal, and a pass long enough to be worth a bar
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty()) and src.nbytes >= 2**30
    return progress


def _progress_bar(show: bool, src: Source, desc: str):
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=src.n_cols, desc=desc, unit="col", unit_scale=True, leave=False)

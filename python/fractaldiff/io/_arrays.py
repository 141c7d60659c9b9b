"""Helpers the snapshot sources of :mod:`fractaldiff.io` share: argument checks, index splitting,
column blocks, positioned reads and writes."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "MAX_IO",
    "STORE_DTYPES",
    "check_block_range",
    "check_out",
    "check_store_dtype",
    "column_blocks",
    "index_int",
    "pread_all",
    "pread_into",
    "pwrite_all",
    "split_key",
]

STORE_DTYPES = ("float16", "float32", "float64")
MAX_IO = 1 << 30  # bytes per read/write syscall (Linux caps one call at ~2 GiB)


def check_store_dtype(dtype: Any) -> np.dtype:
    """``dtype`` as a native-order float16/32/64 numpy dtype, or TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {', '.join(STORE_DTYPES)}, got {dtype!r}") from None
    if dt.kind != "f" or dt.name not in STORE_DTYPES:
        raise TypeError(f"dtype must be one of {', '.join(STORE_DTYPES)}, got {dt}")
    return dt.newbyteorder("=")


def index_int(value: Any, name: str) -> int:
    """An integer argument (numpy integers included, bools refused)."""
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def check_block_range(start: Any, stop: Any, n_cols: int) -> tuple[int, int]:
    start = index_int(start, "start")
    stop = index_int(stop, "stop")
    if not 0 <= start <= stop <= n_cols:
        raise IndexError(
            f"column block [start={start}, stop={stop}) must satisfy 0 <= start <= stop <= "
            f"D={n_cols}"
        )
    return start, stop


def check_out(out: Any, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out has shape {out.shape}; this column block needs {shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; this column block needs {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    return out


def column_blocks(src: Any, n_params: int, width: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, src.column_block(start, stop))`` for consecutive blocks of ``width`` columns."""
    width = index_int(width, "width")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    for start in range(0, n_params, width):
        yield start, src.column_block(start, min(start + width, n_params))


def split_key(key: Any) -> tuple[Any, Any]:
    """Split a numpy-style 2-D index into (row key, column key)."""
    if not isinstance(key, tuple):
        return key, slice(None)
    items = list(key)
    if any(k is None for k in items):
        raise IndexError("np.newaxis/None is not supported when indexing a snapshot source")
    n_ell = sum(1 for k in items if k is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ell == 1:
        i = next(i for i, k in enumerate(items) if k is Ellipsis)
        fill = [slice(None)] * max(0, 2 - (len(items) - 1))
        items = items[:i] + fill + items[i + 1 :]
    if len(items) > 2:
        raise IndexError(
            f"too many indices: a snapshot source is 2-D (T, D) but {len(items)} were given"
        )
    while len(items) < 2:
        items.append(slice(None))
    return items[0], items[1]


def pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` (a buffer) at ``offset``, looping over short writes."""
    view = memoryview(data).cast("B")
    done = 0
    total = len(view)
    while done < total:
        n = os.pwrite(fd, view[done : done + MAX_IO], offset + done)
        if n <= 0:  # pragma: no cover - the OS raises instead
            raise OSError(f"short write at offset {offset + done}")
        done += n


def pread_all(fd: int, size: int, offset: int) -> bytes:
    """Read up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
    parts = []
    done = 0
    while done < size:
        chunk = os.pread(fd, min(size - done, MAX_IO), offset + done)
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def pread_into(fd: int, dst: Any, offset: int) -> int:
    """Fill the writable buffer ``dst`` from ``offset``; returns the bytes read (fewer only at
    end of file)."""
    view = memoryview(dst).cast("B")
    done = 0
    total = len(view)
    while done < total:
        n = os.preadv(fd, [view[done : done + MAX_IO]], offset + done)
        if n <= 0:
            break
        done += n
    return done

"""Where snapshot data comes from.

A *source* is a 2-D snapshot matrix W[t, d] (T snapshots in time, D parameters) that yields
**column blocks**: all T rows of a range of columns, as native-endian float32/float64 numpy arrays
the compiled kernels read without copying. Kernels fold each block into a small accumulator and
the accumulators merge, so every analysis over parameters is the same code whatever the source.

Supported here: numpy arrays and memory maps (any strides, byte order and numeric dtype), array
likes that ``numpy.asarray`` understands, and torch CPU tensors. A block is a zero-copy view when
the data already is native float32/float64; otherwise (integers, booleans, float16, big-endian
data, odd strides) it is converted one block of columns at a time, so memory stays bounded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["ArraySource", "as_source", "DEFAULT_BLOCK_BYTES"]

#: Largest converted block, in bytes (only used when a block cannot be a zero-copy view).
DEFAULT_BLOCK_BYTES = 64 * 2**20


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _kernel_ready(a: np.ndarray) -> bool:
    """True when the compiled kernels can read ``a`` in place."""
    dt = a.dtype
    return (
        dt.kind == "f"
        and dt.itemsize in (4, 8)
        and dt.isnative
        and all(s % dt.itemsize == 0 for s in a.strides)
    )


def _check_dtype(dtype: np.dtype, name: str) -> None:
    kind = dtype.kind
    if kind == "c":
        raise TypeError(
            f"{name} has complex dtype {dtype}; snapshots must be real (pass {name}.real or "
            f"a stacked real view)"
        )
    if kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")


class ArraySource:
    """A snapshot matrix held in memory or memory-mapped.

    Parameters
    ----------
    data : numpy.ndarray, numpy.memmap, array_like or torch.Tensor (CPU)
        Shape ``(T,)`` (one coordinate) or ``(T, D)``. Real numeric dtype.
    name : str
        Argument name used in error messages.

    Notes
    -----
    Never copies the whole array: float32/float64 data is read in place; anything else is
    converted one column block (at most ``block_bytes``) at a time.
    """

    def __init__(self, data: Any, name: str = "X") -> None:
        self.name = name
        self._torch = _is_torch_tensor(data)
        if self._torch:
            if data.device.type != "cpu":
                raise ValueError(
                    f"{name} is a torch tensor on {data.device}; this function reads CPU "
                    f"memory: pass {name}.cpu()"
                )
            data = data.detach()
            tdt = str(data.dtype).replace("torch.", "")
            if data.is_complex():
                raise TypeError(f"{name} has complex dtype torch.{tdt}; snapshots must be real")
            if tdt in ("float32", "float64"):
                data = data.numpy()
                self._torch = False
            else:
                self._torch_dtype = tdt
        if not self._torch:
            if not isinstance(data, np.ndarray):
                try:
                    data = np.asarray(data)
                except (ValueError, TypeError) as exc:
                    raise TypeError(
                        f"{name} could not be converted to a numeric array: {exc}"
                    ) from exc
            _check_dtype(data.dtype, name)
        ndim = data.ndim if not self._torch else data.dim()
        if ndim == 1:
            data = data.reshape(-1, 1) if not self._torch else data.unsqueeze(1)
        elif ndim != 2:
            shape = tuple(data.shape)
            raise ValueError(
                f"{name} must be 1-D (T,) or 2-D (T, D) snapshots x parameters; got a {ndim}-D "
                f"array of shape {shape}"
            )
        self._data = data
        self.shape = (int(data.shape[0]), int(data.shape[1]))

    @property
    def n_rows(self) -> int:
        """Number of snapshots T."""
        return self.shape[0]

    @property
    def n_cols(self) -> int:
        """Number of parameters D."""
        return self.shape[1]

    def require(self, *, min_rows: int = 1, what: str = "this analysis") -> None:
        """Raise if there are fewer than ``min_rows`` snapshots or no parameters."""
        t, d = self.shape
        if t < min_rows:
            raise ValueError(
                f"{self.name} has T={t} snapshot(s); {what} needs at least {min_rows}"
            )
        if d == 0:
            raise ValueError(f"{self.name} has D=0 parameters (shape {self.shape})")

    def _block(self, start: int, stop: int) -> np.ndarray:
        if self._torch:
            torch = sys.modules["torch"]
            return self._data[:, start:stop].to(torch.float64).numpy()
        view = self._data[:, start:stop]
        if _kernel_ready(view):
            return view
        kind, size = view.dtype.kind, view.dtype.itemsize
        target = np.float32 if (kind == "f" and size <= 4) else np.float64
        return np.ascontiguousarray(view, dtype=target)

    def column_blocks(self, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_column, block)`` pairs covering all columns in order.

        ``block`` is a ``(T, B)`` native float32/float64 array. In-memory float32/float64 data
        comes as one zero-copy block; other data in converted blocks of at most ``block_bytes``.
        """
        t, d = self.shape
        if not self._torch and _kernel_ready(self._data):
            yield 0, self._data
            return
        width = max(1, int(block_bytes) // (8 * max(t, 1)))
        for start in range(0, d, width):
            stop = min(d, start + width)
            yield start, self._block(start, stop)

    def row_blocks(self, block_bytes: int = DEFAULT_BLOCK_BYTES) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start_row, rows)`` pairs of float arrays covering all rows in order."""
        t, d = self.shape
        height = max(1, int(block_bytes) // (8 * max(d, 1)))
        for start in range(0, t, height):
            stop = min(t, start + height)
            if self._torch:
                torch = sys.modules["torch"]
                yield start, self._data[start:stop].to(torch.float64).numpy()
            else:
                yield start, np.asarray(self._data[start:stop])

    def first_nonfinite(self) -> tuple[int, int, float] | None:
        """Position ``(t, d, value)`` of the first NaN/Inf in row-major order, or None."""
        if not self._torch and self._data.dtype.kind in "iub":
            return None
        for start, rows in self.row_blocks():
            if rows.dtype.kind not in "fc":
                continue
            bad = ~np.isfinite(rows)
            if bad.any():
                t, d = np.argwhere(bad)[0]
                return start + int(t), int(d), float(rows[t, d])
        return None


def as_source(data: Any, name: str = "X") -> ArraySource:
    """Wrap ``data`` as a snapshot source (a no-op for objects that already are sources)."""
    if isinstance(data, ArraySource):
        return data
    return ArraySource(data, name=name)

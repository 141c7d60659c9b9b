"""CUDA execution of the folds: device arrays, GPU-backed accumulators, host streaming.

The GPU computes exactly the accumulators of the CPU kernels: a :class:`GpuAccumulator` wraps
an accumulator, folds column blocks on the device with the ``_core`` class its ``gpu_kind``
names and, when flushed, adds the device sums into the accumulator's buffers. So results are
finished by the same code, and CPU and GPU partial results merge.

Inputs:

* device arrays, read in place (zero-copy): torch CUDA tensors (through ``data_ptr()`` and
  ``stride()``) and any object with ``__cuda_array_interface__`` (CuPy, Numba, ...), of any
  strides, float32 or float64 (torch tensors of other real dtypes are converted one column block
  at a time, within ``memory_limit``);
* host sources (numpy arrays and memmaps, torch CPU tensors, stores, zarr/HDF5, ...): column
  blocks from :func:`fractaldiff.engine.sources.iter_blocks` are streamed to the device through two
  pinned staging buffers and two CUDA streams, the copy of one sub-block overlapping the kernel of
  the previous one. Memory that is already pinned (``tensor.pin_memory()``) is copied straight
  from the source, without staging.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .. import _core

__all__ = [
    "DeviceMatrix",
    "GpuAccumulator",
    "as_device_matrix",
    "choose_device",
    "cuda_usable",
    "gpu_column_ranges",
    "gpu_input",
    "is_device_array",
    "resolve_device",
    "run_gpu",
]


def cuda_usable() -> tuple[bool, str]:
    """(True, "") when CUDA kernels are built in and a device is visible, else (False, why)."""
    if not _core.cuda_built():
        return False, (
            "fractaldiff was built without CUDA (rebuild with FRACTALDIFF_CUDA=ON and nvcc on PATH)"
        )
    if _core.cuda_device_count() == 0:
        return False, "no CUDA device is visible (no driver, no GPU, or CUDA_VISIBLE_DEVICES)"
    return True, ""


def _torch_cuda_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.device.type == "cuda"


def is_device_array(x: Any) -> bool:
    """True for data in CUDA device memory (a torch CUDA tensor or a __cuda_array_interface__)."""
    if _torch_cuda_tensor(x):
        return True
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # some objects raise from the property itself
        return False


def resolve_device(device: str, X: Any, func: str) -> tuple[str, int]:
    """Turn a validated ``device=`` ("auto", "cpu", "cuda", "cuda:N") into ("cpu"|"cuda", index).

    "auto" runs where the data is: on the GPU for device arrays, else on the CPU.
    """
    on_gpu = is_device_array(X)
    if device == "auto":
        device = "cuda" if on_gpu else "cpu"
    if device == "cpu":
        if on_gpu:
            raise ValueError(
                f"{func}(device='cpu'): X is in CUDA device memory; pass device='cuda' (or "
                f"'auto') to compute on the GPU, or move it to the host first (X.cpu())"
            )
        return "cpu", 0
    ok, why = cuda_usable()
    if not ok:
        raise RuntimeError(f"{func}(device='cuda'): {why}")
    index = int(device.split(":", 1)[1]) if ":" in device else None
    if on_gpu:
        dev = _device_index_of(X)
        if index is not None and index != dev:
            raise ValueError(f"{func}(device={device!r}): X lives on cuda:{dev}")
        index = dev
    if index is None:
        index = 0
    n = _core.cuda_device_count()
    if not 0 <= index < n:
        raise ValueError(f"{func}(device='cuda:{index}'): only {n} CUDA device(s) are visible")
    return "cuda", index


def choose_device(device: str, X: Any, func: str) -> tuple[str, int]:
    """Where an analysis runs, by the convention of :func:`fractaldiff.msd`: a validated
    ``device=`` and X give ("cpu", 0) or ("cuda", index).

    "auto" means the GPU for device arrays and the CPU otherwise; dask arrays always run on the
    workers' CPUs (``device="cuda"`` with a dask array raises ValueError).
    """
    from .sources import is_dask_array

    if is_dask_array(X):
        if device.startswith("cuda"):
            raise ValueError(f"{func}(device={device!r}) does not take dask arrays; their "
                             f"chunks are computed on the workers' CPUs")
        return "cpu", 0
    if device != "cpu" or is_device_array(X):
        return resolve_device(device, X, func)
    return "cpu", 0


def _device_index_of(X: Any) -> int:
    if _torch_cuda_tensor(X):
        return int(X.device.index or 0)
    dev = getattr(X, "device", None)
    idx = getattr(dev, "id", None)  # CuPy
    return int(idx) if isinstance(idx, (int, np.integer)) else 0


class DeviceMatrix:
    """A (T, D) matrix in CUDA device memory: pointer, dtype, shape, strides in elements.

    ``owner`` keeps the memory alive. Column slices ``m[:, a:b]`` are views (pointer arithmetic).
    """

    def __init__(self, ptr, dtype, shape, strides, device, owner, name="X", temporary=False):
        #: True for device copies made here (conversions, gathers): the kernels that read them
        #: must finish before they are dropped (torch may reuse the memory at once)
        self.temporary = temporary
        self.ptr = int(ptr)
        self.dtype = np.dtype(dtype)
        self.shape = (int(shape[0]), int(shape[1]))
        self.strides = (int(strides[0]), int(strides[1]))
        self.device = int(device)
        self.owner = owner
        self.name = name

    @property
    def n_rows(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)):
            raise TypeError("DeviceMatrix supports only [:, columns] indexing")
        cols = key[1]
        if isinstance(cols, slice):
            a, b, step = cols.indices(self.shape[1])
            if step != 1:
                raise TypeError("DeviceMatrix column slices must have step 1")
            b = max(a, b)
            off = a * self.strides[1] * self.dtype.itemsize
            return DeviceMatrix(self.ptr + off, self.dtype, (self.shape[0], b - a), self.strides,
                                self.device, self.owner, self.name, self.temporary)
        return self.take(np.asarray(cols))

    def take(self, cols: np.ndarray) -> DeviceMatrix:
        """A contiguous device copy of some columns (torch tensors only)."""
        if not _torch_cuda_tensor(self.owner):
            raise TypeError("non-contiguous column groups on the GPU need a torch CUDA tensor")
        torch = sys.modules["torch"]
        full = self.owner if self.owner.dim() == 2 else self.owner.unsqueeze(1)
        base = self.ptr - full.data_ptr()
        # locate this view's first column inside the owner
        c0 = base // (self.dtype.itemsize * self.strides[1]) if self.strides[1] else 0
        idx = torch.as_tensor(np.asarray(cols) + c0, device=full.device)
        sub = full.index_select(1, idx).contiguous()
        out = as_device_matrix(sub, self.name)
        out.temporary = True
        return out

    def fold_into(self, fold) -> None:
        fold.fold_device(self.ptr, self.dtype.name, self.shape[0], self.shape[1],
                         self.strides[0], self.strides[1])


_CAI_TYPES = {"<f4": np.float32, "<f8": np.float64, "=f4": np.float32, "=f8": np.float64}


def as_device_matrix(X: Any, name: str = "X") -> DeviceMatrix:
    """View a torch CUDA tensor or __cuda_array_interface__ object as a DeviceMatrix (no copy).

    Torch tensors of real dtypes other than float32/float64 are returned as they are (the caller
    converts them block by block); see :func:`device_blocks`.
    """
    if _torch_cuda_tensor(X):
        t = X.detach()
        if t.is_complex():
            raise TypeError(f"{name} has complex dtype {t.dtype}; snapshots must be real")
        if t.dim() not in (1, 2):
            raise ValueError(f"{name} must be 1-D (T,) or 2-D (T, D); got a {t.dim()}-D tensor "
                             f"of shape {tuple(t.shape)}")
        if t.dim() == 1:
            t = t.unsqueeze(1)
        dt = {"torch.float32": np.float32, "torch.float64": np.float64}.get(str(t.dtype))
        if dt is None:
            return DeviceMatrix(0, np.float64, t.shape, t.stride(), t.device.index or 0, t, name)
        return DeviceMatrix(t.data_ptr(), dt, t.shape, t.stride(), t.device.index or 0, t, name)
    cai = X.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be 1-D (T,) or 2-D (T, D); got shape {shape}")
    typestr = cai["typestr"]
    if typestr not in _CAI_TYPES:
        raise TypeError(f"{name} has device dtype {typestr!r}; the GPU kernels read float32 or "
                        f"float64 (convert it on the device, e.g. X.astype('float32'))")
    dt = np.dtype(_CAI_TYPES[typestr])
    strides = cai.get("strides")
    if strides is None:  # C-contiguous
        strides = tuple(int(np.prod(shape[i + 1:])) * dt.itemsize for i in range(len(shape)))
    if any(s % dt.itemsize for s in strides):
        raise ValueError(f"{name} has strides {strides} that are not a multiple of its item size")
    st = tuple(s // dt.itemsize for s in strides)
    if len(shape) == 1:
        shape, st = (shape[0], 1), (st[0], 1)
    ptr = cai["data"][0] or 0
    return DeviceMatrix(ptr, dt, shape, st, _device_index_of(X), X, name)


def device_blocks(dm: DeviceMatrix, memory_limit: int):
    """Yield (start, DeviceMatrix) column blocks: the whole matrix when it is float32/float64,
    else converted torch blocks (float32 for 16-bit floats, float64 otherwise) that fit in
    ``memory_limit`` bytes."""
    if dm.ptr != 0:
        yield 0, dm
        return
    torch = sys.modules["torch"]
    t = dm.owner
    if t.dtype in (torch.float16, torch.bfloat16):
        target, item = torch.float32, 4
    elif t.dtype == torch.bool or not t.dtype.is_floating_point:
        target, item = torch.float64, 8
    else:
        target, item = torch.float64, 8
    T, D = t.shape
    width = max(1, min(D, memory_limit // (4 * max(T, 1) * item)))
    for a in range(0, D, width):
        blk = as_device_matrix(t[:, a:a + width].to(target).contiguous(), dm.name)
        blk.temporary = True
        yield a, blk


def device_first_nonfinite(dm: DeviceMatrix):
    """(t, d, value) of the first NaN/Inf in row-major order, for torch tensors; else None."""
    t = dm.owner
    if not _torch_cuda_tensor(t) or not t.dtype.is_floating_point:
        return None
    torch = sys.modules["torch"]
    if t.dim() == 1:
        t = t.unsqueeze(1)
    rows = max(1, (64 << 20) // max(1, t.shape[1]))
    for a in range(0, t.shape[0], rows):
        bad = ~torch.isfinite(t[a:a + rows])
        if bool(bad.any()):
            i, j = (int(v) for v in torch.nonzero(bad)[0])
            return a + i, j, float(t[a + i, j])
    return None


class GpuAccumulator:
    """An :class:`~fractaldiff.engine.accumulators.Accumulator` whose folds run on a CUDA
    device: one ``_core`` fold of its ``gpu_kind`` per entry of its ``gpu_specs()``;
    :meth:`flush` adds the device sums into the accumulator's buffers."""

    def __init__(self, acc, device: int, memory_limit: int) -> None:
        self.acc = acc
        specs = acc.gpu_specs()
        per_fold = max(2**20, memory_limit // len(specs))
        make = getattr(_core, acc.gpu_kind)
        self.folds = [make(device=device, memory_limit=per_fold, **spec) for spec in specs]

    def fold(self, block, start: int) -> None:
        """Fold a host numpy block or a DeviceMatrix; errors surface at :meth:`flush`."""
        for i, fold in enumerate(self.folds):
            self.acc.gpu_prepare(i, fold, start, block.shape[1])
            fold_block(fold, block)
        self.acc.n_cols += block.shape[1]

    def flush(self) -> int:
        """Wait for the device, add its sums into the accumulator; returns a status code."""
        status = _core.STATUS_OK
        for i, fold in enumerate(self.folds):
            st = self.acc.gpu_collect(i, fold)
            status = status if status != _core.STATUS_OK else st
        return status


def fold_block(fold, block) -> None:
    """Fold a host numpy block (streamed through the pinned staging buffers) or a DeviceMatrix
    (read in place) into a ``_core`` GPU fold."""
    if isinstance(block, DeviceMatrix):
        block.fold_into(fold)
        if block.temporary:
            fold.synchronize()
    else:
        fold.fold_host(block)


def gpu_input(X: Any, limit: int, progress: Any, func: str, min_rows: int, what: str):
    """The column blocks a GPU driver folds, and how to find a bad value.

    Device arrays are read in place (:class:`DeviceMatrix` blocks; torch tensors of other real
    dtypes are converted block by block within ``limit`` bytes); host sources stream as numpy
    blocks from :func:`fractaldiff.engine.sources.iter_blocks`, which the folds' ``fold_host``
    stage through pinned buffers.

    Returns
    -------
    (T, D, blocks, locate, src)
        ``blocks()`` yields ``(start, block)`` afresh on every call; ``locate()`` finds the first
        NaN/Inf as ``(t, d, value)`` or None; ``src`` is X itself for device data, else the
        host Source.
    """
    from .sources import as_source, iter_blocks

    if is_device_array(X):
        dm = as_device_matrix(X, "X")
        t, d = dm.shape
        if t < min_rows:
            raise ValueError(f"X has T={t} snapshot(s); {what} needs at least {min_rows}")
        if d == 0:
            raise ValueError(f"X has D=0 parameters (shape {dm.shape})")
        return t, d, (lambda: device_blocks(dm, limit)), (lambda: device_first_nonfinite(dm)), X
    src = as_source(X, "X")
    src.require(min_rows=min_rows, what=what)

    def blocks():
        return iter_blocks(src, memory_limit=limit, progress=progress, desc=func)

    return src.n_rows, src.n_cols, blocks, src.first_nonfinite, src


def run_gpu(X: Any, make, options, device: int, *, min_rows: int, what: str, groups: Any = None):
    """The GPU driver of :func:`fractaldiff.engine.folds.run` (same arguments and result):
    device arrays are read in place, host sources stream in column blocks; each group atom's
    accumulator gets its own device folds, flushed into it at the end."""
    from .folds import KernelStatus, kernel_error
    from .groups import fold_atoms, group_results, resolve_groups

    func, limit = options.func, options.memory_limit
    t, d, blocks, locate, src = gpu_input(X, limit, options.progress, func, min_rows, what)
    proto = make(t)
    grp = resolve_groups(groups, src, d)
    # each GPU accumulator (one per group atom) holds its own staging buffers
    per_acc = max(2**20, limit // (1 if grp is None else len(grp) + 1))
    gaccs: dict[bytes, GpuAccumulator] = {}

    class _Proto:  # fold_atoms creates one GPU accumulator per atom from this
        column_positions = proto.column_positions

        @staticmethod
        def empty():
            return GpuAccumulator(proto.empty(), device, per_acc)

    def fold(gacc, block, start):
        gacc.fold(block, start)

    try:
        for start, block in blocks():
            fold_atoms(block, start, _Proto, grp, fold, accs=gaccs)
    except KernelStatus as exc:
        raise kernel_error(exc.status, func, locate, "X") from None
    status = _core.STATUS_OK
    for gacc in gaccs.values():
        st = gacc.flush()
        status = status if status != _core.STATUS_OK else st
    if status != _core.STATUS_OK:
        raise kernel_error(status, func, locate, "X")
    return group_results({key: g.acc for key, g in gaccs.items()}, proto, grp)


def gpu_column_ranges(X: Any, device: int, options) -> tuple[Any, int, int, np.ndarray,
                                                              np.ndarray]:
    """Per-column min and max for box counting: ``(X, T, D, mins, maxs)``.

    Device arrays are reduced on the GPU (``_core.cuda_box_minmax``); host sources by the CPU
    kernel while they are read (the GPU would only add a copy).
    """
    from .folds import kernel_error

    limit = options.memory_limit
    t, d, blocks, locate, src = gpu_input(X, limit, options.progress, options.func, 1,
                                          "box counting")
    mins, maxs = np.empty(d), np.empty(d)
    for start, block in blocks():
        b = block.shape[1]
        lo, hi = mins[start:start + b], maxs[start:start + b]
        if isinstance(block, DeviceMatrix):
            status = _core.cuda_box_minmax(block.ptr, block.dtype.name, block.shape[0], b,
                                           block.strides[0], block.strides[1], device, lo, hi,
                                           limit)
        else:
            status = _core.box_minmax(block, lo, hi, options.n_threads)
        if status != _core.STATUS_OK:
            raise kernel_error(status, options.func, locate, "X")
    return src, t, d, mins, maxs

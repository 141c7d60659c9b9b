"""Turn bad input into clear exceptions before the compiled kernels see it.

Every check names the argument and says what is wrong with it, in one style: ``"name must be
..., got ..."`` (optionally prefixed by the function: ``"func: name must be ..."``), so users
never see a crash or a silent wrong answer. :class:`AnalysisOptions` is the one place where the
options shared by every analysis over parameters (``n_threads``, ``device``, ``memory_limit``,
``progress``) are checked, and :data:`DOCS` holds their shared numpydoc paragraphs, which
:func:`shared_docs` puts into docstrings in place of ``<<name>>`` lines.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AnalysisOptions",
    "DEFAULT_MEMORY_LIMIT",
    "DOCS",
    "shared_docs",
    "as_float_vector",
    "as_real_array",
    "check_finite_vector",
    "check_number",
    "check_open_fraction",
    "check_progress",
    "check_real_dtype",
    "check_snapshot_ndim",
    "check_int_range",
    "check_positive",
    "check_probability",
    "format_number",
    "index_text",
    "require_finite",
    "check_fraction",
    "check_device",
    "check_int",
    "check_memory_limit",
    "check_lags",
    "check_n_threads",
    "check_ref",
    "check_real",
    "warn_at_caller",
]

_MAX_THREADS = 4096
#: Default bound on the working set of one pass over a source, in bytes.
DEFAULT_MEMORY_LIMIT = 512 * 2**20


def _is_int(value: Any) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, or raise naming ``name``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_n_threads(n_threads: Any) -> int:
    """Validate ``n_threads``: None (all cores the kernels may use) or an int >= 1.

    Returns 0 for "default", which the compiled kernels read as "use the OpenMP default".
    """
    if n_threads is None:
        return 0
    n = check_int(n_threads, "n_threads", minimum=1)
    if n > _MAX_THREADS:
        raise ValueError(
            f"n_threads={n} is more than {_MAX_THREADS}; this machine has {os.cpu_count()} CPUs"
        )
    return n


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def check_memory_limit(memory_limit: Any) -> int:
    """Validate ``memory_limit=``: None (the default, 512 MiB), bytes as an int, or a string
    such as ``"256MB"``, ``"1.5GiB"``. Returns bytes."""
    if memory_limit is None:
        return DEFAULT_MEMORY_LIMIT
    if isinstance(memory_limit, str):
        text = memory_limit.strip().upper().replace(" ", "")
        num = text.rstrip("KMGTIB")
        unit = text[len(num):]
        try:
            value = float(num) * _UNITS[unit]
        except (ValueError, KeyError):
            raise ValueError(
                f"memory_limit={memory_limit!r} is not a size; use bytes or e.g. '512MB', '2GiB'"
            ) from None
    elif _is_int(memory_limit) or isinstance(memory_limit, float):
        value = float(memory_limit)
    else:
        raise TypeError(f"memory_limit must be a number of bytes or a string like '512MB', "
                        f"got {type(memory_limit).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"memory_limit must be a finite number of bytes (at least 1 MiB), got "
                         f"{memory_limit!r}")
    if not value >= 2**20:
        raise ValueError(f"memory_limit must be at least 1 MiB, got {memory_limit!r}")
    return int(value)


def check_progress(progress: Any) -> bool | None:
    """Validate ``progress=``: True, False or None (automatic: a terminal and >= 1 GiB of data).

    Anything else (a string such as ``"no"``, a number) raises TypeError rather than being read
    by its truth value."""
    if progress is None or isinstance(progress, (bool, np.bool_)):
        return None if progress is None else bool(progress)
    raise TypeError(f"progress must be True, False or None, got {type(progress).__name__} "
                    f"{progress!r}")


def check_device(device: Any, func: str) -> str:
    """Validate a ``device=`` option: "auto", "cpu", "cuda" or "cuda:N"; returns it lower-cased.

    Whether CUDA is usable is checked where the work is dispatched (fractaldiff.engine.gpu)."""
    text = device.strip().lower() if isinstance(device, str) else None
    ok = text in ("auto", "cpu", "cuda")
    if text is not None and text.startswith("cuda:"):
        ok = text[5:].isdigit()
    if not ok:
        raise ValueError(
            f"{func}: device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        )
    return text


def check_fraction(value: Any, name: str, *, low_open: bool = True,
                   high_open: bool = False) -> float:
    """Validate a number in the unit interval; ``low_open``/``high_open`` exclude 0 / 1.

    Raises TypeError for a non-number (bools included) and ValueError, naming ``name`` and the
    interval, outside it (NaN included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok):
        bounds = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {bounds}, got {value}")
    return value


def check_ref(ref: Any, n_rows: int) -> int:
    """Validate a reference snapshot index (negative values count from the end, as in numpy)."""
    ref = check_int(ref, "ref")
    if not -n_rows <= ref < n_rows:
        raise IndexError(f"ref={ref} is out of range for X with T={n_rows} snapshots")
    return ref % n_rows


def check_lags(lags: Any, n_rows: int) -> np.ndarray:
    """Validate ``lags=``: a 1-D array of distinct integers in [0, T)."""
    arr = np.asarray(lags)
    if arr.ndim != 1:
        raise ValueError(f"lags must be a 1-D array of integers, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        what = "a boolean array" if arr.dtype.kind == "b" else f"dtype {arr.dtype}"
        raise TypeError(f"lags must be integers, got {what}")
    if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"lags holds values too large for int64: {arr.max()}")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero((arr < 0) | (arr >= n_rows))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"lags[{i}] = {int(arr[i])} is out of range: lags must lie in [0, T-1] = "
            f"[0, {n_rows - 1}]"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"lags contains duplicates: {uniq[counts > 1][:5].tolist()}")
    return np.ascontiguousarray(arr)


def as_real_array(value: Any, name: str, func: str) -> np.ndarray:
    """``value`` as a float64 array, or TypeError naming ``name``."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(
            f"{func}: {name} must be an array of real numbers, got {type(value).__name__}"
        )
    try:
        arr = np.asarray(value)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"{func}: {name} is not a rectangular array ({exc})") from exc
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{func}: {name} must contain real numbers; its objects cannot be "
                f"converted to float ({exc})"
            ) from exc
    elif arr.dtype.kind not in "iuf":
        raise TypeError(f"{func}: {name} must be an array of real numbers, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def index_text(index: tuple[int, ...]) -> str:
    return ", ".join(str(int(i)) for i in index)


def require_finite(arr: np.ndarray, name: str, func: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        index = tuple(np.argwhere(bad)[0])
        raise ValueError(
            f"{func}: {name} must be finite; {name}[{index_text(index)}] = {arr[index]}"
        )


def check_probability(value: Any, name: str, func: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{func}: {name} must be a number in (0, 1), got {value!r}") from exc
    if not 0.0 < number < 1.0:
        raise ValueError(f"{func}: {name} must be in (0, 1), got {value!r}")
    return number


def check_positive(value: Any, name: str, func: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{func}: {name} must be {kind} > 0, got {value!r}")
    if integer and float(value) != int(value):
        raise TypeError(f"{func}: {name} must be an integer, got {value!r}")
    if not (math.isfinite(float(value)) and value > 0):
        raise ValueError(f"{func}: {name} must be finite and > 0, got {value!r}")
    return float(value)


def check_int_range(value: Any, name: str, func: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{func}: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_real(value: Any, name: str, func: str) -> float:
    """A finite real number (not a bool) as a float, or TypeError/ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{func}: {name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{func}: {name} must be finite, got {value!r}")
    return number


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside the fractaldiff package.

    A fixed ``stacklevel`` points at the wrong line as soon as a public function is called
    through another one (fit_msd -> fit_exponent); this walks the stack instead."""
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the frame that called warn_at_caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def format_number(value: float) -> str:
    """Four significant digits, or str() of a non-finite value."""
    if value is None or not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def check_number(value: Any, name: str, *, minimum: float | None = None,
                 positive: bool = False, strict: bool = False) -> float:
    """``value`` as a finite float (bools refused).

    ``positive`` requires > 0; ``minimum`` requires >= minimum (> minimum with ``strict``)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        kind = "a positive number" if positive else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    value = float(value)
    if positive:
        minimum, strict = 0.0, True
    if not math.isfinite(value) or (minimum is not None and (
            value < minimum or (strict and value == minimum))):
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {value}")
    return value


def check_open_fraction(value: Any, name: str) -> float:
    """A number strictly between 0 and 1 (a test fraction, a probability)."""
    return check_fraction(value, name, low_open=True, high_open=True)


def check_finite_vector(row: np.ndarray, name: str, func: str) -> None:
    """Raise ValueError naming the first NaN/Inf of a 1-D array."""
    bad = ~np.isfinite(row)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{func}: {name} must be finite, got the non-finite value {row[i]} at "
                         f"index {i}")


@dataclass(frozen=True)
class AnalysisOptions:
    """The options every analysis over parameters takes, validated once.

    Attributes
    ----------
    func : str
        The public function's name (for messages).
    n_threads : int
        0 for the OpenMP default, else the thread count.
    device : str
        "auto", "cpu", "cuda" or "cuda:N".
    memory_limit : int
        Bytes.
    progress : bool or None
        None: automatic.
    """

    func: str
    n_threads: int = 0
    device: str = "auto"
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    progress: bool | None = None

    @classmethod
    def check(cls, func: str, *, n_threads: Any = None, device: Any = "auto",
              memory_limit: Any = None, progress: Any = None) -> AnalysisOptions:
        """Validate the four options of ``func`` (each raises naming the argument)."""
        return cls(func, check_n_threads(n_threads), check_device(device, func),
                   check_memory_limit(memory_limit), check_progress(progress))


#: Shared numpydoc paragraphs of the analysis options (see :func:`shared_docs`).
DOCS = {
    "n_threads": """\
n_threads : int, optional
    Threads for the compiled kernels (default: all the OpenMP runtime offers; 1 per task on
    dask).""",
    "memory_limit": """\
memory_limit : int or str, optional
    Bound on the working set, in bytes or as ``"256MB"``/``"2GiB"`` (default 512 MiB). Data
    read from disk streams through in column blocks that fit; memory-mapped float data is read
    in place and needs none. On the GPU it bounds the device memory and the pinned staging
    buffers.""",
    "progress": """\
progress : bool, optional
    Show a progress bar (default None: when stderr is a terminal and the data is >= 1 GiB).""",
    "device": """\
device : {"auto", "cpu", "cuda", "cuda:N"}, optional
    Where to compute. "auto" (default) computes where the data is: on the GPU for torch CUDA
    tensors and ``__cuda_array_interface__`` arrays (read in place, any strides), else on the
    CPU. "cuda" also streams host data (numpy, memmaps, stores, pinned tensors) to the GPU in
    column blocks, through pinned double-buffered copies that overlap the kernels. GPU results
    agree with the CPU ones (same accumulators, same finish).""",
    "groups": """\
groups : mapping, "parameters", "modules" or "layers", optional
    Parameter groups ``{name: slice | indices | boolean mask}`` (they may overlap), or a
    grouping of the parameter layout the source records (a snapshot store or a checkpoint
    folder): ``"parameters"`` one group per recorded tensor (e.g. ``"fc1.weight"``),
    ``"modules"`` one group per module (the tensor names up to their last dot: ``"fc1"``
    holds ``"fc1.weight"`` and ``"fc1.bias"``); ``"layers"`` is the same as ``"parameters"``.
    The result is then a dict with one entry per group and one for the whole (key
    ``"total"``), all from one pass over the data.""",
    "start_stop": """\
start, stop : int, optional
    Use only snapshots ``start:stop`` (as a Python slice, negative values count from the end);
    the snapshots outside the range are never read.""",
}


_DOC_SLOT = re.compile(r"^([ \t]*)<<(\w+)>>[ \t]*$", re.M)


def shared_docs(obj: Any) -> Any:
    """Decorator: replace each line ``<<name>>`` of a docstring by the paragraph ``DOCS[name]``,
    indented as the placeholder is."""
    doc = getattr(obj, "__doc__", None)
    if doc:
        obj.__doc__ = _DOC_SLOT.sub(lambda m: textwrap.indent(DOCS[m.group(2)], m.group(1)), doc)
    return obj


def as_float_vector(x: Any, n_params: int, name: str = "x") -> np.ndarray:
    """A 1-D floating-point array of length ``n_params`` from numpy or torch, without copies
    (torch tensors of dtypes other than float16/32/64 become float32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu()
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floating-point values, got {x.dtype}")
        if str(x.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != n_params:
        raise ValueError(
            f"{name} must be a 1-D vector of n_params={n_params} values, got shape {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point values, got dtype {arr.dtype}")
    return arr


def check_real_dtype(dtype: np.dtype, name: str) -> None:
    """Snapshots must hold real numbers (float, int, unsigned, bool)."""
    kind = dtype.kind
    if kind == "c":
        raise TypeError(
            f"{name} must hold real numbers, got complex dtype {dtype} (pass {name}.real or a "
            f"stacked real view)"
        )
    if kind not in "fiub":
        raise TypeError(f"{name} must hold real numbers, got dtype {dtype}")


def check_snapshot_ndim(ndim: int, shape: tuple, name: str) -> None:
    """A snapshot matrix is 1-D (T,) or 2-D (T, D)."""
    if ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (T,) or 2-D (T, D) snapshots x parameters, got a {ndim}-D "
            f"array of shape {tuple(shape)}"
        )

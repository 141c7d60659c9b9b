"""A folder of per-step checkpoint files, read as a snapshot matrix W[t, d].

:class:`CheckpointFolder` turns the checkpoints a training run saved (one file per step:
``*.safetensors``, or torch ``state_dict`` files ``*.pt`` / ``*.pth``) into a read-only
snapshot source with the same interface as :class:`fractaldiff.SnapshotStore`: ``.shape``
``(T, D)``, ``.dtype``, numpy-style slicing, :meth:`~CheckpointFolder.column_block`, ``.steps``
and ``.layout``. Nothing is loaded up front beyond the files' headers; every read fetches only
the bytes it needs.

Rules
-----
Order of snapshots (t)
    By the step number in each file's name: the **last run of decimal digits** in the file's
    path relative to the folder, with the file extension removed. ``step_000120.safetensors``
    -> 120, ``ckpt-epoch3-step1200.pt`` -> 1200, ``checkpoint-500/model.safetensors`` -> 500
    (with ``pattern="checkpoint-*/model.safetensors"``). A file without digits, or two files
    with the same step, is an error naming the files.
Order of parameters (d)
    Tensors are flattened in C order and laid end to end in the **key order of the first file**
    (the one with the smallest step): for torch files the ``state_dict``'s own order (module
    registration order, the order of ``model.state_dict()`` and of
    ``torch.nn.utils.parameters_to_vector``), for safetensors files the names sorted as strings
    (the order safetensors itself lists them; the format does not keep the writer's order).
    ``params=[names...]`` chooses the tensors and their order explicitly. :attr:`layout` says
    where each tensor went.
Which tensors
    By default every floating-point tensor (float16, bfloat16, float32, float64); integer and
    bool entries (e.g. BatchNorm's ``num_batches_tracked``) are skipped. Every file must hold the
    same tensors with the same shapes, otherwise the error names the file and the tensor.
dtype
    float64 if any selected tensor in any file is float64, else float32 (bfloat16 and float16
    convert exactly); ``dtype=`` overrides.

safetensors files are parsed directly (an 8-byte little-endian header length, a JSON header with
each tensor's dtype, shape and byte range, then raw little-endian data), so neither the
``safetensors`` package nor torch is needed for them, bfloat16 included, and a column block
reads only its byte ranges. torch files need torch (imported only when such files are present);
they are opened with ``torch.load(..., weights_only=True, mmap=True)``.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._arrays import (
    check_block_range,
    check_out,
    check_store_dtype,
    column_blocks,
    pread_all,
    split_key,
)
from .format import load_json
from .layout import LayoutEntry, ParameterLayout

__all__ = ["CheckpointFolder", "step_from_name"]

DEFAULT_PATTERNS = ("*.safetensors", "*.pt", "*.pth")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_STEP_RE = re.compile(r"(\d+)(?!.*\d)", re.DOTALL)
_MAX_HEADER = 100 * 2**20
#: Column window used to gather strided / fancy column selections (bounded memory).
_GATHER_COLS = 1 << 18

# safetensors dtype code -> numpy dtype (BF16 handled separately); None: unsupported
_ST_DTYPES: dict[str, str | None] = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "F8_E4M3": None,
    "F8_E5M2": None,
}
_ST_FLOAT = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_TORCH_FLOAT = ("float16", "bfloat16", "float32", "float64")


def step_from_name(relative_path: str | os.PathLike) -> int | None:
    """The step number of a checkpoint file: the last run of digits in its path, extension removed.

    Parameters
    ----------
    relative_path : str or os.PathLike
        Path relative to the checkpoint folder, e.g. ``"checkpoint-500/model.safetensors"``.

    Returns
    -------
    int or None
        None when the name holds no digits.

    Raises
    ------
    ValueError
        The step does not fit in int64.
    """
    p = Path(relative_path)
    text = p.with_suffix("").as_posix() if p.suffix else p.as_posix()
    m = _STEP_RE.search(text)
    if m is None:
        return None
    digits = m.group(1).lstrip("0") or "0"
    if len(digits) > 19 or int(digits) >= 2**63:
        raise ValueError(
            f"{relative_path}: step number {m.group(1)} does not fit in int64 (the step is the "
            f"last run of digits in the path); rename the file or narrow pattern="
        )
    return int(digits)


# --------------------------------------------------------------------------------------------
# file readers
# --------------------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _header_entry(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype code, shape, begin, end) of one safetensors header entry, strictly typed: shape a
    list of non-negative ints, data_offsets a list of two ints 0 <= begin <= end."""
    if not isinstance(info, dict):
        raise ValueError(f"{path}: header entry for tensor {name!r} is not a JSON object")
    code = info.get("dtype")
    shape = info.get("shape")
    offsets = info.get("data_offsets")
    if not isinstance(code, str):
        raise ValueError(f"{path}: tensor {name!r} has dtype {code!r}, not a string")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise ValueError(
            f"{path}: tensor {name!r} has shape {shape!r}; a shape must be a list of "
            f"non-negative integers"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(x) for x in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ValueError(
            f"{path}: tensor {name!r} has data_offsets {offsets!r}; they must be a list of two "
            f"integers 0 <= begin <= end"
        )
    return code, tuple(shape), offsets[0], offsets[1]


def _open_regular(path: Path) -> int:
    """Open a checkpoint file for reading without blocking on a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _SafetensorsFile:
    """Header of one safetensors file; reads flat ranges of its tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = _open_regular(path)
        try:
            size = os.fstat(fd).st_size
            head = pread_all(fd, 8, 0)
            if len(head) < 8:
                raise ValueError(f"{path} is not a safetensors file: only {size} bytes")
            n = int.from_bytes(head, "little")
            if n > _MAX_HEADER or 8 + n > size:
                raise ValueError(
                    f"{path} is not a valid safetensors file (truncated or corrupt): its header "
                    f"length is {n} bytes but the file has {size} bytes"
                )
            raw = pread_all(fd, n, 8)
        finally:
            os.close(fd)
        try:
            header = load_json(raw, "its header")
        except ValueError as exc:
            raise ValueError(f"{path} has a corrupt safetensors header: {exc}") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path} has a corrupt safetensors header: not a JSON object")
        self.data_start = 8 + n
        data_size = size - self.data_start
        self.tensors: dict[str, tuple[str, tuple[int, ...], int]] = {}
        for name in sorted(k for k in header if k != "__metadata__"):
            code, shape, begin, end = _header_entry(path, name, header[name])
            if code not in _ST_DTYPES:
                raise ValueError(f"{path}: tensor {name!r} has unknown dtype {code!r}")
            npdt = _ST_DTYPES[code]
            if npdt is not None:
                need = math.prod(shape) * np.dtype(npdt).itemsize
                if end - begin != need:
                    raise ValueError(
                        f"{path}: tensor {name!r} ({code}, shape {list(shape)}) should take "
                        f"{need} bytes but its data_offsets are [{begin}, {end})"
                    )
            if end > data_size:
                raise ValueError(
                    f"{path} is truncated: tensor {name!r} needs data bytes [{begin}, {end}) but "
                    f"the file holds only {data_size} bytes of data"
                )
            self.tensors[name] = (code, shape, begin)
        self.order = list(self.tensors)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name][1]

    def dtype_name(self, name: str) -> str:
        code = self.tensors[name][0]
        return _ST_FLOAT.get(code, code.lower())

    def is_float(self, name: str) -> bool:
        return self.tensors[name][0].startswith(("F", "BF"))

    def open(self) -> _SafetensorsReader:
        return _SafetensorsReader(self)


class _SafetensorsReader:
    def __init__(self, meta: _SafetensorsFile) -> None:
        self.meta = meta
        self.fd = _open_regular(meta.path)

    def read_into(self, name: str, a: int, b: int, dst: np.ndarray) -> None:
        code, _, begin = self.meta.tensors[name]
        npdt = _ST_DTYPES[code]
        if npdt is None:
            raise ValueError(
                f"{self.meta.path}: tensor {name!r} has dtype {code}, which fractaldiff cannot "
                f"read; leave it out with params="
            )
        src_dt = np.dtype(npdt)
        offset = self.meta.data_start + begin + a * src_dt.itemsize
        nbytes = (b - a) * src_dt.itemsize
        if (
            code != "BF16"
            and dst.dtype == src_dt
            and dst.flags.c_contiguous
            and hasattr(os, "preadv")
        ):
            got = os.preadv(self.fd, [memoryview(dst).cast("B")], offset)
            if got != nbytes:
                raise ValueError(f"{self.meta.path} is truncated (it changed while being read)")
            return
        raw = pread_all(self.fd, nbytes, offset)
        if len(raw) != nbytes:
            raise ValueError(f"{self.meta.path} is truncated (it changed while being read)")
        src = np.frombuffer(raw, dtype=src_dt)
        if code == "BF16":  # bfloat16 = the top 16 bits of a float32
            src = (src.astype(np.uint32) << 16).view(np.float32)
        np.copyto(dst, src, casting="unsafe")

    def close(self) -> None:
        os.close(self.fd)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "reading torch checkpoint files (*.pt, *.pth) needs the optional package torch: "
            "pip install torch (safetensors files need no extra package)"
        ) from None
    return torch


def _load_torch(path: Path, key: Any) -> Mapping[str, Any]:
    torch = _import_torch()
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except Exception as exc:
        raise ValueError(
            f"could not load {path} with torch.load(weights_only=True): {exc}. The file may be "
            f"truncated or corrupt, or hold more than tensors and plain containers"
        ) from None
    if key is not None:
        for k in [key] if isinstance(key, str) else list(key):
            if not isinstance(obj, Mapping) or k not in obj:
                raise ValueError(f"{path} has no entry {k!r} (key={key!r})")
            obj = obj[k]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict (a mapping)")

    def tensors_of(m: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if isinstance(v, torch.Tensor)}

    found = tensors_of(obj)
    if not found and key is None:
        for k in ("state_dict", "model_state_dict", "model", "module", "params"):
            if isinstance(obj.get(k), Mapping) and tensors_of(obj[k]):
                return tensors_of(obj[k])
        raise ValueError(
            f"{path} holds no tensors at the top level nor under 'state_dict', "
            f"'model_state_dict', 'model', 'module' or 'params' (its keys: "
            f"{list(obj)[:10]}); pass key= to name the entry holding the state_dict"
        )
    return found


class _TorchFile:
    """A torch state_dict file; tensors are memory-mapped by torch.load(mmap=True)."""

    def __init__(self, path: Path, key: Any) -> None:
        self.path = path
        self.key = key
        sd = _load_torch(path, key)
        self.order = list(sd)
        self._shapes = {k: tuple(int(s) for s in v.shape) for k, v in sd.items()}
        self._dtypes = {k: str(v.dtype).replace("torch.", "") for k, v in sd.items()}

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def dtype_name(self, name: str) -> str:
        return self._dtypes[name]

    def is_float(self, name: str) -> bool:
        return self._dtypes[name] in _TORCH_FLOAT

    def open(self) -> _TorchReader:
        return _TorchReader(self)


class _TorchReader:
    def __init__(self, meta: _TorchFile) -> None:
        self.meta = meta
        self.sd = _load_torch(meta.path, meta.key)

    def read_into(self, name: str, a: int, b: int, dst: np.ndarray) -> None:
        torch = _import_torch()
        t = self.sd[name].reshape(-1)[a:b]
        if t.dtype == torch.bfloat16 or t.dtype.is_complex:
            t = t.to(torch.float32)
        np.copyto(dst, t.numpy(), casting="unsafe")

    def close(self) -> None:
        self.sd = {}


def _open_file(path: Path, key: Any) -> _SafetensorsFile | _TorchFile:
    if path.suffix == ".safetensors":
        return _SafetensorsFile(path)
    if path.suffix in _TORCH_SUFFIXES:
        return _TorchFile(path, key)
    raise ValueError(
        f"{path}: unknown checkpoint format {path.suffix!r} (expected .safetensors, .pt, .pth "
        f"or .bin)"
    )


# --------------------------------------------------------------------------------------------
# the source
# --------------------------------------------------------------------------------------------


class CheckpointFolder:
    """A folder of per-step checkpoint files as a read-only snapshot source.

    See the module docstring for the rules (snapshot order, parameter order, which tensors).

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    pattern : str, optional
        Glob pattern relative to ``path`` (``**`` allowed), e.g. ``"step_*.safetensors"`` or
        ``"checkpoint-*/model.safetensors"``. Default: every ``*.safetensors``, ``*.pt`` and
        ``*.pth`` file directly in ``path``.
    params : sequence of str or callable, optional
        The tensors to use: names in the order wanted, or a predicate ``name -> bool`` applied
        to the first file's floating-point tensors in its key order. Default: all of them.
    key : str or sequence of str, optional
        torch files holding more than a state_dict (``{"model": ..., "optimizer": ...}``): the
        entry (or path of entries) that holds it. By default the top level is used if it holds
        tensors, else the first of ``state_dict``, ``model_state_dict``, ``model``, ``module``,
        ``params`` that does.
    dtype : {None, "float32", "float64", "float16"}
        dtype of the values read (default: see the module docstring).

    Attributes
    ----------
    path : pathlib.Path
    files : list of pathlib.Path
        The checkpoint files, in snapshot order.
    steps : numpy.ndarray
        int64 step of each file.
    layout : ParameterLayout
        Name, shape, offset and original dtype of every tensor in the flat vector.
    """

    ndim = 2

    def __init__(
        self,
        path: str | os.PathLike,
        pattern: str | None = None,
        params: Sequence[str] | Callable[[str], bool] | None = None,
        *,
        key: str | Sequence[str] | None = None,
        dtype: Any = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"checkpoint folder {self.path} does not exist")
        if not self.path.is_dir():
            raise NotADirectoryError(f"checkpoint folder {self.path} is not a directory")
        if pattern is not None and not isinstance(pattern, str):
            raise TypeError(f"pattern must be a glob string, got {type(pattern).__name__}")
        self.pattern = pattern
        patterns = DEFAULT_PATTERNS if pattern is None else (pattern,)
        found = sorted({p for pat in patterns for p in self.path.glob(pat) if p.is_file()})
        if not found:
            hint = (
                "; for per-step subfolders pass e.g. pattern='checkpoint-*/model.safetensors'"
                if pattern is None
                else ""
            )
            raise FileNotFoundError(
                f"no checkpoint files matching {' or '.join(patterns)} in {self.path}{hint}"
            )
        by_step: dict[int, Path] = {}
        for f in found:
            rel = f.relative_to(self.path)
            step = step_from_name(rel)
            if step is None:
                raise ValueError(
                    f"{f}: no step number in its name (the step is the last run of digits in "
                    f"the path relative to the folder); rename it or narrow pattern="
                )
            if step in by_step:
                raise ValueError(
                    f"{by_step[step]} and {f} have the same step number {step}; narrow pattern="
                )
            by_step[step] = f
        self.steps = np.array(sorted(by_step), dtype=np.int64)
        self.files = [by_step[s] for s in self.steps.tolist()]
        self._key = key
        self._metas = [_open_file(f, key) for f in self.files]
        first = self._metas[0]
        names = self._select(first, params)
        # check every file against the first
        floats0 = {n for n in first.order if first.is_float(n)}
        for meta in self._metas[1:]:
            have = set(meta.order)
            if params is None or callable(params):
                floats = {n for n in meta.order if meta.is_float(n)}
                missing = sorted(floats0 - floats)
                extra = sorted(floats - floats0) if params is None else []
                if missing or extra:
                    raise ValueError(
                        f"{meta.path}: its floating-point tensors differ from those of "
                        f"{first.path}: missing {missing[:10]}, extra {extra[:10]}"
                    )
            for n in names:
                if n not in have:
                    raise ValueError(f"{meta.path} has no tensor {n!r} (present in {first.path})")
                if meta.shape(n) != first.shape(n):
                    raise ValueError(
                        f"{meta.path}: tensor {n!r} has shape {list(meta.shape(n))} but "
                        f"{first.path} has {list(first.shape(n))}"
                    )
                if isinstance(meta, _SafetensorsFile) and _ST_DTYPES[meta.tensors[n][0]] is None:
                    raise ValueError(
                        f"{meta.path}: tensor {n!r} has dtype {meta.tensors[n][0]}, which "
                        f"fractaldiff cannot read; leave it out with params="
                    )
        entries = []
        offset = 0
        for n in names:
            shape = first.shape(n)
            entries.append(LayoutEntry.of(n, shape, offset, first.dtype_name(n)))
            offset += math.prod(shape)
        self.layout = ParameterLayout(entries, offset)
        self._n_params = offset
        if self._n_params == 0:
            raise ValueError(f"{first.path}: the selected tensors hold no values")
        if dtype is None:
            any64 = any(m.dtype_name(n) == "float64" for m in self._metas for n in names)
            self._dtype = np.dtype(np.float64 if any64 else np.float32)
        else:
            self._dtype = check_store_dtype(dtype)
        self._offsets = np.array([e.offset for e in entries], dtype=np.int64)

    def _select(self, first: Any, params: Any) -> list[str]:
        if params is None or callable(params):
            names = [n for n in first.order if first.is_float(n)]
            if callable(params):
                names = [n for n in names if params(n)]
            if isinstance(first, _SafetensorsFile):
                for n in names:
                    if _ST_DTYPES[first.tensors[n][0]] is None:
                        raise ValueError(
                            f"{first.path}: tensor {n!r} has dtype {first.tensors[n][0]}, which "
                            f"fractaldiff cannot read; leave it out with params="
                        )
            if not names:
                raise ValueError(f"{first.path} has no floating-point tensors (selected)")
            return names
        if isinstance(params, str) or not isinstance(params, Sequence):
            raise TypeError(
                f"params must be a sequence of tensor names or a callable, got "
                f"{type(params).__name__}"
            )
        names = [str(n) for n in params]
        if len(set(names)) != len(names):
            raise ValueError("params names a tensor twice")
        for n in names:
            if n not in first.order:
                raise ValueError(f"{first.path} has no tensor {n!r} (named in params)")
        if not names:
            raise ValueError("params is empty")
        return names

    # --- interface shared with SnapshotStore -------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, D)``: checkpoint files x flattened parameters."""
        return (len(self.files), self._n_params)

    @property
    def dtype(self) -> np.dtype:
        """dtype of the values read."""
        return self._dtype

    @property
    def n_params(self) -> int:
        """D."""
        return self._n_params

    @property
    def size(self) -> int:
        """T * D."""
        return len(self.files) * self._n_params

    @property
    def nbytes(self) -> int:
        """Bytes of the whole matrix in :attr:`dtype`."""
        return self.size * self._dtype.itemsize

    def __len__(self) -> int:
        return len(self.files)

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        """Per-snapshot metadata: ``step`` (int64) and ``file`` (path relative to the folder)."""
        rel = np.empty(len(self.files), dtype=object)
        rel[:] = [f.relative_to(self.path).as_posix() for f in self.files]
        return {"step": self.steps.copy(), "file": rel}

    @property
    def meta(self) -> dict[str, Any]:
        """Run-level metadata: the folder and pattern."""
        return {"source": "checkpoint folder", "path": str(self.path), "pattern": self.pattern}

    def _read(self, rows: Sequence[int], start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Fill ``out[i, :]`` with columns ``start..stop-1`` of snapshot ``rows[i]``."""
        if stop <= start or not len(rows):
            return out
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        entries = self.layout[max(first, 0) :]
        for i, t in enumerate(rows):
            reader = self._metas[t].open()
            try:
                for e in entries:
                    if e.offset >= stop:
                        break
                    a = max(start, e.offset)
                    b = min(stop, e.stop)
                    if a >= b:
                        continue
                    reader.read_into(
                        e.name, a - e.offset, b - e.offset, out[i, a - start : b - start]
                    )
            finally:
                reader.close()
        return out

    def column_block(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read all T snapshots of columns ``start..stop-1``.

        Parameters
        ----------
        start, stop : int
            Column range, ``0 <= start <= stop <= D``.
        out : numpy.ndarray, optional
            Destination of shape ``(T, stop - start)`` and dtype :attr:`dtype`.

        Returns
        -------
        numpy.ndarray
            ``(T, stop - start)``. Only the bytes of those columns are read from each file
            (safetensors) or each file's memory-mapped tensors (torch).
        """
        start, stop = check_block_range(start, stop, self._n_params)
        out = check_out(out, (len(self.files), stop - start), self._dtype)
        return self._read(range(len(self.files)), start, stop, out)

    def column_blocks(self, width: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` for consecutive column blocks of ``width`` columns."""
        return column_blocks(self, self._n_params, width)

    def __getitem__(self, key: Any) -> Any:
        rkey, ckey = split_key(key)
        t_count, d = self.shape
        squeeze_r = squeeze_c = False
        if isinstance(rkey, (int, np.integer)) and not isinstance(rkey, (bool, np.bool_)):
            r = int(rkey)
            if not -t_count <= r < t_count:
                raise IndexError(f"snapshot index {r} is out of range for T={t_count}")
            rows = [r % t_count]
            squeeze_r = True
        elif isinstance(rkey, slice):
            rows = list(range(*rkey.indices(t_count)))
        else:
            rows = np.arange(t_count)[rkey].tolist()
            if isinstance(rows, int):  # a 0-d integer array
                rows, squeeze_r = [rows], True
        if isinstance(ckey, (int, np.integer)) and not isinstance(ckey, (bool, np.bool_)):
            c = int(ckey)
            if not -d <= c < d:
                raise IndexError(f"parameter index {c} is out of range for D={d}")
            c %= d
            res = self._read(rows, c, c + 1, np.empty((len(rows), 1), self._dtype))[:, 0]
            squeeze_c = True
        elif isinstance(ckey, slice) and ckey.indices(d)[2] == 1:
            a, b, _ = ckey.indices(d)
            b = max(a, b)
            res = self._read(rows, a, b, np.empty((len(rows), b - a), self._dtype))
        else:
            if isinstance(ckey, slice):
                cols = np.arange(*ckey.indices(d), dtype=np.int64)
            else:
                arr = np.asarray(ckey)
                if arr.size == 0 and arr.ndim == 1:  # [] indexes like an empty int array
                    arr = arr.astype(np.int64)
                if arr.dtype == bool:
                    if arr.shape != (d,):
                        raise IndexError(
                            f"boolean column index has shape {arr.shape}, expected ({d},)"
                        )
                    cols = np.flatnonzero(arr)
                elif arr.dtype.kind in "iu" and arr.ndim <= 1:
                    cols = arr.astype(np.int64).reshape(-1)
                    if cols.size and (cols.min() < -d or cols.max() >= d):
                        raise IndexError(f"column index out of range for D={d}")
                    cols = cols % d if cols.size else cols
                    if arr.ndim == 0:
                        squeeze_c = True
                else:
                    raise IndexError(
                        f"columns must be indexed by an int, slice, int array or bool mask, got "
                        f"{ckey!r}"
                    )
            res = self._gather(rows, cols)
            if squeeze_c:
                res = res[:, 0]
        if squeeze_r:
            res = res[0]
        if squeeze_r and squeeze_c:
            return res[()]
        return res

    def _gather(self, rows: list[int], cols: np.ndarray) -> np.ndarray:
        """Arbitrary columns, read through windows of at most _GATHER_COLS columns."""
        res = np.empty((len(rows), cols.size), self._dtype)
        if not cols.size:
            return res
        order = np.argsort(cols, kind="stable")
        sorted_cols = cols[order]
        i = 0
        while i < sorted_cols.size:
            lo = int(sorted_cols[i])
            j = int(np.searchsorted(sorted_cols, lo + _GATHER_COLS, side="left"))
            hi = int(sorted_cols[j - 1]) + 1
            block = self._read(rows, lo, hi, np.empty((len(rows), hi - lo), self._dtype))
            res[:, order[i:j]] = block[:, sorted_cols[i:j] - lo]
            i = j
        return res

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self.files)):
            yield self[t]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise ValueError("reading a CheckpointFolder into an array always copies")
        out = self.column_block(0, self._n_params)
        return out if dtype is None else out.astype(dtype, copy=False)

    def close(self) -> None:
        """Nothing to release (files are opened per read); for symmetry with SnapshotStore."""

    def __enter__(self) -> CheckpointFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"CheckpointFolder({str(self.path)!r}, shape={self.shape}, dtype={self._dtype.name}, "
            f"steps {int(self.steps[0])}..{int(self.steps[-1])})"
        )

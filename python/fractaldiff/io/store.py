"""An append-only, crash-safe on-disk store of weight snapshots.

A :class:`SnapshotStore` holds the snapshot matrix W[t, d] of one training run (T snapshots of
the same D parameters) together with per-snapshot metadata (step, epoch, learning rate, loss,
wall time, anything JSON-able) and run-level metadata (including the parameter layout: which
range of the flat vector is which tensor). The training harness appends one whole snapshot at a
time; analyses read it like a numpy array, or column block by column block.

Format
------
A store is a directory::

    run.fdstore/
        manifest.json   run-level metadata: D, dtype, layout, user "meta" (written atomically)
        snapshots.bin   raw little-endian rows, row-major: snapshot t at byte t * D * itemsize
        steps.jsonl     one JSON object per snapshot (its "step" plus the user's metadata)
        commits.bin     commit log: one 32-byte record per snapshot, appended last
        writer.lock     lock file held (flock) by the one process that may append

Why this and not zarr (the obvious candidate): the store has to make *appending one whole
snapshot* cheap and crash-safe, and the commit log makes both trivial. An append writes the row
at its fixed offset, then its metadata line, then one 32-byte commit record ``(magic, count,
end of metadata, checksum of the row, CRC32 of the record)``. Readers trust only the commit log:
snapshot t is visible once record t is complete and its checksum matches, and everything a
record points to was written before it. A writer killed at any instant therefore leaves a
store whose committed prefix is exactly the snapshots whose ``append`` returned (plus, at most,
the one whose commit record had been written when the kill came); a torn row, metadata line or
record beyond it is ignored by readers and cut off when appending resumes. Readers concurrent
with the writer see a consistent prefix for the same reason, with no locks. zarr v3 chunks
that are contiguous in time (the layout column reads want) cannot take one snapshot at a time
without rewriting every chunk of the last time block on each append, or buffering snapshots in
memory where a crash loses them; its crash safety rests on the storage backend; and a zarr
array with a growing first axis needs a metadata rewrite per append. A fixed-size-row raw file
is also what ``numpy.memmap`` reads with zero copies, so dask (``dask.array.from_array(store)``),
xarray and plain numpy read it directly; :meth:`SnapshotStore.to_zarr` exports a copy with
time-contiguous chunks for clusters that want zarr.

The price is the column read: a column block (all T rows x columns [a, b)) is T strided reads
of ``(b - a) * itemsize`` bytes, efficient once the block is a few pages wide (the streaming
driver picks blocks of many columns) and free of copies through :meth:`SnapshotStore.as_memmap`.

Durability: an append is visible to other processes and survives the death of the writing
process (SIGKILL included) as soon as it returns: the bytes are in the operating system's page
cache. Surviving a power loss or kernel crash needs them on the disk: :meth:`SnapshotStore.flush`
and :meth:`SnapshotStore.close` fsync, and ``durable=True`` fsyncs the row and metadata before
writing each commit record and the record after it.

Damage: a torn tail (what a crash leaves) is not an error. Anything else — a commit count larger
than the data file, a bad commit record before the last one, a metadata file shorter than the
commit log says, an unreadable manifest — raises :class:`StoreCorruptedError` naming the file
and what is wrong. ``open_store(path, recover=True)`` instead opens the intact prefix (every
snapshot before the first damaged one) with a :class:`StoreRecoveryWarning`; in append mode it
also cuts the damaged part off, so appending continues from the intact prefix.

Only numpy is needed; zarr is imported by :meth:`SnapshotStore.to_zarr` alone.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

try:  # POSIX advisory locks; on other systems a second writer is not detected
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LayoutEntry",
    "ParameterLayout",
    "PartsWriter",
    "SnapshotStore",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreRecoveryWarning",
    "is_store",
    "open_store",
]

FORMAT_NAME = "fractaldiff.snapshot-store"
FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
DATA_FILE = "snapshots.bin"
METADATA_FILE = "steps.jsonl"
COMMIT_FILE = "commits.bin"
LOCK_FILE = "writer.lock"

#: One commit record: magic, flags (0), count, end of metadata, row checksum, CRC32 of
#: the first 28 bytes. Little-endian, 32 bytes, so records never straddle a page.
_RECORD = struct.Struct("<4sIQQII")
_RECORD_SIZE = _RECORD.size
_MAGIC = b"FDC1"
_RECORD_DTYPE = np.dtype(
    [
        ("magic", "S4"),
        ("flags", "<u4"),
        ("count", "<u8"),
        ("meta_end", "<u8"),
        ("row_crc", "<u4"),
        ("record_crc", "<u4"),
    ]
)
assert _RECORD_DTYPE.itemsize == _RECORD_SIZE

_STORE_DTYPES = ("float16", "float32", "float64")
_MAX_WRITE = 1 << 30  # bytes per write syscall (Linux caps one write at ~2 GiB)
_fdatasync = getattr(os, "fdatasync", os.fsync)


class StoreCorruptedError(ValueError):
    """A store file is damaged beyond a torn tail; the message names the file and the damage."""


class StoreLockedError(RuntimeError):
    """Another process holds the store's writer lock."""


class StoreRecoveryWarning(RuntimeWarning):
    """``recover=True`` opened only the intact prefix of a damaged store."""


# --------------------------------------------------------------------------------------------
# Parameter layout
# --------------------------------------------------------------------------------------------


def _dtype_name(dtype: Any) -> str | None:
    if dtype is None:
        return None
    text = str(dtype)
    return text[len("torch.") :] if text.startswith("torch.") else text


class LayoutEntry(NamedTuple):
    """One named tensor inside the flat parameter vector.

    A named tuple whose first three fields, ``(name, offset, stop)``, are the tensor's column
    range in the snapshot matrix. Build one with :meth:`LayoutEntry.of`.

    Attributes
    ----------
    name : str
        Parameter name (e.g. ``"fc1.weight"``).
    offset : int
        Index of its first value in the flat vector.
    stop : int
        One past the index of its last value (``offset + prod(shape)``).
    shape : tuple of int
        The tensor's shape; it occupies ``prod(shape)`` consecutive values, in C order.
    dtype : str or None
        The tensor's own dtype before flattening (e.g. ``"bfloat16"``), if known.
    """

    name: str
    offset: int
    stop: int
    shape: tuple[int, ...]
    dtype: str | None = None

    @classmethod
    def of(
        cls, name: str, shape: tuple[int, ...], offset: int, dtype: str | None = None
    ) -> LayoutEntry:
        """The entry of a tensor of ``shape`` starting at value ``offset``."""
        shape = tuple(int(n) for n in shape)
        return cls(name, int(offset), int(offset) + math.prod(shape), shape, dtype)

    @property
    def size(self) -> int:
        """Number of values, ``prod(shape)``."""
        return self.stop - self.offset

    @property
    def slice(self) -> slice:
        """``slice(offset, stop)``: its columns in the snapshot matrix."""
        return slice(self.offset, self.stop)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as stored in the manifest."""
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "offset": self.offset}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        return out


def _as_shape(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{what} must be a shape (a tuple of ints), got {value!r}") from None
    for n in shape:
        if not isinstance(n, (numbers.Integral, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"{what} must be a tuple of non-negative ints, got {value!r}")
    return tuple(int(n) for n in shape)


class ParameterLayout(Sequence):
    """Where each named tensor lives in the flat parameter vector.

    An immutable sequence of :class:`LayoutEntry`, ordered by offset. Entries do not overlap;
    they need not cover every column.

    Parameters
    ----------
    entries : iterable of LayoutEntry
    n_params : int, optional
        Length D of the flat vector; every entry must lie inside it.
    """

    def __init__(self, entries: Any, n_params: int | None = None) -> None:
        items = sorted(entries, key=lambda e: e.offset)
        seen: set[str] = set()
        prev: LayoutEntry | None = None
        for e in items:
            if not isinstance(e, LayoutEntry) or e.stop != e.offset + math.prod(e.shape):
                raise ValueError(f"layout entry {e!r} is not a consistent LayoutEntry")
            if not isinstance(e.name, str) or not e.name:
                raise ValueError(f"layout entry names must be non-empty strings, got {e.name!r}")
            if e.name in seen:
                raise ValueError(f"layout names parameter {e.name!r} twice")
            seen.add(e.name)
            if e.offset < 0:
                raise ValueError(f"layout entry {e.name!r} has negative offset {e.offset}")
            if prev is not None and e.offset < prev.stop:
                raise ValueError(
                    f"layout entries {prev.name!r} (values {prev.offset}..{prev.stop - 1}) and "
                    f"{e.name!r} (from {e.offset}) overlap"
                )
            prev = e
        if n_params is not None and prev is not None and prev.stop > n_params:
            raise ValueError(
                f"layout entry {prev.name!r} ends at value {prev.stop}, past n_params={n_params}"
            )
        self._entries = tuple(items)
        self._by_name = {e.name: e for e in items}

    @classmethod
    def from_spec(
        cls, spec: Any, n_params: int | None = None, name: str = "layout"
    ) -> ParameterLayout:
        """Build a layout from a convenient description.

        Parameters
        ----------
        spec : ParameterLayout, mapping or sequence
            * a mapping ``name -> shape`` or ``name -> tensor`` (anything with ``.shape``, e.g.
              ``model.state_dict()``): tensors laid out one after another in the mapping's order;
            * a sequence of :class:`LayoutEntry`, of dicts with keys ``name``, ``shape`` and
              optionally ``offset`` and ``dtype``, or of tuples ``(name, shape[, offset])``.

            Offsets are given for every entry or for none (then entries are contiguous, in
            order, starting at 0, and must add up to exactly ``n_params`` values).
        n_params : int, optional
            Length D of the flat vector.
        name : str
            Argument name used in error messages.
        """
        if isinstance(spec, ParameterLayout):
            return cls(spec, n_params)
        raw: list[tuple[str, tuple[int, ...], int | None, str | None]] = []
        if isinstance(spec, Mapping):
            for key, value in spec.items():
                if hasattr(value, "shape"):
                    raw.append(
                        (
                            key,
                            _as_shape(value.shape, f"{name}[{key!r}]"),
                            None,
                            _dtype_name(getattr(value, "dtype", None)),
                        )
                    )
                else:
                    raw.append((key, _as_shape(value, f"{name}[{key!r}]"), None, None))
        elif isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
            raise TypeError(
                f"{name} must be a mapping name -> shape/tensor or a sequence of entries, got "
                f"{type(spec).__name__}"
            )
        else:
            for i, item in enumerate(spec):
                if isinstance(item, LayoutEntry):
                    raw.append((item.name, item.shape, item.offset, item.dtype))
                elif isinstance(item, Mapping):
                    if "name" not in item or "shape" not in item:
                        raise ValueError(f"{name}[{i}] needs keys 'name' and 'shape', got {item!r}")
                    off = item.get("offset")
                    raw.append(
                        (
                            item["name"],
                            _as_shape(item["shape"], f"{name}[{i}]['shape']"),
                            None if off is None else int(off),
                            _dtype_name(item.get("dtype")),
                        )
                    )
                elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
                    off = item[2] if len(item) == 3 else None
                    raw.append(
                        (
                            item[0],
                            _as_shape(item[1], f"{name}[{i}] shape"),
                            None if off is None else int(off),
                            None,
                        )
                    )
                else:
                    raise TypeError(
                        f"{name}[{i}] must be a LayoutEntry, a dict or a (name, shape[, offset]) "
                        f"tuple, got {item!r}"
                    )
        have_offsets = [r[2] is not None for r in raw]
        if any(have_offsets) and not all(have_offsets):
            raise ValueError(f"{name}: give an offset for every entry or for none")
        entries = []
        if raw and not have_offsets[0]:
            offset = 0
            for key, shape, _, dt in raw:
                entries.append(LayoutEntry.of(str(key), shape, offset, dt))
                offset += math.prod(shape)
            if n_params is not None and offset != n_params:
                raise ValueError(
                    f"{name} describes {offset} values in total but n_params={n_params}; "
                    f"the tensors laid out one after another must fill the vector exactly "
                    f"(give explicit offsets to leave gaps)"
                )
        else:
            entries = [LayoutEntry.of(str(k), s, int(o), dt) for k, s, o, dt in raw]
        try:
            return cls(entries, n_params)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._by_name[key]
            except KeyError:
                raise KeyError(f"no parameter named {key!r} in the layout") from None
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, item: Any) -> bool:
        if isinstance(item, str):
            return item in self._by_name
        return item in self._entries

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ParameterLayout):
            return self._entries == other._entries
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._entries)

    @property
    def names(self) -> list[str]:
        """Parameter names, in order of offset."""
        return [e.name for e in self._entries]

    @property
    def n_values(self) -> int:
        """Number of values the entries cover."""
        return sum(e.size for e in self._entries)

    def ranges(self) -> list[tuple[str, int, int]]:
        """``[(name, start, stop), ...]``: each tensor's column range, in order of offset."""
        return [(e.name, e.offset, e.stop) for e in self._entries]

    def slices(self, by: str = "parameter") -> dict[str, slice | np.ndarray]:
        """Column selections per group, for per-layer analysis.

        Parameters
        ----------
        by : {"parameter", "module"}
            ``"parameter"``: one group per entry (``"fc1.weight"``, ``"fc1.bias"``, ...).
            ``"module"``: entries grouped by the name up to the last dot (``"fc1"``).

        Returns
        -------
        dict
            Group name -> ``slice`` of columns, or a sorted int64 index array when a module's
            tensors are not contiguous.
        """
        if by == "parameter":
            return {e.name: e.slice for e in self._entries}
        if by != "module":
            raise ValueError(f"by must be 'parameter' or 'module', got {by!r}")
        groups: dict[str, list[LayoutEntry]] = {}
        for e in self._entries:
            groups.setdefault(e.name.rsplit(".", 1)[0], []).append(e)
        out: dict[str, slice | np.ndarray] = {}
        for key, members in groups.items():
            contiguous = all(a.stop == b.offset for a, b in zip(members, members[1:]))
            if contiguous:
                out[key] = slice(members[0].offset, members[-1].stop)
            else:
                out[key] = np.concatenate(
                    [np.arange(e.offset, e.stop, dtype=np.int64) for e in members]
                )
        return out

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-able form (a list of dicts), as stored in the manifest."""
        return [e.to_dict() for e in self._entries]

    def __repr__(self) -> str:
        body = ", ".join(f"{e.name}{list(e.shape)}@{e.offset}" for e in self._entries[:6])
        more = f", ... ({len(self)} entries)" if len(self) > 6 else ""
        return f"ParameterLayout([{body}{more}])"


# --------------------------------------------------------------------------------------------
# Small helpers shared with checkpoints.py


def _column_blocks(src: Any, n_params: int, width: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, src.column_block(start, stop))`` for consecutive blocks of ``width`` columns."""
    width = _index_int(width, "width")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    for start in range(0, n_params, width):
        yield start, src.column_block(start, min(start + width, n_params))
# --------------------------------------------------------------------------------------------


def _check_dtype_arg(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {', '.join(_STORE_DTYPES)}, got {dtype!r}") from None
    if dt.kind != "f" or dt.name not in _STORE_DTYPES:
        raise TypeError(f"dtype must be one of {', '.join(_STORE_DTYPES)}, got {dt}")
    return dt.newbyteorder("=")


def _index_int(value: Any, name: str) -> int:
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def _check_block_range(start: Any, stop: Any, n_cols: int) -> tuple[int, int]:
    start = _index_int(start, "start")
    stop = _index_int(stop, "stop")
    if not 0 <= start <= stop <= n_cols:
        raise IndexError(
            f"column block [start={start}, stop={stop}) must satisfy 0 <= start <= stop <= "
            f"D={n_cols}"
        )
    return start, stop


def _check_out(out: Any, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
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


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` (a buffer) at ``offset``, looping over short writes."""
    view = memoryview(data).cast("B")
    done = 0
    total = len(view)
    while done < total:
        chunk = view[done : done + _MAX_WRITE]
        if hasattr(os, "pwrite"):
            n = os.pwrite(fd, chunk, offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            n = os.write(fd, chunk)
        if n <= 0:  # pragma: no cover - the OS raises instead
            raise OSError(f"short write at offset {offset + done}")
        done += n


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """Read up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
    parts = []
    done = 0
    while done < size:
        if hasattr(os, "pread"):
            chunk = os.pread(fd, min(size - done, _MAX_WRITE), offset + done)
        else:  # pragma: no cover - Windows
            os.lseek(fd, offset + done, os.SEEK_SET)
            chunk = os.read(fd, min(size - done, _MAX_WRITE))
        if not chunk:
            break
        parts.append(chunk)
        done += len(chunk)
    return b"".join(parts)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` atomically: temp file in the same folder, fsync, rename."""
    # one top-level key per line, compact values: readable, and small for big layouts
    body = ",\n".join(
        f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'), allow_nan=False)}"
        for k, v in obj.items()
    )
    text = "{\n" + body + "\n}\n"
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644) if hasattr(os, "fchmod") else None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays, torch tensors and similar: anything with .tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _to_json_value(value: Any, name: str, allow_nan: bool = True) -> Any:
    """Round-trip ``value`` through JSON so that only plain JSON types remain."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=allow_nan))
    except (TypeError, ValueError) as exc:
        extra = "" if allow_nan else " (NaN/Infinity are not allowed here)"
        raise TypeError(
            f"{name} must be JSON-serializable (numbers, strings, bools, None, lists, dicts, "
            f"numpy scalars/arrays){extra}: {exc}"
        ) from None


def _row_checksum(row: np.ndarray, kind: str | None) -> int:
    """The 32-bit row checksum stored in commit records: ``"fd64"`` (the low 32 bits of
    fractaldiff's fd64 hash, computed in C++ at memory speed), or ``"crc32"`` (zlib)."""
    if kind == "fd64":
        from .. import _core

        return int(_core.digest_row(np.ascontiguousarray(row), 1)[0]) & 0xFFFFFFFF
    if kind == "crc32":
        return zlib.crc32(np.ascontiguousarray(row))
    return 0


#: Small rows are appended by one compiled call (the record layout it writes is little-endian).
_NATIVE_APPEND = sys.byteorder == "little"

#: Rows at least this large are written by a helper thread while the checksum is computed.
_OVERLAP_BYTES = 1 << 20


def _all_finite(row: np.ndarray, chunk: int = 1 << 20) -> bool:
    """True when every value is finite; bounded temporary memory for huge rows."""
    return all(np.isfinite(row[i : i + chunk]).all() for i in range(0, row.size, chunk))


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _column(values: list[Any]) -> np.ndarray:
    """Turn one metadata column (None where missing) into the most specific numpy array."""
    present = [v for v in values if v is not None]
    if present and len(present) == len(values):
        if all(isinstance(v, bool) for v in present):
            return np.array(values, dtype=bool)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            try:
                return np.array(values, dtype=np.int64)
            except OverflowError:
                pass
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _split_key(key: Any) -> tuple[Any, Any]:
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


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a snapshot store (it has ``manifest.json``)."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST_FILE).is_file()


def open_store(
    path: str | os.PathLike,
    mode: str = "r",
    *,
    recover: bool = False,
    durable: bool = False,
) -> SnapshotStore:
    """Open an existing snapshot store.

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory.
    mode : {"r", "a"}
        ``"r"``: read only; any number of readers, also while a writer appends.
        ``"a"``: read and append; takes the store's writer lock (one writer at a time) and cuts
        off a torn tail left by a crash.
    recover : bool
        On damage other than a torn tail, open the intact prefix with a
        :class:`StoreRecoveryWarning` instead of raising :class:`StoreCorruptedError`
        (in mode ``"a"`` the damaged rest is cut off).
    durable : bool
        Mode ``"a"`` only: fsync each snapshot before its commit record and the record after it,
        so that it survives a power loss once ``append`` returns (slower).

    Returns
    -------
    SnapshotStore
    """
    return SnapshotStore(path, mode=mode, recover=recover, durable=durable)


class SnapshotStore:
    """An append-only, crash-safe on-disk store of weight snapshots W[t, d].

    Create one with :meth:`SnapshotStore.create`, open one with :func:`open_store` (or this
    constructor). It reads like a read-only 2-D numpy array of shape ``(T, D)`` (``store[t]``,
    ``store[a:b]``, ``store[:, cols]``, ``store[a:b, c:d]``, fancy and boolean indices; results
    are in-memory copies) holding the *committed* snapshots as of opening, the last
    :meth:`append` or the last :meth:`refresh`. See the module docstring for the file format.

    Parameters
    ----------
    path : str or os.PathLike
        The store's directory.
    mode, recover, durable
        As for :func:`open_store`.

    Attributes
    ----------
    path : pathlib.Path
    mode : str
    shape : tuple of int
        ``(T, D)``: committed snapshots x parameters.
    dtype : numpy.dtype
        float16, float32 or float64 (stored little-endian).
    """

    # --- creation / opening ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        n_params: int,
        dtype: Any = "float32",
        meta: Mapping[str, Any] | None = None,
        layout: Any = None,
        *,
        checksum: bool = True,
        durable: bool = False,
    ) -> SnapshotStore:
        """Create a new, empty store and open it for appending.

        Parameters
        ----------
        path : str or os.PathLike
            Directory to create. It must not exist (or be an empty directory). The store is
            built under a temporary name next to it and renamed into place, so a crash during
            creation leaves either no store or a complete empty one.
        n_params : int
            D, the number of values in every snapshot (>= 1).
        dtype : {"float32", "float64", "float16"}
            Storage dtype. Appended vectors of any floating dtype are cast to it.
        meta : mapping, optional
            Run-level metadata (JSON-able): model, optimizer, seed, data set, ...
        layout : optional
            Where each named tensor lives in the flat vector; anything
            :meth:`ParameterLayout.from_spec` accepts, e.g. ``model.state_dict()`` or
            ``[("fc1.weight", (64, 784)), ("fc1.bias", (64,)), ...]``.
        checksum : bool
            Record a checksum of every row in its commit record (checked by :meth:`verify`).
        durable : bool
            As for :func:`open_store`.

        Returns
        -------
        SnapshotStore
            Open in mode ``"a"``.
        """
        path = Path(path)
        n_params = _index_int(n_params, "n_params")
        if n_params < 1:
            raise ValueError(f"n_params must be >= 1, got {n_params}")
        dt = _check_dtype_arg(dtype)
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping (dict), got {type(meta).__name__}")
        meta_json = {} if meta is None else _to_json_value(dict(meta), "meta", allow_nan=False)
        lay = None if layout is None else ParameterLayout.from_spec(layout, n_params, "layout")
        if path.exists() and not (path.is_dir() and not any(path.iterdir())):
            raise FileExistsError(
                f"{path} already exists; open an existing store with "
                f"fractaldiff.open_store({str(path)!r}, mode='a') or choose a new path"
            )
        parent = path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"cannot create store {path}: folder {parent} does not exist")
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "n_params": n_params,
            "dtype": dt.newbyteorder("<").str,
            "row_bytes": n_params * dt.itemsize,
            "files": {
                "data": DATA_FILE,
                "metadata": METADATA_FILE,
                "commits": COMMIT_FILE,
            },
            "commit_record": "<4sIQQII: magic b'FDC1', flags, count, metadata end, row "
            "checksum (low 32 bits of fd64), crc32 of the first 28 bytes",
            "row_checksum": "fd64" if checksum else None,
            "layout": None if lay is None else lay.to_list(),
            "meta": meta_json,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "writer": f"fractaldiff {_package_version()}",
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=parent))
        lock_fd = -1
        try:
            for name in (DATA_FILE, METADATA_FILE, COMMIT_FILE, LOCK_FILE):
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.fsync(fd)
                os.close(fd)
            _write_json_atomic(tmp / MANIFEST_FILE, manifest)
            lock_fd = os.open(tmp / LOCK_FILE, os.O_RDWR)
            _lock(lock_fd, tmp)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            if lock_fd >= 0:
                os.close(lock_fd)
            _rmtree_quiet(tmp)
            raise
        _fsync_dir(parent)
        return cls(path, mode="a", durable=durable, _lock_fd=lock_fd)

    def __init__(
        self,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        recover: bool = False,
        durable: bool = False,
        _lock_fd: int = -1,
    ) -> None:
        self._fds: dict[str, int] = {}
        self._lock_fd = _lock_fd
        self._closed = True
        self._pool: ThreadPoolExecutor | None = None
        self._writer: Any = None  # _core.AppendWriter, created by the first append_async
        self._async_steps: dict[int, int] = {}
        self._async_done: list[tuple[int, int, int]] = []
        self._allocated = 0
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' (read) or 'a' (append), got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._durable = bool(durable)
        self._recover = bool(recover)
        if not self.path.exists():
            raise FileNotFoundError(f"no snapshot store at {self.path}: it does not exist")
        if not is_store(self.path):
            raise FileNotFoundError(
                f"{self.path} is not a snapshot store: {self.path / MANIFEST_FILE} not found"
            )
        try:
            self._load_manifest()
            if mode == "a" and self._lock_fd < 0:
                self._lock_fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                _lock(self._lock_fd, self.path)
            flags = os.O_RDWR if mode == "a" else os.O_RDONLY
            for key, name in (
                ("data", DATA_FILE),
                ("meta", METADATA_FILE),
                ("commits", COMMIT_FILE),
            ):
                try:
                    self._fds[key] = os.open(self.path / name, flags)
                except FileNotFoundError:
                    raise StoreCorruptedError(
                        f"{self.path / name} is missing; the store at {self.path} is incomplete"
                    ) from None
            self._count = 0
            self._meta_ends: list[int] = []
            self._row_crcs: list[int] = []
            self._records: list[dict[str, Any]] = []
            self._last_step: int | None = None
            self._mm: np.ndarray | None = None
            self._mm_count = -1
            self._dirty = False
            self._closed = False
            self._scan()
            if mode == "a":
                self._cut_tail()
        except BaseException:
            self._release()
            raise

    def _load_manifest(self) -> None:
        mpath = self.path / MANIFEST_FILE
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreCorruptedError(f"{mpath} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            raise StoreCorruptedError(
                f"{mpath} does not describe a fractaldiff snapshot store (no "
                f"'format': {FORMAT_NAME!r})"
            )
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise StoreCorruptedError(
                f"{mpath} has format_version {version!r}; this fractaldiff reads version "
                f"{FORMAT_VERSION} (upgrade fractaldiff)"
            )
        try:
            n_params = int(manifest["n_params"])
            disk = np.dtype(manifest["dtype"])
            row_bytes = int(manifest["row_bytes"])
            lay = manifest.get("layout")
            layout = None if lay is None else ParameterLayout.from_spec(lay, n_params)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreCorruptedError(f"{mpath} has a missing or invalid field: {exc}") from None
        if (
            disk.kind != "f"
            or disk.name not in _STORE_DTYPES
            or n_params < 1
            or (row_bytes != n_params * disk.itemsize)
        ):
            raise StoreCorruptedError(
                f"{mpath} is inconsistent: n_params={n_params}, dtype={disk}, row_bytes={row_bytes}"
            )
        self._manifest = manifest
        self._n_params = n_params
        self._disk_dtype = disk.newbyteorder("<")
        self._dtype = disk.newbyteorder("=")
        self._row_bytes = row_bytes
        self._layout = layout
        kind = manifest.get("row_checksum")
        if kind not in (None, "crc32", "fd64"):
            raise StoreCorruptedError(
                f"{self.path / MANIFEST_FILE}: unknown row_checksum {kind!r}"
            )
        self._checksum = kind is not None
        self._checksum_kind = kind

    # --- commit log --------------------------------------------------------------------------

    def _damage(self, message: str, intact: int) -> None:
        """Raise for damage, or (recover=True) warn that only ``intact`` snapshots are kept."""
        if not self._recover:
            raise StoreCorruptedError(
                f"{message}. Snapshots 0..{intact - 1} are intact; "
                f"open_store({str(self.path)!r}, recover=True) opens them"
                if intact
                else f"{message}. No snapshot is intact"
            )
        warnings.warn(
            f"{message}; recover=True: using the {intact} intact snapshot(s) before the damage"
            + (" and cutting off the rest" if self.mode == "a" else ""),
            StoreRecoveryWarning,
            stacklevel=4,
        )

    def _scan(self) -> int:
        """Read commit records past the ones already known; returns the committed count."""
        cfd = self._fds["commits"]
        cpath = self.path / COMMIT_FILE
        start = self._count
        size = os.fstat(cfd).st_size
        n_new = size // _RECORD_SIZE - start
        if n_new <= 0:
            return self._count
        buf = _pread_all(cfd, n_new * _RECORD_SIZE, start * _RECORD_SIZE)
        n_new = len(buf) // _RECORD_SIZE
        recs = np.frombuffer(buf, dtype=_RECORD_DTYPE, count=n_new)
        prev_end = self._meta_ends[-1] if self._meta_ends else 0
        ok = (
            (recs["magic"] == _MAGIC)
            & (recs["flags"] == 0)
            & (recs["count"] == np.arange(start + 1, start + n_new + 1, dtype=np.uint64))
        )
        ends = recs["meta_end"].astype(np.int64)
        ok &= np.diff(ends, prepend=prev_end) > 0
        # a record's own checksum
        crc_bad = [
            i
            for i in range(n_new)
            if zlib.crc32(buf[i * _RECORD_SIZE : i * _RECORD_SIZE + 28])
            != int(recs["record_crc"][i])
        ]
        if crc_bad:
            ok[crc_bad] = False
        good = n_new if ok.all() else int(np.argmin(ok))
        # the last record may be torn (a crash or a concurrent append): not damage
        if good < n_new - 1:
            self._damage(
                f"{cpath}: commit record {start + good} of {start + n_new} is corrupt "
                f"(bad magic, count, metadata offset or checksum)",
                start + good,
            )
        count = start + good
        ends = ends[:good]
        crcs = recs["row_crc"][:good]
        count = self._check_files(count, ends)
        ends = ends[: count - start]
        crcs = crcs[: count - start]
        self._meta_ends.extend(int(e) for e in ends)
        self._row_crcs.extend(int(c) for c in crcs)
        self._count = count
        return count

    def _check_files(self, count: int, ends: np.ndarray) -> int:
        """Check the data and metadata files hold what ``count`` commits promise."""
        start = self._count
        dsize = os.fstat(self._fds["data"]).st_size
        have = dsize // self._row_bytes
        if have < count:
            self._damage(
                f"{self.path / DATA_FILE} holds {dsize} bytes = {have} complete snapshot(s) of "
                f"{self._row_bytes} bytes, but {self.path / COMMIT_FILE} commits {count} "
                f"(the data file was truncated)",
                have,
            )
            count = have
        msize = os.fstat(self._fds["meta"]).st_size
        all_ends = np.concatenate([np.asarray(self._meta_ends, dtype=np.int64), ends])
        if count and all_ends[count - 1] > msize:
            fit = int(np.searchsorted(all_ends, msize, side="right"))
            self._damage(
                f"{self.path / METADATA_FILE} holds {msize} bytes but "
                f"{self.path / COMMIT_FILE} says snapshot {count - 1}'s metadata ends at byte "
                f"{int(all_ends[count - 1])} (the metadata file was truncated)",
                fit,
            )
            count = min(count, fit)
        if count < start:  # pragma: no cover - files shrank under an open reader
            raise StoreCorruptedError(
                f"{self.path}: the store shrank from {start} to {count} committed snapshots "
                f"while open"
            )
        return count

    def _cut_tail(self) -> None:
        """Append mode: drop everything past the committed prefix (a crash's torn tail)."""
        n = self._count
        meta_end = self._meta_ends[-1] if n else 0
        targets = (
            ("commits", n * _RECORD_SIZE),
            ("data", n * self._row_bytes),
            ("meta", meta_end),
        )
        for key, size in targets:
            fd = self._fds[key]
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
                _fdatasync(fd)
        self._allocated = n * self._row_bytes
        self._last_step = None
        if n:
            self._last_step = int(self._record(n - 1).get("step", n - 1))

    # --- reading -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"snapshot store {self.path} is closed")
        if self._writer is not None and self._writer.pending():
            self._settle()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    @property
    def shape(self) -> tuple[int, int]:
        """``(T, D)``: committed snapshots x parameters."""
        return (self._count, self._n_params)

    @property
    def n_params(self) -> int:
        """D, values per snapshot."""
        return self._n_params

    @property
    def dtype(self) -> np.dtype:
        """The storage dtype (native byte order): float16, float32 or float64."""
        return self._dtype

    ndim = 2

    @property
    def size(self) -> int:
        """T * D."""
        return self._count * self._n_params

    @property
    def nbytes(self) -> int:
        """Bytes of the committed snapshots."""
        return self._count * self._row_bytes

    def __len__(self) -> int:
        return self._count

    @property
    def meta(self) -> dict[str, Any]:
        """Run-level metadata given at creation (and by :meth:`update_meta`); a copy."""
        return copy.deepcopy(self._manifest.get("meta") or {})

    @property
    def layout(self) -> ParameterLayout | None:
        """The parameter layout given at creation, or None."""
        return self._layout

    @property
    def manifest(self) -> dict[str, Any]:
        """The whole manifest (format, D, dtype, layout, meta, creation time); a copy."""
        return copy.deepcopy(self._manifest)

    def refresh(self) -> int:
        """Pick up snapshots committed by a writer since opening; returns the new T.

        A reader's shape stays fixed between refreshes, so slicing and ``len`` are consistent.
        """
        self._check_open()
        if self.mode == "r":
            self._load_manifest()
            self._scan()
        return self._count

    def as_memmap(self) -> np.ndarray:
        """A read-only, zero-copy ``(T, D)`` view of the committed snapshots.

        A ``numpy.memmap`` of ``snapshots.bin`` (an empty array when T = 0). Its rows never
        change: later appends go past them. It stays valid after :meth:`close`.
        """
        self._check_open()
        if self._mm is None or self._mm_count != self._count:
            if self._count == 0:
                mm = np.empty((0, self._n_params), dtype=self._disk_dtype)
                mm.flags.writeable = False
            else:
                mm = np.memmap(
                    self.path / DATA_FILE,
                    dtype=self._disk_dtype,
                    mode="r",
                    shape=(self._count, self._n_params),
                )
            self._mm = mm
            self._mm_count = self._count
        return self._mm

    def column_block(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Read all committed snapshots of columns ``start..stop-1``.

        Parameters
        ----------
        start, stop : int
            Column range, ``0 <= start <= stop <= D``.
        out : numpy.ndarray, optional
            Destination of shape ``(T, stop - start)`` and dtype :attr:`dtype` (reused buffers
            keep memory bounded).

        Returns
        -------
        numpy.ndarray
            ``(T, stop - start)``, C-contiguous unless ``out`` was given otherwise.
        """
        self._check_open()
        start, stop = _check_block_range(start, stop, self._n_params)
        out = _check_out(out, (self._count, stop - start), self._dtype)
        if self._count and stop > start:
            np.copyto(out, self.as_memmap()[:, start:stop])
        return out

    def column_blocks(self, width: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` for consecutive column blocks of ``width`` columns."""
        return _column_blocks(self, self._n_params, width)

    def __getitem__(self, key: Any) -> Any:
        self._check_open()
        result = self.as_memmap()[key]
        if isinstance(result, np.ndarray):
            return np.array(result, dtype=self._dtype)
        return result

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self._count):
            yield self[t]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if copy is False:
            raise ValueError("reading a SnapshotStore into an array always copies")
        self._check_open()
        return np.array(self.as_memmap(), dtype=dtype if dtype is not None else self._dtype)

    # metadata

    def _record(self, t: int) -> dict[str, Any]:
        if t < len(self._records):
            return self._records[t]
        begin = self._meta_ends[t - 1] if t else 0
        return self._parse_lines(
            t, t + 1, _pread_all(self._fds["meta"], self._meta_ends[t] - begin, begin)
        )[0]

    def _parse_lines(self, first: int, stop: int, raw: bytes) -> list[dict[str, Any]]:
        base = self._meta_ends[first - 1] if first else 0
        out = []
        for t in range(first, stop):
            a = self._meta_ends[t - 1] - base if t else 0
            b = self._meta_ends[t] - base
            line = raw[a:b]
            try:
                if not line.endswith(b"\n"):
                    raise ValueError("no line end")
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                msg = (
                    f"{self.path / METADATA_FILE}: the metadata of snapshot {t} (bytes "
                    f"{a + base}..{b + base - 1}) is damaged: {exc}"
                )
                if not self._recover:
                    raise StoreCorruptedError(
                        msg + "; the snapshot data is still readable; open_store(..., "
                        "recover=True) reads the metadata with {} for damaged entries"
                    ) from None
                warnings.warn(msg + "; using {}", StoreRecoveryWarning, stacklevel=4)
                rec = {}
            out.append(rec)
        return out

    def _load_records(self) -> list[dict[str, Any]]:
        self._check_open()
        have = len(self._records)
        if have < self._count:
            begin = self._meta_ends[have - 1] if have else 0
            raw = _pread_all(self._fds["meta"], self._meta_ends[self._count - 1] - begin, begin)
            self._records.extend(self._parse_lines(have, self._count, raw))
        return self._records[: self._count]

    @property
    def records(self) -> list[dict[str, Any]]:
        """Per-snapshot metadata as a list of dicts, one per committed snapshot (do not modify)."""
        return self._load_records()

    @property
    def metadata(self) -> dict[str, np.ndarray]:
        """Per-snapshot metadata as columns: key -> array of length T.

        Integer columns are int64, numeric columns with gaps or floats float64 (NaN where a
        snapshot lacks the key), all-bool columns bool, anything else an object array (None
        where missing). Keys appear in the order first seen.
        """
        recs = self._load_records()
        keys: dict[str, None] = {}
        for r in recs:
            for k in r:
                keys.setdefault(k, None)
        return {k: _column([r.get(k) for r in recs]) for k in keys}

    @property
    def steps(self) -> np.ndarray:
        """The ``step`` of every committed snapshot, int64 array of length T."""
        recs = self._load_records()
        return np.array([r.get("step", -1) for r in recs], dtype=np.int64)

    # --- writing -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode != "a":
            raise ValueError(
                f"snapshot store {self.path} is open read-only; open it with mode='a' to append"
            )

    def _prepare_row(self, vector: Any, allow_nonfinite: bool) -> np.ndarray:
        if _is_torch_tensor(vector):
            torch = sys.modules["torch"]
            if vector.is_complex():
                raise TypeError(f"vector has complex dtype {vector.dtype}; snapshots must be real")
            if not vector.is_floating_point():
                raise TypeError(
                    f"vector must hold floating-point values, got torch dtype {vector.dtype}"
                )
            vector = vector.detach().to("cpu")
            if vector.dtype not in (torch.float16, torch.float32, torch.float64):
                vector = vector.to(torch.float32)  # bfloat16 and friends: exact in float32
            vector = vector.numpy()
        try:
            arr = np.asarray(vector)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"vector could not be converted to a numeric array: {exc}") from None
        if arr.ndim != 1:
            raise ValueError(
                f"vector must be 1-D with n_params={self._n_params} values (one flattened "
                f"snapshot), got a {arr.ndim}-D array of shape {arr.shape}"
            )
        if arr.shape[0] != self._n_params:
            raise ValueError(
                f"vector has {arr.shape[0]} values but this store holds n_params="
                f"{self._n_params} per snapshot"
            )
        if arr.dtype.kind != "f":
            raise TypeError(
                f"vector must hold floating-point values (float16/32/64), got dtype {arr.dtype}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            row = np.ascontiguousarray(arr, dtype=self._disk_dtype)
        return row

    def _nonfinite_error(self, vector: Any, row: np.ndarray) -> ValueError:
        bad = np.flatnonzero(~np.isfinite(row))
        i = int(bad[0])
        arr = np.asarray(vector.detach().cpu().float() if _is_torch_tensor(vector) else vector)
        orig = arr[i]
        if np.isfinite(orig):
            what = f"{orig}, too large for the store's dtype {self._dtype.name}"
        else:
            what = f"{orig}"
        return ValueError(
            f"vector contains {bad.size} non-finite value(s) (NaN/Inf, or too large for "
            f"{self._dtype.name}; first: vector[{i}] = {what}); pass allow_nonfinite=True "
            f"to store them anyway"
        )

    def _preallocate(self, need: int) -> None:
        """Reserve data-file space ahead of the appends, in steps of at least 64 MiB.

        Writing into already allocated file space is about 1.6x faster than extending the file
        on every append (measured: 4 MB rows). Space past the committed rows is ignored by
        readers, cut off when a writer reopens the store, and trimmed by :meth:`close`.
        """
        if need <= self._allocated:
            return
        size = max(need, self._allocated + max(64 * 2**20, 8 * self._row_bytes))
        fallocate = getattr(os, "posix_fallocate", None)
        if fallocate is not None:
            try:
                fallocate(self._fds["data"], self._allocated, size - self._allocated)
            except OSError:  # file systems without fallocate: plain extending writes
                pass
        self._allocated = size

    def _write_row_and_digest(self, row: np.ndarray, offset: int) -> tuple[int, int]:
        """Write the row at ``offset`` and compute (checksum, non-finite count) in one go: for
        large rows the write runs on a helper thread while the digest pass runs here (both
        release the GIL), so a checksum costs next to nothing."""
        from .. import _core

        if row.nbytes < _OVERLAP_BYTES or self._checksum_kind == "crc32":
            digest, n_bad, _ = _core.digest_row(row, 1)
            crc = _row_checksum(row, self._checksum_kind) if self._checksum_kind == "crc32" \
                else int(digest) & 0xFFFFFFFF
            if n_bad:
                return crc, n_bad
            _pwrite_all(self._fds["data"], row, offset)
            return crc, 0
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fd-store-write")
        pending = self._pool.submit(_pwrite_all, self._fds["data"], row, offset)
        try:
            digest, n_bad, _ = _core.digest_row(row, 1)
        finally:
            pending.result()
        return int(digest) & 0xFFFFFFFF, n_bad

    def _prepare_meta(self, step_meta: dict[str, Any]) -> tuple[bytes, int]:
        rec: dict[str, Any] = {}
        step = step_meta.pop("step", None)
        if step is None:
            step = 0 if self._last_step is None else self._last_step + 1
        elif _is_torch_tensor(step) or isinstance(step, np.ndarray):
            step = step.item()
        if not isinstance(step, (numbers.Integral, np.integer)) or isinstance(
            step, (bool, np.bool_)
        ):
            raise TypeError(f"step must be an integer, got {type(step).__name__} {step!r}")
        step = int(step)
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(
                f"step={step} must be larger than the last snapshot's step {self._last_step} "
                f"(steps increase strictly)"
            )
        if not -(2**63) <= step < 2**63:
            raise ValueError(f"step={step} does not fit in int64")
        rec["step"] = step
        if "nonfinite" in step_meta:
            # right after the step: the compiled writers flip the first '"nonfinite":false' in
            # the line on NaN/Inf, which must be this one, not one nested in a user's value
            rec["nonfinite"] = step_meta.pop("nonfinite")
        for key, value in step_meta.items():
            rec[key] = value
        rec.setdefault("wall_time", time.time())
        try:
            text = json.dumps(rec, separators=(",", ":"), default=_json_default)
        except (TypeError, ValueError):
            for key, value in rec.items():
                _to_json_value(value, f"metadata {key}")
            raise
        return text.encode("utf-8") + b"\n", step

    def append(self, vector: Any, *, allow_nonfinite: bool = False, **step_meta: Any) -> int:
        """Append one snapshot and its metadata; crash-safe once this returns.

        Parameters
        ----------
        vector : array_like or torch.Tensor
            1-D, exactly D floating-point values (any float dtype, cast to the store's dtype;
            torch tensors on any device, bfloat16 included).
        allow_nonfinite : bool
            Store NaN/Inf values instead of raising.
        **step_meta
            Per-snapshot metadata, JSON-able: ``step`` (int, strictly increasing; default:
            previous step + 1, or 0), ``epoch``, ``lr``, ``batch_size``, ``loss``,
            ``wall_time`` (default: ``time.time()``), anything else.

        Returns
        -------
        int
            The index t of the new snapshot (``store[t]``).

        Raises
        ------
        ValueError, TypeError
            Wrong shape, non-float dtype, NaN/Inf, non-increasing step or non-JSON metadata;
            the store is left untouched.
        """
        self._check_writable()
        if self._dirty:  # a previous append was interrupted: trust only the disk
            self._rescan_after_error()
        row = self._prepare_row(vector, allow_nonfinite)
        line, step = self._prepare_meta(dict(step_meta))
        t = self._count
        meta_begin = self._meta_ends[-1] if t else 0
        meta_end = meta_begin + len(line)
        self._dirty = True
        self._preallocate((t + 1) * self._row_bytes)
        if row.nbytes < _OVERLAP_BYTES and self._checksum_kind != "crc32" and _NATIVE_APPEND:
            # small rows: check, checksum and all three writes in one call without the GIL
            # (the Python-level sequence cost as much as the writes, and a background writer
            # thread paid it again in GIL hand-offs)
            from .. import _core

            row_crc, n_bad, err, stage = _core.store_append(
                self._fds["data"], row, t * self._row_bytes, self._fds["meta"], line,
                meta_begin, self._fds["commits"], t * _RECORD_SIZE, t + 1, meta_end,
                self._checksum, allow_nonfinite, self._durable,
            )
            if err:
                what = {1: DATA_FILE, 2: METADATA_FILE, 3: COMMIT_FILE}.get(stage, "sync")
                raise OSError(err, f"{os.strerror(err)} while appending to {self.path / what}")
            if n_bad and not allow_nonfinite:  # nothing was written; drop the reserve too
                os.ftruncate(self._fds["data"], t * self._row_bytes)
                self._allocated = t * self._row_bytes
                self._dirty = False
                raise self._nonfinite_error(vector, row)
            self._count = t + 1
            self._meta_ends.append(meta_end)
            self._row_crcs.append(row_crc)
            self._last_step = step
            self._dirty = False
            return t
        row_crc, n_bad = self._write_row_and_digest(row, t * self._row_bytes)
        if n_bad and not allow_nonfinite:
            # nothing was committed: drop the uncommitted bytes and leave the store as it was
            os.ftruncate(self._fds["data"], t * self._row_bytes)
            self._allocated = t * self._row_bytes
            self._dirty = False
            raise self._nonfinite_error(vector, row)
        if n_bad:  # allowed: the row was not written yet on the small-row path
            _pwrite_all(self._fds["data"], row, t * self._row_bytes)
        if not self._checksum:
            row_crc = 0
        head = _RECORD.pack(_MAGIC, 0, t + 1, meta_end, row_crc, 0)[:28]
        record = head + struct.pack("<I", zlib.crc32(head))
        _pwrite_all(self._fds["meta"], line, meta_begin)
        if self._durable:
            _fdatasync(self._fds["data"])
            _fdatasync(self._fds["meta"])
        _pwrite_all(self._fds["commits"], record, t * _RECORD_SIZE)
        if self._durable:
            _fdatasync(self._fds["commits"])
        self._count = t + 1
        self._meta_ends.append(meta_end)
        self._row_crcs.append(row_crc)
        self._last_step = step
        self._dirty = False
        return t

    def append_async(self, vector: Any, **step_meta: Any) -> int:
        """Queue one snapshot for a compiled background writer and return its index t at once.

        For training loops that cannot wait for the write (see ``fractaldiff.train.Recorder``):
        the checksum, the writes and the commit record happen on a writer thread that never
        holds the GIL, in submission order, so the store's guarantees are those of
        :meth:`append` for every snapshot whose job has finished. Snapshots are visible to
        readers, and survive the process being killed, once :meth:`collect_async` has reported
        them (or after :meth:`wait_async`, :meth:`flush`, :meth:`close`, or any read through
        this object, which all wait for the queue first).

        ``vector`` must not be modified until its snapshot is reported (float32/float64 arrays
        of the store's dtype are not copied). NaN/Inf values are stored, and counted in the
        report, not refused; every snapshot's metadata gets ``nonfinite`` (True when the row or
        the caller says so). Metadata as for :meth:`append`.

        Returns
        -------
        int
            The index t the snapshot will have.
        """
        if self._closed:
            raise ValueError(f"snapshot store {self.path} is closed")
        if self.mode != "a":
            raise ValueError(f"snapshot store {self.path} is open read-only; open it with "
                             f"mode='a' to append")
        if self._checksum_kind == "crc32" or not _NATIVE_APPEND:  # old format: in line
            t = self.append(vector, allow_nonfinite=True, **step_meta)
            row = self._prepare_row(vector, True)
            self._async_done.append((t, self._last_step, int(np.count_nonzero(~np.isfinite(row)))))
            return t
        if self._dirty:
            self._rescan_after_error()
        row = self._prepare_row(vector, True)
        meta = dict(step_meta)
        meta["nonfinite"] = bool(meta.get("nonfinite", False))  # the writer flips it on NaN/Inf
        line, step = self._prepare_meta(meta)
        t = self._count
        meta_begin = self._meta_ends[-1] if t else 0
        meta_end = meta_begin + len(line)
        if self._writer is None:  # it reserves file space ahead itself, off this thread
            from .. import _core

            self._writer = _core.AppendWriter(self._fds["data"], self._fds["meta"],
                                              self._fds["commits"], self._checksum,
                                              self._durable, self._allocated)
        self._writer.submit(row, t * self._row_bytes, line, meta_begin, t * _RECORD_SIZE,
                            t + 1, meta_end, t)
        self._count = t + 1
        self._meta_ends.append(meta_end)
        self._row_crcs.append(0)
        self._last_step = step
        self._async_steps[t] = step
        return t

    def collect_async(self) -> list[tuple[int, int, int]]:
        """``(t, step, n_nonfinite)`` of the queued snapshots written since the last call.

        Raises the first write error (``OSError``); the store then holds exactly the snapshots
        written before it, and appending can go on.
        """
        out, self._async_done = self._async_done, []
        if self._writer is None:
            return out
        failure = None
        for t, crc, n_bad, err, stage in self._writer.collect():
            step = self._async_steps.pop(t)
            if err == 0:
                self._row_crcs[t] = crc
                out.append((t, step, n_bad))
            elif failure is None and err > 0:
                failure = (t, err, stage)
        if failure is not None:
            self._writer.wait()
            for t, *_ in self._writer.collect():
                self._async_steps.pop(t, None)
            self._writer = None  # it stopped at the failure; the next append_async starts anew
            t, err, stage = failure
            what = {1: DATA_FILE, 2: METADATA_FILE, 3: COMMIT_FILE}.get(stage, "sync")
            self._dirty = True  # trust only the disk from here on
            try:
                self._rescan_after_error()
            except OSError:
                pass  # the next append rescans again
            raise OSError(err, f"{os.strerror(err)} while appending snapshot {t} to "
                               f"{self.path / what}; the store keeps the snapshot(s) written "
                               f"before it")
        return out

    def wait_async(self) -> list[tuple[int, int, int]]:
        """Wait for every queued snapshot; returns :meth:`collect_async`'s report."""
        if self._writer is not None:
            self._writer.wait()
        return self.collect_async()

    def parts_writer(self, parts: Sequence[Any]) -> PartsWriter:
        """A writer that appends rows held in several arrays, straight from their memory.

        For recording a model whose parameters live in separate tensors (see
        ``fractaldiff.train.Recorder``): each :meth:`PartsWriter.append` digests the arrays where
        they are (checksum and NaN/Inf count in one pass), writes them as one row with a single
        vectored write, then the metadata line and the commit record, in one compiled call
        without the GIL: no gathered copy and no background thread. The guarantees are those of
        :meth:`append` (crash-safe once it returns); NaN/Inf values are stored and counted, not
        refused, and every snapshot's metadata gets ``nonfinite`` as with :meth:`append_async`.

        Parameters
        ----------
        parts : sequence of numpy.ndarray
            C-contiguous arrays of the store's dtype (native byte order) whose concatenation, in
            order, is one row of ``n_params`` values, e.g. ``[p.detach().numpy() for p in
            model.parameters()]``. They are read at every append (keep them alive and in place;
            a tensor whose storage is replaced needs a new writer). They must not change
            while an append runs: the row is written and its checksum taken from their memory
            (another thread updating them meanwhile leaves a row whose checksum does not match;
            use :meth:`append` of a private copy then).

        Returns
        -------
        PartsWriter

        Raises
        ------
        ValueError
            Read-only or closed store, wrong dtype, non-contiguous part, wrong total size, or a
            store format without the compiled append (``row_checksum="crc32"``, big-endian).
        """
        self._check_writable()
        if self._checksum_kind == "crc32" or not _NATIVE_APPEND:
            raise ValueError(
                f"snapshot store {self.path}: parts_writer needs the fd64 row checksum on a "
                f"little-endian machine (this store uses {self._checksum_kind!r}); use append"
            )
        arrays = []
        total = 0
        for i, part in enumerate(parts):
            if not isinstance(part, np.ndarray):
                raise TypeError(f"parts[{i}] must be a numpy array, got {type(part).__name__}")
            if part.dtype != self._dtype or not part.dtype.isnative:
                raise ValueError(
                    f"parts[{i}] has dtype {part.dtype}; the store holds {self._dtype.name}"
                )
            if not part.flags.c_contiguous:
                raise ValueError(f"parts[{i}] is not C-contiguous")
            arrays.append(part.reshape(-1))
            total += part.size
        if total != self._n_params:
            raise ValueError(
                f"the parts hold {total} values but this store holds n_params={self._n_params} "
                f"per snapshot"
            )
        return PartsWriter(self, arrays)

    def _settle(self) -> None:
        """Finish queued appends before anything reads or writes synchronously; reports that
        were not collected stay available to :meth:`collect_async`."""
        done = self.wait_async()  # (this replaces self._async_done: extend the new list)
        self._async_done.extend(done)

    def _rescan_after_error(self) -> None:
        self._count = 0
        self._meta_ends = []
        self._row_crcs = []
        self._records = []
        self._scan()
        self._cut_tail()
        self._dirty = False

    def flush(self) -> None:
        """Make every appended snapshot durable (fsync); a no-op in read mode.

        Appends survive the writer being killed without this; it guards against power loss.
        """
        self._check_open()
        if self.mode == "a":
            for key in ("data", "meta", "commits"):
                os.fsync(self._fds[key])

    def update_meta(self, **items: Any) -> None:
        """Add or replace run-level metadata keys (atomic rewrite of ``manifest.json``)."""
        self._check_writable()
        manifest = copy.deepcopy(self._manifest)
        meta = dict(manifest.get("meta") or {})
        for key, value in items.items():
            meta[key] = _to_json_value(value, f"meta {key}", allow_nan=False)
        manifest["meta"] = meta
        _write_json_atomic(self.path / MANIFEST_FILE, manifest)
        self._manifest = manifest

    def verify(self, start: int = 0, stop: int | None = None) -> int:
        """Check the checksums of committed rows ``start..stop-1`` against their commit records.

        Reads every byte of those rows. Returns the number of rows checked; raises
        :class:`StoreCorruptedError` naming the first damaged row. Stores created with
        ``checksum=False`` only have their metadata checked.
        """
        self._check_open()
        stop = self._count if stop is None else min(_index_int(stop, "stop"), self._count)
        start = max(0, _index_int(start, "start"))
        self._load_records()
        if not self._checksum:
            return 0
        mm = self.as_memmap()
        for t in range(start, stop):
            if _row_checksum(mm[t], self._checksum_kind) != self._row_crcs[t]:
                raise StoreCorruptedError(
                    f"{self.path / DATA_FILE}: snapshot {t} (bytes {t * self._row_bytes}.."
                    f"{(t + 1) * self._row_bytes - 1}) does not match its checksum in "
                    f"{self.path / COMMIT_FILE}"
                )
        return max(0, stop - start)

    def to_zarr(
        self,
        path: Any,
        *,
        chunk_bytes: int = 16 * 2**20,
        overwrite: bool = False,
    ) -> Any:
        """Copy the committed snapshots to a zarr v3 array with time-contiguous chunks.

        Parameters
        ----------
        path : str, os.PathLike or zarr store
            Where to write the array.
        chunk_bytes : int
            Target chunk size; chunks hold all T snapshots of a range of columns.
        overwrite : bool
            Replace an existing array at ``path``.

        Returns
        -------
        zarr.Array
            With attributes ``meta``, ``layout``, ``steps`` and ``fractaldiff_format``.

        Notes
        -----
        Needs the optional package zarr (>= 3). Memory use: one chunk.
        """
        self._check_open()
        try:
            import zarr
        except ImportError:
            raise ImportError(
                "SnapshotStore.to_zarr needs the optional package zarr (>= 3): pip install zarr"
            ) from None
        t, d = self.shape
        cols = max(1, min(d, int(chunk_bytes) // max(1, t * self._dtype.itemsize)))
        attrs = {
            "fractaldiff_format": FORMAT_NAME,
            "meta": self.meta,
            "layout": None if self._layout is None else self._layout.to_list(),
            "steps": self.steps.tolist(),
        }
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        arr = zarr.create_array(
            store=path,
            shape=(t, d),
            chunks=(max(t, 1), cols),
            dtype=self._dtype,
            attributes=attrs,
            overwrite=overwrite,
        )
        if t:
            for start in range(0, d, cols):
                stop = min(d, start + cols)
                arr[:, start:stop] = self.column_block(start, stop)
        return arr

    # --- lifetime ----------------------------------------------------------------------------

    def _release(self) -> None:
        if getattr(self, "_writer", None) is not None:
            self._writer = None  # its destructor drains the queue and joins the thread
        if getattr(self, "_pool", None) is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
        self._fds = {}
        if self._lock_fd >= 0:
            try:
                os.close(self._lock_fd)  # closing the descriptor releases the flock
            except OSError:  # pragma: no cover
                pass
            self._lock_fd = -1
        self._mm = None
        self._closed = True

    def close(self) -> None:
        """Flush (in mode ``"a"``), release the writer lock and close the files. Idempotent."""
        if self._closed:
            return
        try:
            if self.mode == "a":
                os.ftruncate(self._fds["data"], self._count * self._row_bytes)  # trim reserve
                self.flush()
        finally:
            self._release()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._release()
        except Exception:  # pragma: no cover
            pass

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickles (e.g. into dask worker processes) as a read-only view of the same T snapshots.
        self._check_open()
        return (_reopen_read_only, (str(self.path), self._count, self._recover))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"mode={self.mode!r}"
        return (
            f"SnapshotStore({str(self.path)!r}, shape={self.shape}, dtype={self._dtype.name}, "
            f"{state})"
        )


class PartsWriter:
    """Appends one row held in several arrays to a store (see
    :meth:`SnapshotStore.parts_writer`).

    Attributes
    ----------
    store : SnapshotStore
    parts : list of numpy.ndarray
        The arrays, flattened views, in row order.
    """

    def __init__(self, store: SnapshotStore, parts: list[np.ndarray]) -> None:
        from .. import _core

        self.store = store
        self.parts = parts
        self._native = _core.PartsAppender(
            store._fds["data"], store._fds["meta"], store._fds["commits"], list(parts),
            store._checksum, store._durable,
        )

    def append(self, **step_meta: Any) -> tuple[int, int]:
        """Append the parts' current values as one snapshot, with its metadata.

        Parameters
        ----------
        **step_meta
            As for :meth:`SnapshotStore.append`; ``nonfinite`` (default False) is set True when
            the row holds NaN/Inf.

        Returns
        -------
        (int, int)
            The index t of the new snapshot and its number of NaN/Inf values.
        """
        st = self.store
        st._check_writable()
        meta = dict(step_meta)
        meta["nonfinite"] = bool(meta.get("nonfinite", False))  # flipped on NaN/Inf
        line, step = st._prepare_meta(meta)
        return self.append_line(line, step)

    def append_line(self, line: bytes, step: int) -> tuple[int, int]:
        """:meth:`append` with the metadata line already made: one JSON object holding
        ``"step": step`` and ``"nonfinite":false`` (written exactly so, no spaces: it is
        flipped to ``"nonfinite":true `` on NaN/Inf), ending in a newline. For callers that
        format their lines from a template (the recorder); ``step`` must increase."""
        st = self.store
        if st._closed:
            raise ValueError(f"snapshot store {st.path} is closed")
        if st._writer is not None and st._writer.pending():
            st._settle()  # queued append_async rows go first
        if st._dirty:
            st._rescan_after_error()
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"step must be an integer, got {type(step).__name__} {step!r}")
        step = int(step)
        if not -(2**63) <= step < 2**63:
            raise ValueError(f"step={step} does not fit in int64")
        last = st._last_step
        if last is not None and step <= last:
            raise ValueError(
                f"step={step} must be larger than the last snapshot's step {last} "
                f"(steps increase strictly)"
            )
        t = st._count
        meta_begin = st._meta_ends[-1] if t else 0
        meta_end = meta_begin + len(line)
        row_bytes = st._row_bytes
        if (t + 1) * row_bytes > st._allocated:
            st._preallocate((t + 1) * row_bytes)
        st._dirty = True
        crc, n_bad, err, stage = self._native.append(
            t * row_bytes, line, meta_begin, t * _RECORD_SIZE, t + 1, meta_end
        )
        if err:
            what = {1: DATA_FILE, 2: METADATA_FILE, 3: COMMIT_FILE}.get(stage, "sync")
            raise OSError(err, f"{os.strerror(err)} while appending to {st.path / what}")
        st._count = t + 1
        st._meta_ends.append(meta_end)
        st._row_crcs.append(crc)
        st._last_step = step
        st._dirty = False
        return t, n_bad

    def digest(self) -> tuple[int, int, int]:
        """(fd64 checksum, number of NaN/Inf values, index of the first or -1) of the parts'
        current values, as ``_core.digest_row`` of their concatenation."""
        return tuple(int(v) for v in self._native.digest())  # type: ignore[return-value]


def _reopen_read_only(path: str, count: int, recover: bool) -> SnapshotStore:
    """Unpickle a store: open ``path`` read-only, showing exactly its first ``count`` snapshots."""
    if recover:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreRecoveryWarning)
            store = SnapshotStore(path, mode="r", recover=True)
    else:
        store = SnapshotStore(path, mode="r")
    if store._count < count:
        n = store._count
        store.close()
        raise StoreCorruptedError(
            f"snapshot store {path} now has {n} committed snapshots, fewer than the {count} of "
            f"the pickled store"
        )
    store._count = count
    del store._meta_ends[count:], store._row_crcs[count:]
    return store


def _lock(fd: int, where: Path) -> None:
    """Take the exclusive writer lock without waiting; raise StoreLockedError if held."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StoreLockedError(
            f"snapshot store {where} is already open for appending by another writer "
            f"(it holds {where / LOCK_FILE}); open it with mode='r' to read"
        ) from None


def _rmtree_quiet(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("fractaldiff")
    except Exception:  # pragma: no cover
        return "unknown"

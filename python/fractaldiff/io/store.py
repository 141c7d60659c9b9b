"""An append-only, crash-safe on-disk store of weight snapshots: :class:`SnapshotStore`.

A store is a directory holding ``manifest.json`` (run-level metadata, D, dtype, layout, with a
checksum), ``snapshots.bin`` (raw little-endian rows), ``steps.jsonl`` (one JSON line per
snapshot) and ``commits.bin`` (one 32-byte commit record per snapshot, written last). The format,
what it promises (durability, what readers see during writes and recoveries, what ``verify``
proves) and why it is not zarr are in docs/store.md; :mod:`.format`, :mod:`.recovery` and
:mod:`.writer` hold the layout, the commit-log rules and the append paths.
"""

from __future__ import annotations

import copy
import errno
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._arrays import (
    check_block_range,
    check_out,
    check_store_dtype,
    column_blocks,
    index_int,
    pread_all,
    pread_into,
    pwrite_all,
    split_key,
)
from .format import (
    COMMIT_FILE,
    DATA_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_FILE,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    METADATA_FILE,
    RECORD_SIZE,
    StoreCorruptedError,
    StoreLockedError,
    StoreRecoveryWarning,
    build_manifest,
    dump_json_value,
    is_index,
    load_json,
    manifest_text,
    open_member,
    parse_manifest,
    read_member,
)
from .layout import LayoutEntry, ParameterLayout
from .recovery import scan_commits
from .writer import (
    NATIVE_APPEND,
    AppendPath,
    DirectPath,
    PartsPath,
    QueuedPath,
    Slot,
    StoreFiles,
    Written,
)

try:  # POSIX advisory locks
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

_fdatasync = getattr(os, "fdatasync", os.fsync)
#: Rows per positioned read when indexing, so temporaries stay near this many bytes.
_READ_CHUNK = 32 * 2**20
#: How long a reader waits for a recovery in progress to finish (seconds).
_READER_WAIT = 10.0


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


def _norm_index(key: Any, n: int, axis: str) -> tuple[str, Any]:
    """("int", i) | ("slice", range) | ("array", intp array) for one axis, or IndexError."""
    if isinstance(key, slice):
        return "slice", range(n)[key]
    if is_index(key):
        k = int(key)
        if not -n <= k < n:
            raise IndexError(f"{axis} index {k} is out of range for size {n}")
        return "int", k % n
    arr = np.asarray(key)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise IndexError(f"boolean {axis} index has shape {arr.shape}, expected ({n},)")
        return "array", np.flatnonzero(arr)
    if arr.dtype.kind in "iu" or arr.size == 0:
        arr = arr.astype(np.intp)
        if arr.ndim == 0:
            return _norm_index(int(arr), n, axis)
        if arr.size and (arr.min() < -n or arr.max() >= n):
            raise IndexError(f"{axis} index out of range for size {n}")
        return "array", arr % n if arr.size else arr
    raise IndexError(
        f"only integers, slices, ellipsis and integer or boolean arrays are valid {axis} indices"
    )


def _rel_slice(r: range, c0: int) -> slice:
    """The slice selecting range ``r`` from an array that starts at ``c0``."""
    start = r.start - c0
    stop = r.stop - c0
    return slice(start, stop if stop >= 0 else None, r.step)


# --------------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------------


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding a snapshot store (it has ``manifest.json``).

    Parameters
    ----------
    path : str or os.PathLike
        The directory to check.

    Returns
    -------
    bool
    """
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
        On damage (anything but a torn tail), open the intact prefix with a
        :class:`StoreRecoveryWarning` instead of raising :class:`StoreCorruptedError`. In mode
        ``"a"`` the damaged rest is cut off; that waits for no one: while other processes have
        the store open for reading it raises :class:`StoreLockedError` instead.
    durable : bool
        Mode ``"a"`` only: fsync each snapshot before its commit record and the record after it,
        so that it survives a power loss once ``append`` returns (slower).

    Returns
    -------
    SnapshotStore
    """
    return SnapshotStore(path, mode=mode, recover=recover, durable=durable)


def _flock(fd: int, op: int) -> bool | None:
    """flock without waiting: True when taken, False when another holder conflicts, None when
    the file system cannot lock this descriptor (e.g. a directory on NFS)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP,
                         errno.ENOSYS):
            return None
        raise
    return True


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("fractaldiff")
    except Exception:  # pragma: no cover
        return "unknown"


class SnapshotStore:
    """An append-only, crash-safe on-disk store of weight snapshots W[t, d].

    Create one with :meth:`SnapshotStore.create`, open one with :func:`open_store` (or this
    constructor). It reads like a read-only 2-D numpy array of shape ``(T, D)`` (``store[t]``,
    ``store[a:b]``, ``store[:, cols]``, ``store[a:b, c:d]``, fancy and boolean indices; results
    are in-memory copies, read with positioned reads) holding the *committed* snapshots as of
    opening, the last :meth:`append` or the last :meth:`refresh`. See docs/store.md.

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
        n_params = index_int(n_params, "n_params")
        if n_params < 1:
            raise ValueError(f"n_params must be >= 1, got {n_params}")
        dt = check_store_dtype(dtype)
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a mapping (dict), got {type(meta).__name__}")
        meta_json = {} if meta is None else load_json(
            dump_json_value(dict(meta), "meta", allow_nan=False), "meta", TypeError
        )
        lay = None if layout is None else ParameterLayout.from_spec(layout, n_params, "layout")
        if path.is_symlink() or (path.exists() and not (path.is_dir() and not any(path.iterdir()))):
            raise FileExistsError(
                f"{path} already exists; open an existing store with "
                f"fractaldiff.open_store({str(path)!r}, mode='a') or choose a new path"
            )
        parent = path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"cannot create store {path}: folder {parent} does not exist")
        manifest = build_manifest(
            n_params, dt, lay, meta_json, bool(checksum),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), f"fractaldiff {_package_version()}",
        )
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating-", dir=parent))
        try:
            for name in (DATA_FILE, METADATA_FILE, COMMIT_FILE, LOCK_FILE):
                fd = os.open(tmp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o644)
                os.fsync(fd)
                os.close(fd)
            dfd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
            try:
                _write_manifest(dfd, tmp / MANIFEST_FILE, manifest)
            finally:
                os.close(dfd)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(parent)
        return cls(path, mode="a", durable=durable)

    def __init__(
        self,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        recover: bool = False,
        durable: bool = False,
    ) -> None:
        self._fds: dict[str, int] = {}
        self._dir_fd = -1
        self._lock_fds: list[int] = []
        self._closed = True
        self._path: AppendPath | None = None  # the direct path, created on first append
        self._queue: QueuedPath | None = None  # the background path of append_async
        self._async_steps: dict[int, int] = {}
        self._async_done: list[tuple[int, int, int]] = []
        self._allocated = 0
        self._torn_warned: str | None = None
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' (read) or 'a' (append), got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self._durable = bool(durable)
        self._recover = bool(recover)
        if not self.path.exists():
            raise FileNotFoundError(f"no snapshot store at {self.path}: it does not exist")
        if not self.path.is_dir() or not os.path.lexists(self.path / MANIFEST_FILE):
            raise FileNotFoundError(
                f"{self.path} is not a snapshot store: {self.path / MANIFEST_FILE} not found"
            )
        try:
            self._dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY
                                   | getattr(os, "O_CLOEXEC", 0))
            self._load_manifest()
            if mode == "a":
                if not NATIVE_APPEND:  # pragma: no cover - big-endian machines
                    raise ValueError("appending to a snapshot store needs a little-endian machine")
                self._lock_writer()
            flags = os.O_RDWR if mode == "a" else os.O_RDONLY
            for key, name in (("data", DATA_FILE), ("meta", METADATA_FILE),
                              ("commits", COMMIT_FILE)):
                self._fds[key] = open_member(self._dir_fd, name, flags, str(self.path / name))
            if mode == "r":
                self._lock_reader(self._fds["data"])
            self._count = 0
            self._meta_ends: list[int] = []
            self._row_crcs: list[int] = []
            self._records: list[dict[str, Any]] = []
            self._last_step: int | None = None
            self._mm: np.ndarray | None = None
            self._mm_count = -1
            self._dirty = False
            self._closed = False
            n_records = self._scan()
            if mode == "a":
                self._cut_tail(n_records)
        except BaseException:
            self._release()
            raise

    def _member(self, name: str) -> str:
        return str(self.path / name)

    def _load_manifest(self) -> None:
        where = self._member(MANIFEST_FILE)
        m = parse_manifest(read_member(self._dir_fd, MANIFEST_FILE, where, MAX_MANIFEST_BYTES),
                           where)
        self._manifest = m.raw
        self._n_params = m.n_params
        self._disk_dtype = m.disk_dtype
        self._dtype = m.dtype
        self._row_bytes = m.row_bytes
        self._layout = m.layout
        self._checksum = m.checksum

    def _lock_writer(self) -> None:
        """The writer lock: an exclusive flock on the store's directory itself (deleting or
        replacing a file cannot bypass it), and on writer.lock for older fractaldiff writers."""
        if _flock(self._dir_fd, fcntl.LOCK_EX if fcntl else 0) is False:
            raise StoreLockedError(
                f"snapshot store {self.path} is already open for appending by another writer; "
                f"open it with mode='r' to read"
            )
        # (where a directory cannot be locked, e.g. on NFS, writer.lock alone guards)
        self._lock_fds.append(self._dir_fd)
        fd = open_member(self._dir_fd, LOCK_FILE, os.O_RDWR, self._member(LOCK_FILE), create=True)
        self._lock_fds.append(fd)
        if _flock(fd, fcntl.LOCK_EX if fcntl else 0) is False:
            raise StoreLockedError(
                f"snapshot store {self.path} is already open for appending by another writer "
                f"(it holds {self.path / LOCK_FILE}); open it with mode='r' to read"
            )

    def _lock_reader(self, fd: int) -> None:
        """A shared flock on the data file, held while reading (and by memory maps): a recovery
        that would cut committed snapshots refuses while any is held."""
        if fcntl is None:  # pragma: no cover
            return
        deadline = time.monotonic() + _READER_WAIT
        while _flock(fd, fcntl.LOCK_SH) is False:
            if time.monotonic() > deadline:
                raise StoreLockedError(
                    f"snapshot store {self.path} is being recovered by a writer (it holds "
                    f"{self.path / DATA_FILE} exclusively); try again later"
                )
            time.sleep(0.01)

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
        """Read commit records past the ones already known; returns the number of full-length
        records in the commit file."""
        start = self._count
        res = scan_commits(
            self._fds["commits"], self._fds["data"], self._fds["meta"],
            start=start,
            prev_meta_end=self._meta_ends[-1] if self._meta_ends else 0,
            row_bytes=self._row_bytes,
            known_meta_ends=self._meta_ends,
            names=(self._member(COMMIT_FILE), self._member(DATA_FILE),
                   self._member(METADATA_FILE)),
        )
        if res.count < start:
            raise StoreCorruptedError(
                f"{self.path}: the store shrank from {start} to {res.count} committed snapshots "
                f"while open ({res.damage})"
            )
        if res.damage is not None:
            self._damage(res.damage, res.count)
        if res.torn is not None and res.torn != self._torn_warned:
            self._torn_warned = res.torn
            warnings.warn(res.torn + (" (cut off)" if self.mode == "a" else ""),
                          StoreRecoveryWarning, stacklevel=4)
        self._meta_ends.extend(res.meta_ends)
        self._row_crcs.extend(res.row_crcs)
        self._count = res.count
        return res.n_records

    def _cut_tail(self, n_records: int) -> None:
        """Append mode: drop everything past the intact prefix. Cutting snapshots that readers
        may have seen (damage with recover=True) needs the data file to itself."""
        n = self._count
        meta_end = self._meta_ends[-1] if n else 0
        targets = (
            ("commits", n * RECORD_SIZE),
            ("data", n * self._row_bytes),
            ("meta", meta_end),
        )
        exclusive = n < n_records and fcntl is not None
        locked = _flock(self._fds["data"], fcntl.LOCK_EX) if exclusive else None
        if locked is False:
            raise StoreLockedError(
                f"snapshot store {self.path}: recovery would cut committed snapshots "
                f"{n}..{n_records - 1}, but other processes have the store open for reading (or "
                f"hold memory maps of it); close them and retry, or read the intact prefix with "
                f"open_store(..., recover=True) in mode 'r'"
            )
        try:
            for key, size in targets:
                fd = self._fds[key]
                if os.fstat(fd).st_size != size:
                    os.ftruncate(fd, size)
                    _fdatasync(fd)
        finally:
            if locked:
                fcntl.flock(self._fds["data"], fcntl.LOCK_UN)
        self._allocated = n * self._row_bytes
        self._last_step = self._step_of(n - 1) if n else None

    def _step_of(self, t: int) -> int:
        rec = self._record(t)
        step = rec.get("step", t)
        if not isinstance(step, int) or isinstance(step, bool) or not -(2**63) <= step < 2**63:
            raise StoreCorruptedError(
                f"{self._member(METADATA_FILE)}: snapshot {t} has step {step!r}, not an int64"
            )
        return step

    # --- reading -----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"snapshot store {self.path} is closed")
        if self._queue is not None and self._queue.pending():
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

    @property
    def has_checksums(self) -> bool:
        """Whether commit records hold row checksums (stores created with ``checksum=True``)."""
        return self._checksum

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
        change: later appends go past them. It stays valid after :meth:`close`: while it (or a
        view of it) is alive it holds a shared lock on the data file, so no fractaldiff
        recovery cuts the rows it maps (truncating the file by other means would make reading
        the map fail with SIGBUS, as for any memory map).
        """
        self._check_open()
        if self._mm is None or self._mm_count != self._count:
            if self._count == 0:
                mm = np.empty((0, self._n_params), dtype=self._disk_dtype)
                mm.flags.writeable = False
            else:
                fd = open_member(self._dir_fd, DATA_FILE, os.O_RDONLY, self._member(DATA_FILE))
                try:
                    self._lock_reader(fd)
                    size = os.fstat(fd).st_size
                    if size < self._count * self._row_bytes:
                        raise StoreCorruptedError(
                            f"{self._member(DATA_FILE)} holds {size} bytes, fewer than its "
                            f"{self._count} committed snapshots need: it was truncated"
                        )
                    with open(fd, "rb", closefd=False) as fh:
                        # the map holds its own duplicate of fd: the lock lives as long as it
                        mm = np.memmap(fh, dtype=self._disk_dtype, mode="r",
                                       shape=(self._count, self._n_params))
                finally:
                    os.close(fd)
            self._mm = mm
            self._mm_count = self._count
        return self._mm

    def _read_rows(self, rows: np.ndarray, c0: int, c1: int) -> np.ndarray:
        """Rows ``rows`` (increasing or not), columns ``c0..c1-1``, by positioned reads."""
        out = np.empty((len(rows), c1 - c0), dtype=self._disk_dtype)
        if out.size == 0:
            return out
        fd = self._fds["data"]
        rb = self._row_bytes
        item = self._disk_dtype.itemsize
        if c1 - c0 == self._n_params:  # whole rows: one read per run of consecutive rows
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
                got = pread_into(fd, out[a:b], int(rows[a]) * rb)
                if got != (b - a) * rb:
                    self._raise_short(int(rows[a]) + got // rb)
        else:
            want = (c1 - c0) * item
            for i, r in enumerate(rows.tolist()):
                if pread_into(fd, out[i], r * rb + c0 * item) != want:
                    self._raise_short(r)
        return out

    def _raise_short(self, t: int) -> None:
        raise StoreCorruptedError(
            f"{self._member(DATA_FILE)} ends before committed snapshot {t}: the file was "
            f"truncated while this store was open (T={self._count})"
        )

    def _take(self, rkey: Any, ckey: Any) -> Any:
        rk, rsel = _norm_index(rkey, self._count, "snapshot")
        ck, csel = _norm_index(ckey, self._n_params, "column")
        if ck == "int":
            c0, c1, csub = csel, csel + 1, 0
        elif ck == "slice":
            c0 = min(csel[0], csel[-1]) if len(csel) else 0
            c1 = max(csel[0], csel[-1]) + 1 if len(csel) else 0
            csub = _rel_slice(csel, c0) if len(csel) else slice(0, 0)
        else:
            c0 = int(csel.min()) if csel.size else 0
            c1 = int(csel.max()) + 1 if csel.size else 0
            csub = csel - c0
        if rk == "int":
            rows = np.array([rsel], dtype=np.intp)
        elif rk == "slice":
            rows = np.arange(rsel.start, rsel.stop, rsel.step, dtype=np.intp)
        else:
            rows = np.unique(rsel)
        if rk == "array" and ck == "array":  # broadcast (pointwise) indexing: numpy does it
            block = self._read_rows(rows, c0, c1)
            return block[np.searchsorted(rows, rsel), csub]
        per_row = max(1, (c1 - c0) * self._disk_dtype.itemsize)
        step = max(1, _READ_CHUNK // per_row)
        parts = [self._read_rows(rows[i : i + step], c0, c1)[:, csub]
                 for i in range(0, len(rows), step)]
        if parts:
            m = np.concatenate(parts) if len(parts) > 1 else parts[0]
        else:
            m = np.empty((0, c1 - c0), dtype=self._disk_dtype)[:, csub]
        if rk == "int":
            return m[0]
        if rk == "array":
            return m[np.searchsorted(rows, rsel)]
        return m

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
        start, stop = check_block_range(start, stop, self._n_params)
        out = check_out(out, (self._count, stop - start), self._dtype)
        if self._count and stop > start:
            step = max(1, _READ_CHUNK // ((stop - start) * self._disk_dtype.itemsize))
            for a in range(0, self._count, step):
                b = min(self._count, a + step)
                out[a:b] = self._read_rows(np.arange(a, b), start, stop)
        return out

    def column_blocks(self, width: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)`` for consecutive column blocks of ``width`` columns."""
        return column_blocks(self, self._n_params, width)

    def __getitem__(self, key: Any) -> Any:
        self._check_open()
        rkey, ckey = split_key(key)
        result = self._take(rkey, ckey)
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
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    # metadata

    def _record(self, t: int) -> dict[str, Any]:
        if t < len(self._records):
            return self._records[t]
        begin = self._meta_ends[t - 1] if t else 0
        return self._parse_lines(
            t, t + 1, pread_all(self._fds["meta"], self._meta_ends[t] - begin, begin)
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
                rec = load_json(line, "the line", allow_nan=True)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                msg = (
                    f"{self._member(METADATA_FILE)}: the metadata of snapshot {t} (bytes "
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
            raw = pread_all(self._fds["meta"], self._meta_ends[self._count - 1] - begin, begin)
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
        """The ``step`` of every committed snapshot, int64 array of length T (-1 where a damaged
        entry read with ``recover=True`` has none)."""
        recs = self._load_records()
        out = np.empty(len(recs), dtype=np.int64)
        for t, r in enumerate(recs):
            out[t] = self._step_of(t) if "step" in r else -1
        return out

    # --- writing -----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        self._check_open()
        if self.mode != "a":
            raise ValueError(
                f"snapshot store {self.path} is open read-only; open it with mode='a' to append"
            )

    def _prepare_row(self, vector: Any) -> np.ndarray:
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
        if isinstance(vector, np.ma.MaskedArray):
            raise TypeError("vector is a numpy masked array; pass vector.filled(...) or "
                            "vector.data explicitly")
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
            return np.ascontiguousarray(arr, dtype=self._disk_dtype)

    def _nonfinite_error(self, vector: Any, row: np.ndarray) -> ValueError:
        bad = np.flatnonzero(~np.isfinite(row))
        i = int(bad[0])
        arr = np.asarray(vector.detach().cpu().float() if _is_torch_tensor(vector) else vector)
        orig = arr[i]
        what = f"{orig}, too large for the store's dtype {self._dtype.name}" if np.isfinite(
            orig) else f"{orig}"
        return ValueError(
            f"vector contains {bad.size} non-finite value(s) (NaN/Inf, or too large for "
            f"{self._dtype.name}; first: vector[{i}] = {what}); pass allow_nonfinite=True "
            f"to store them anyway"
        )

    def _preallocate(self, need: int) -> None:
        """Reserve data-file space ahead of the appends, in steps of at least 64 MiB.

        Writing into already allocated file space is faster than extending the file on every
        append. Space past the committed rows is ignored by readers, cut off when a writer
        reopens the store, and trimmed by :meth:`close`.
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

    def metadata_line(self, step_meta: Mapping[str, Any]) -> tuple[bytes, int]:
        """The metadata line the next append would write, and its step.

        ``step_meta`` as the keyword arguments of :meth:`append` (``step`` defaults to the last
        step + 1). For writers that format lines themselves (:meth:`PartsWriter.append_line`).
        """
        step_meta = dict(step_meta)
        rec: dict[str, Any] = {}
        step = step_meta.pop("step", None)
        if step is None:
            step = 0 if self._last_step is None else self._last_step + 1
        elif _is_torch_tensor(step) or isinstance(step, np.ndarray):
            step = step.item()
        if not is_index(step):
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
            text = dump_json_value(rec, "metadata")
        except TypeError:
            for key, value in rec.items():
                dump_json_value(value, f"metadata {key}")
            raise
        return text.encode("utf-8") + b"\n", step

    def _slot(self, n_line: int) -> Slot:
        t = self._count
        begin = self._meta_ends[-1] if t else 0
        return Slot(t, t * self._row_bytes, begin, begin + n_line, t * RECORD_SIZE)

    def _files(self) -> StoreFiles:
        return StoreFiles(self._fds["data"], self._fds["meta"], self._fds["commits"],
                          self._checksum, self._durable)

    def _committed(self, slot: Slot, crc: int, step: int) -> None:
        self._count = slot.t + 1
        self._meta_ends.append(slot.meta_end)
        self._row_crcs.append(crc)
        self._last_step = step

    def _raise_write_error(self, w: Written, what_t: str = "") -> None:
        name = {1: DATA_FILE, 2: METADATA_FILE, 3: COMMIT_FILE}.get(w.stage, "sync")
        raise OSError(w.errno, f"{os.strerror(w.errno)} while appending{what_t} to "
                               f"{self.path / name}")

    def _write_now(self, path: AppendPath, line: bytes, step: int, row: np.ndarray | None,
                   allow_nonfinite: bool) -> Written:
        """Write one snapshot synchronously through ``path`` and commit it in the bookkeeping
        (the one place every synchronous append goes through)."""
        if self._dirty:  # a previous append was interrupted: trust only the disk
            self._rescan_after_error()
        slot = self._slot(len(line))
        self._preallocate(slot.row_offset + self._row_bytes)
        self._dirty = True
        w = path.write(slot, line, row, allow_nonfinite)
        assert w is not None
        if w.errno:
            self._raise_write_error(w)
        if w.n_nonfinite and not allow_nonfinite:  # nothing was committed
            os.ftruncate(self._fds["data"], slot.row_offset)
            self._allocated = slot.row_offset
            self._dirty = False
            return w
        self._committed(slot, w.row_crc, step)
        self._dirty = False
        return w

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
        row = self._prepare_row(vector)
        line, step = self.metadata_line(step_meta)
        if self._path is None:
            self._path = DirectPath(self._files())
        w = self._write_now(self._path, line, step, row, bool(allow_nonfinite))
        if w.n_nonfinite and not allow_nonfinite:
            raise self._nonfinite_error(vector, row)
        return w.t

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
        if self._dirty:
            self._rescan_after_error()
        row = self._prepare_row(vector)
        meta = dict(step_meta)
        meta["nonfinite"] = bool(meta.get("nonfinite", False))  # the writer flips it on NaN/Inf
        line, step = self.metadata_line(meta)
        slot = self._slot(len(line))
        if self._queue is None:  # it reserves file space ahead itself, off this thread
            self._queue = QueuedPath(self._files(), self._allocated)
        self._queue.write(slot, line, row, True)
        self._committed(slot, 0, step)  # provisional until collected
        self._async_steps[slot.t] = step
        return slot.t

    def collect_async(self) -> list[tuple[int, int, int]]:
        """``(t, step, n_nonfinite)`` of the queued snapshots written since the last call.

        Raises the first write error (``OSError``); the store then holds exactly the snapshots
        written before it, and appending can go on.
        """
        return self._collect(wait=False)

    def wait_async(self) -> list[tuple[int, int, int]]:
        """Wait for every queued snapshot; returns :meth:`collect_async`'s report."""
        return self._collect(wait=True)

    def _collect(self, wait: bool) -> list[tuple[int, int, int]]:
        out, self._async_done = self._async_done, []
        if self._queue is None:
            return out
        failure = None
        for w in self._queue.collect(wait=wait):
            step = self._async_steps.pop(w.t)
            if w.errno == 0:
                self._row_crcs[w.t] = w.row_crc
                out.append((w.t, step, w.n_nonfinite))
            elif failure is None and w.errno > 0:
                failure = w
        if failure is not None:
            for w in self._queue.collect(wait=True):
                self._async_steps.pop(w.t, None)
            self._queue = None  # it stopped at the failure; the next append_async starts anew
            self._dirty = True  # trust only the disk from here on
            try:
                self._rescan_after_error()
            except OSError:
                pass  # the next append rescans again
            self._raise_write_error(
                failure, f" snapshot {failure.t} (the store keeps the snapshot(s) written "
                         f"before it)")
        return out

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
            while an append runs.

        Returns
        -------
        PartsWriter

        Raises
        ------
        ValueError
            Read-only or closed store, wrong dtype, non-contiguous part or wrong total size.
        """
        self._check_writable()
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
        n_records = self._scan()
        self._cut_tail(n_records)
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
            meta[key] = load_json(dump_json_value(value, f"meta {key}", allow_nan=False),
                                  f"meta {key}", TypeError)
        manifest["meta"] = meta
        if manifest.get("format_version", 1) < FORMAT_VERSION:
            manifest["format_version"] = FORMAT_VERSION  # it gains a checksum
        _write_manifest(self._dir_fd, self.path / MANIFEST_FILE, manifest)
        self._manifest = manifest

    def verify(self, start: int = 0, stop: int | None = None) -> int:
        """Check the checksums of committed rows ``start..stop-1`` against their commit records.

        Reads every byte of those rows. Returns the number of rows checked; raises
        :class:`StoreCorruptedError` naming the first damaged row. Stores created with
        ``checksum=False`` only have their metadata checked. See docs/store.md for what this
        proves and what it does not.
        """
        self._check_open()
        stop = self._count if stop is None else min(index_int(stop, "stop"), self._count)
        start = max(0, index_int(start, "start"))
        self._load_records()
        for t in range(start, stop):
            self._step_of(t)
        if not self._checksum:
            return 0
        from .. import _core

        step = max(1, _READ_CHUNK // self._row_bytes)
        for a in range(start, stop, step):
            b = min(stop, a + step)
            block = self._read_rows(np.arange(a, b), 0, self._n_params)
            for t in range(a, b):
                digest = int(_core.digest_row(block[t - a], 1)[0]) & 0xFFFFFFFF
                if digest != self._row_crcs[t]:
                    raise StoreCorruptedError(
                        f"{self._member(DATA_FILE)}: snapshot {t} (bytes {t * self._row_bytes}.."
                        f"{(t + 1) * self._row_bytes - 1}) does not match its checksum in "
                        f"{self._member(COMMIT_FILE)}"
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
        chunk_bytes = index_int(chunk_bytes, "chunk_bytes")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
        t, d = self.shape
        cols = max(1, min(d, chunk_bytes // max(1, t * self._dtype.itemsize)))
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
        if getattr(self, "_queue", None) is not None:
            self._queue = None  # its destructor drains the queue and joins the thread
        self._path = None
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:  # pragma: no cover
                pass
        self._fds = {}
        for fd in self._lock_fds:  # closing the descriptors releases the flocks
            if fd != self._dir_fd:
                try:
                    os.close(fd)
                except OSError:  # pragma: no cover
                    pass
        self._lock_fds = []
        if self._dir_fd >= 0:
            try:
                os.close(self._dir_fd)
            except OSError:  # pragma: no cover
                pass
            self._dir_fd = -1
        self._mm = None
        self._closed = True

    def close(self) -> None:
        """Flush (in mode ``"a"``), release the writer lock and close the files. Idempotent."""
        if self._closed:
            return
        try:
            if self.mode == "a":
                if self._queue is not None:
                    self._settle()
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
        self.store = store
        self.parts = parts
        self._path = PartsPath(store._files(), parts)

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
        line, step = st.metadata_line(meta)
        return self.append_line(line, step)

    def append_line(self, line: bytes, step: int) -> tuple[int, int]:
        """:meth:`append` with the metadata line already made: one JSON object holding
        ``"step": step`` and ``"nonfinite":false`` (written exactly so, no spaces: it is
        flipped to ``"nonfinite":true `` on NaN/Inf), ending in a newline. For callers that
        format their lines from a template (the recorder); ``step`` must increase."""
        st = self.store
        st._check_open()  # also waits for queued append_async rows
        if st.mode != "a":
            st._check_writable()
        if not is_index(step):
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
        w = st._write_now(self._path, line, step, None, True)
        return w.t, w.n_nonfinite

    def digest(self) -> tuple[int, int, int]:
        """(fd64 checksum, number of NaN/Inf values, index of the first or -1) of the parts'
        current values, as ``_core.digest_row`` of their concatenation."""
        return self._path.digest()


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


def _write_manifest(dir_fd: int, where: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically, inside the directory ``dir_fd`` only: a new file (never
    through a link), fsync, rename over the old name, fsync the directory."""
    text = manifest_text(manifest).encode("utf-8")
    tmp = f".{MANIFEST_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
    try:
        try:
            pwrite_all(fd, text, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, MANIFEST_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass

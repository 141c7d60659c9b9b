"""The snapshot store's on-disk format: file names, the commit record, the manifest, and how
store files are opened (inside the store's directory only, never through a link).

See docs/store.md for the format and what it promises.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import stat
import struct
from typing import Any

import numpy as np

from .layout import ParameterLayout

__all__ = [
    "COMMIT_FILE",
    "DATA_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "MAX_JSON_DEPTH",
    "METADATA_FILE",
    "RECORD_DTYPE",
    "RECORD_SIZE",
    "Manifest",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreRecoveryWarning",
    "build_manifest",
    "dump_json_value",
    "load_json",
    "manifest_text",
    "open_member",
    "parse_manifest",
    "read_member",
]

FORMAT_NAME = "fractaldiff.snapshot-store"
#: 2: the manifest carries a checksum. Version 1 stores (no checksum) are still read.
FORMAT_VERSION = 2

MANIFEST_FILE = "manifest.json"
DATA_FILE = "snapshots.bin"
METADATA_FILE = "steps.jsonl"
COMMIT_FILE = "commits.bin"
LOCK_FILE = "writer.lock"
FILES = {"data": DATA_FILE, "metadata": METADATA_FILE, "commits": COMMIT_FILE}

#: One commit record: magic, flags (0), count, end of metadata, row checksum (low 32 bits of
#: fd64, or 0), CRC-32 of the first 28 bytes. Little-endian, 32 bytes.
RECORD = struct.Struct("<4sIQQII")
RECORD_SIZE = RECORD.size
MAGIC = b"FDC1"
RECORD_DTYPE = np.dtype(
    [
        ("magic", "S4"),
        ("flags", "<u4"),
        ("count", "<u8"),
        ("meta_end", "<u8"),
        ("row_crc", "<u4"),
        ("record_crc", "<u4"),
    ]
)
assert RECORD_DTYPE.itemsize == RECORD_SIZE

#: Deepest nesting of JSON arrays/objects accepted in any store or checkpoint file (and in
#: metadata given to a store): deep enough for any real metadata, far from the interpreter's
#: recursion limit.
MAX_JSON_DEPTH = 64
#: Largest manifest.json read (a layout of a million tensors is ~100 MB).
MAX_MANIFEST_BYTES = 256 * 2**20
#: Largest n_params a manifest may declare (2**48 values: far beyond any model).
MAX_PARAMS = 2**48


class StoreCorruptedError(ValueError):
    """A store file is damaged beyond a torn tail; the message names the file and the damage."""


class StoreLockedError(RuntimeError):
    """Another process holds the store's writer lock, or readers block a recovery."""


class StoreRecoveryWarning(RuntimeWarning):
    """A store was opened without part of its files: a torn tail after a crash, or (with
    ``recover=True``) the damaged rest after the intact prefix."""


# --------------------------------------------------------------------------------------------
# JSON with bounded nesting


def _depth_exceeds(obj: Any, limit: int) -> bool:
    """True when ``obj`` nests lists/dicts deeper than ``limit`` (iterative: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def load_json(text: str | bytes, what: str, error: type[Exception] = ValueError,
              allow_nan: bool = False) -> Any:
    """``json.loads`` that raises ``error`` naming ``what`` for invalid JSON, NaN/Infinity
    constants (unless ``allow_nan``) and nesting deeper than :data:`MAX_JSON_DEPTH` (never
    RecursionError)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        obj = json.loads(text, parse_constant=None if allow_nan else no_constant)
    except RecursionError:
        raise error(f"{what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what} is not valid JSON: {exc}") from None
    if _depth_exceeds(obj, MAX_JSON_DEPTH):
        raise error(f"{what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return obj


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays, torch tensors and similar: anything with .tolist()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


#: Compact encoders made once (json.dumps with options builds a new encoder per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_json_default)
_ENCODER_NO_NAN = json.JSONEncoder(separators=(",", ":"), default=_json_default, allow_nan=False)


def dump_json_value(value: Any, name: str, allow_nan: bool = True) -> str:
    """Compact JSON text of ``value`` (numpy and torch values converted), or TypeError naming
    ``name``; nesting is bounded by :data:`MAX_JSON_DEPTH` so that what is written reads back."""
    try:
        text = (_ENCODER if allow_nan else _ENCODER_NO_NAN).encode(value)
    except RecursionError:
        raise TypeError(
            f"{name} is nested too deeply to store (more than {MAX_JSON_DEPTH} levels)"
        ) from None
    except (TypeError, ValueError) as exc:
        extra = "" if allow_nan else " (NaN/Infinity are not allowed here)"
        raise TypeError(
            f"{name} must be JSON-serializable (numbers, strings, bools, None, lists, dicts, "
            f"numpy scalars/arrays){extra}: {exc}"
        ) from None
    # (fewer brackets than the limit cannot nest deeper: the common case costs two counts)
    if (
        text.count("[") + text.count("{") >= MAX_JSON_DEPTH
        and _depth_exceeds(json.loads(text), MAX_JSON_DEPTH - 1)
    ):
        raise TypeError(f"{name} is nested too deeply to store (more than {MAX_JSON_DEPTH} levels)")
    return text


# --------------------------------------------------------------------------------------------
# Opening files inside a store


def open_member(dir_fd: int, name: str, flags: int, where: str, *, create: bool = False) -> int:
    """Open the regular file ``name`` of the store directory ``dir_fd``.

    Never follows a symbolic link (``O_NOFOLLOW``), never blocks on a FIFO or device
    (``O_NONBLOCK`` until the type is checked), refuses anything but a regular file with
    :class:`StoreCorruptedError`, and in write modes also a file with other hard links
    (writing it would change a file outside the store). ``where`` is the path shown in
    messages.
    """
    extra = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if create:
        extra |= os.O_CREAT
    try:
        fd = os.open(name, flags | extra, 0o644, dir_fd=dir_fd)
    except FileNotFoundError:
        raise StoreCorruptedError(f"{where} is missing; the store is incomplete") from None
    except OSError:
        st = _lstat(dir_fd, name)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise StoreCorruptedError(
                f"{where} is a symbolic link; a store's files must be regular files inside its "
                f"folder (a store never reads or writes through links)"
            ) from None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise StoreCorruptedError(
                f"{where} is {_kind(st.st_mode)}, not a regular file"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreCorruptedError(f"{where} is {_kind(st.st_mode)}, not a regular file")
        if (flags & (os.O_WRONLY | os.O_RDWR)) and st.st_nlink > 1:
            raise StoreCorruptedError(
                f"{where} has {st.st_nlink} hard links; a store opened for appending only "
                f"writes files that belong to it alone (copy the store instead of linking it)"
            )
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None


def _kind(mode: int) -> str:
    for test, text in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return text
    return "not a regular file"


def read_member(dir_fd: int, name: str, where: str, limit: int) -> bytes:
    """The whole content of the regular file ``name`` (opened as :func:`open_member`), at most
    ``limit`` bytes (else :class:`StoreCorruptedError`)."""
    fd = open_member(dir_fd, name, os.O_RDONLY, where)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise StoreCorruptedError(f"{where} has {size} bytes, more than the {limit} allowed")
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            if sum(map(len, chunks)) > limit:
                raise StoreCorruptedError(f"{where} grew past {limit} bytes while being read")
        return b"".join(chunks)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------
# The manifest


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """``"sha256:<hex>"`` of the manifest's canonical JSON (sorted keys, no spaces, ASCII),
    without its ``checksum`` field."""
    return "sha256:" + hashlib.sha256(_canonical(manifest)).hexdigest()


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest's file content, its checksum set: one top-level key per line, compact
    values (readable, and small for big layouts)."""
    manifest = dict(manifest)
    manifest.pop("checksum", None)
    manifest["checksum"] = manifest_checksum(manifest)
    body = ",\n".join(
        f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'), allow_nan=False)}"
        for k, v in manifest.items()
    )
    return "{\n" + body + "\n}\n"


def build_manifest(
    n_params: int,
    dtype: np.dtype,
    layout: ParameterLayout | None,
    meta: dict[str, Any],
    checksum: bool,
    created: str,
    writer: str,
) -> dict[str, Any]:
    """A new store's manifest (without its checksum: :func:`manifest_text` adds it)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_params": n_params,
        "dtype": dtype.newbyteorder("<").str,
        "row_bytes": n_params * dtype.itemsize,
        "files": dict(FILES),
        "commit_record": "<4sIQQII: magic b'FDC1', flags, count, metadata end, row "
        "checksum (low 32 bits of fd64), crc32 of the first 28 bytes",
        "row_checksum": "fd64" if checksum else None,
        "layout": None if layout is None else layout.to_list(),
        "meta": meta,
        "created": created,
        "writer": writer,
    }


class Manifest:
    """A checked manifest: its fields with their types guaranteed."""

    def __init__(self, raw: dict[str, Any], n_params: int, dtype: np.dtype, row_bytes: int,
                 layout: ParameterLayout | None, checksum: bool) -> None:
        self.raw = raw
        self.n_params = n_params
        self.disk_dtype = dtype.newbyteorder("<")
        self.dtype = dtype.newbyteorder("=")
        self.row_bytes = row_bytes
        self.layout = layout
        self.checksum = checksum


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_manifest(text: bytes, where: str) -> Manifest:
    """Check a manifest's JSON, checksum and field types; :class:`StoreCorruptedError` naming
    ``where`` and the field otherwise."""
    m = load_json(text, where, StoreCorruptedError)
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise StoreCorruptedError(
            f"{where} does not describe a fractaldiff snapshot store (no 'format': "
            f"{FORMAT_NAME!r})"
        )

    def bad(field: str, want: str) -> StoreCorruptedError:
        return StoreCorruptedError(f"{where}: {field} must be {want}, got {m.get(field)!r}")

    version = m.get("format_version")
    if not _is_int(version) or version < 1:
        raise bad("format_version", f"an integer from 1 to {FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise StoreCorruptedError(
            f"{where} has format_version {version}; this fractaldiff reads versions 1 to "
            f"{FORMAT_VERSION} (upgrade fractaldiff)"
        )
    if version >= 2:
        stored = m.get("checksum")
        if not isinstance(stored, str):
            raise bad("checksum", "a 'sha256:...' string")
        if stored != manifest_checksum(m):
            raise StoreCorruptedError(
                f"{where} does not match its checksum: it was changed after it was written "
                f"(edit run-level metadata with SnapshotStore.update_meta)"
            )
    n_params = m.get("n_params")
    if not _is_int(n_params) or not 1 <= n_params <= MAX_PARAMS:
        raise bad("n_params", f"an integer from 1 to {MAX_PARAMS}")
    dt = m.get("dtype")
    if dt not in ("<f2", "<f4", "<f8"):
        raise bad("dtype", "one of '<f2', '<f4', '<f8'")
    disk = np.dtype(dt)
    row_bytes = m.get("row_bytes")
    if not _is_int(row_bytes) or row_bytes != n_params * disk.itemsize:
        raise StoreCorruptedError(
            f"{where} is inconsistent: n_params={n_params}, dtype={dt}, row_bytes={row_bytes!r}"
        )
    files = m.get("files", FILES)
    if files != FILES:
        raise bad("files", repr(FILES))
    kind = m.get("row_checksum")
    if kind not in (None, "fd64"):
        raise bad("row_checksum", "'fd64' or null")
    meta = m.get("meta", {})
    if meta is None:
        meta = m["meta"] = {}
    if not isinstance(meta, dict):
        raise bad("meta", "a JSON object")
    for field in ("created", "writer", "commit_record"):
        if field in m and not isinstance(m[field], str):
            raise bad(field, "a string")
    lay = m.get("layout")
    layout = None
    if lay is not None:
        if not isinstance(lay, list):
            raise bad("layout", "a list of entries or null")
        for i, e in enumerate(lay):
            if (
                not isinstance(e, dict)
                or not isinstance(e.get("name"), str)
                or not isinstance(e.get("shape"), list)
                or not all(_is_int(n) and n >= 0 for n in e["shape"])
                or not _is_int(e.get("offset"))
                or not isinstance(e.get("dtype", ""), (str, type(None)))
            ):
                raise StoreCorruptedError(
                    f"{where}: layout[{i}] must be {{'name': str, 'shape': [int >= 0, ...], "
                    f"'offset': int[, 'dtype': str]}}, got {e!r}"[:400]
                )
        try:
            layout = ParameterLayout.from_spec(lay, n_params)
        except (TypeError, ValueError) as exc:
            raise StoreCorruptedError(f"{where}: invalid layout: {exc}") from None
    return Manifest(m, n_params, disk, row_bytes, layout, kind is not None)


def is_index(v: Any) -> bool:
    """An int (numpy integers included), not a bool."""
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))

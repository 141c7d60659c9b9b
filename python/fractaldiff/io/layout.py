"""Where each named tensor lives in a store's flat parameter vector."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["LayoutEntry", "ParameterLayout"]


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


def _as_offset(value: Any, what: str) -> int:
    if not isinstance(value, (numbers.Integral, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


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
                            None if off is None else _as_offset(off, f"{name}[{i}]['offset']"),
                            _dtype_name(item.get("dtype")),
                        )
                    )
                elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
                    off = item[2] if len(item) == 3 else None
                    raw.append(
                        (
                            item[0],
                            _as_shape(item[1], f"{name}[{i}] shape"),
                            None if off is None else _as_offset(off, f"{name}[{i}] offset"),
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

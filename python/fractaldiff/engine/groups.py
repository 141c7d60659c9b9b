"""Parameter groups: named sets of columns analysed together in one pass.

Groups may overlap. Columns with the same membership form an *atom*; each column block is
folded once per atom (not once per group), and a group's result merges the accumulators of its
atoms, so any number of groups and the whole cost one pass over the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .accumulators import Accumulator

__all__ = ["TOTAL", "fold_atoms", "group_results", "merge_atoms", "resolve_groups"]

#: Key of the whole-trajectory result when ``groups=`` is used.
TOTAL = "total"

_NAMED = ("parameters", "modules", "layers")


def _layout_groups(kind: str, src: Any) -> dict[str, slice]:
    layout = getattr(src, "layout", None)
    if not layout:
        raise ValueError(
            f"groups={kind!r} needs a source that records its parameter layout (a "
            f"SnapshotStore or a checkpoint folder); pass groups={{name: slice}} instead"
        )
    if kind in ("parameters", "layers"):
        return {name: slice(a, b) for name, a, b in layout}
    modules: dict[str, list[tuple[int, int]]] = {}
    for name, a, b in layout:
        modules.setdefault(name.rsplit(".", 1)[0] if "." in name else name, []).append((a, b))
    out: dict[str, Any] = {}
    for mod, ranges in modules.items():
        ranges.sort()
        contiguous = all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))
        if contiguous:
            out[mod] = slice(ranges[0][0], ranges[-1][1])
        else:
            out[mod] = np.concatenate([np.arange(a, b) for a, b in ranges])
    return out


def resolve_groups(groups: Any, src: Any, n_cols: int) -> list[tuple[str, Any]] | None:
    """Normalise ``groups=`` to ``[(name, slice | sorted index array), ...]`` (None stays None).

    ``"parameters"`` (or its alias ``"layers"``) gives one group per tensor of the layout the
    source records, ``"modules"`` one per module (tensor names up to their last dot).
    """
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in _NAMED:
            raise ValueError(
                f"groups must be a mapping name -> columns, 'parameters', 'modules' or "
                f"'layers', got {groups!r}"
            )
        groups = _layout_groups(groups, src)
    if not isinstance(groups, Mapping) or not groups:
        raise TypeError(f"groups must be a non-empty mapping name -> slice or index array, "
                        f"got {type(groups).__name__}")
    out = []
    for name, sel in groups.items():
        if not isinstance(name, str):
            raise TypeError(f"groups keys must be strings, got {name!r}")
        if name == TOTAL:
            raise ValueError(f"groups must not contain a group named {TOTAL!r} (reserved)")
        if isinstance(sel, slice):
            start, stop, step = sel.indices(n_cols)
            if step != 1:
                sel = np.arange(start, stop, step)
            else:
                if stop <= start:
                    raise ValueError(f"groups[{name!r}] must select columns, got {sel}")
                out.append((name, slice(start, stop)))
                continue
        idx = np.asarray(sel)
        if idx.dtype.kind == "b":
            if idx.shape != (n_cols,):
                raise ValueError(f"groups[{name!r}] must be a boolean mask of shape "
                                 f"({n_cols},), got shape {idx.shape}")
            idx = np.flatnonzero(idx)
        if idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TypeError(f"groups[{name!r}] must be a slice, integer indices or a mask, "
                            f"got {idx.dtype} of shape {idx.shape}")
        if idx.size == 0:
            raise ValueError(f"groups[{name!r}] must select columns, got none")
        if idx.min() < -n_cols or idx.max() >= n_cols:
            raise ValueError(f"groups[{name!r}] must hold indices in [0, {n_cols}), got "
                             f"{int(idx.min())}..{int(idx.max())}")
        idx = np.unique(np.where(idx < 0, idx + n_cols, idx))
        out.append((name, idx))
    return out


def _membership(groups: list[tuple[str, Any]], a: int, b: int) -> np.ndarray:
    """(n_groups, b-a) boolean membership of columns a..b-1."""
    m = np.zeros((len(groups), b - a), dtype=bool)
    for g, (_, sel) in enumerate(groups):
        if isinstance(sel, slice):
            lo, hi = max(sel.start, a), min(sel.stop, b)
            if lo < hi:
                m[g, lo - a : hi - a] = True
        else:
            lo, hi = np.searchsorted(sel, [a, b])
            m[g, sel[lo:hi] - a] = True
    return m


def fold_atoms(block: Any, start: int, proto: Accumulator, groups: list | None,
               fold: Any, accs: dict[bytes, Any] | None = None) -> dict[bytes, Any]:
    """Fold one column block (columns ``start:``) into per-atom accumulators.

    ``fold(acc, sub_block, start)`` folds one atom's columns into ``acc``: a view where they are
    contiguous, else a contiguous copy (or, for accumulators whose sums depend on the column
    indices, ``column_positions``, one view per contiguous run); accumulators are created as
    needed from ``proto`` (``proto.empty()``) in ``accs`` (a new dict when not given), keyed by
    the atom's membership bits.
    """
    accs = {} if accs is None else accs
    if groups is None:
        if b"" not in accs:
            accs[b""] = proto.empty()
        fold(accs[b""], block, start)
        return accs
    member = _membership(groups, start, start + block.shape[1])
    keys = np.packbits(member, axis=0).T  # (B, ceil(G/8)) bytes per column
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for u in range(uniq.shape[0]):
        cols = np.flatnonzero(inverse == u)
        key = uniq[u].tobytes()
        if key not in accs:
            accs[key] = proto.empty()
        acc = accs[key]
        if cols[-1] - cols[0] + 1 == cols.size:  # contiguous: a view, no copy
            fold(acc, block[:, cols[0] : cols[-1] + 1], start + int(cols[0]))
        elif proto.column_positions:  # results depend on column indices: contiguous runs
            cuts = np.flatnonzero(np.diff(cols) != 1) + 1
            for run in np.split(cols, cuts):
                fold(acc, block[:, run[0] : run[-1] + 1], start + int(run[0]))
        elif isinstance(block, np.ndarray):
            fold(acc, np.ascontiguousarray(block[:, cols]), start + int(cols[0]))
        else:  # a device block (engine.gpu.DeviceMatrix)
            fold(acc, block.take(cols), start + int(cols[0]))
    return accs


def merge_atoms(parts: list[dict[bytes, Accumulator]]) -> dict[bytes, Accumulator]:
    """Merge per-atom accumulators of disjoint column ranges, atom by atom."""
    out: dict[bytes, Accumulator] = {}
    for part in parts:
        for key, acc in part.items():
            if key in out:
                out[key].merge(acc)
            else:
                out[key] = acc
    return out


def group_results(accs: dict[bytes, Accumulator], proto: Accumulator, groups: list | None
                  ) -> Any:
    """The merged accumulator of everything (no groups), or ``{TOTAL: acc, name: acc, ...}``."""
    if groups is None:
        return accs.get(b"") or proto.empty()
    parts = list(accs.items())
    out = {}
    for g, (name, _) in enumerate(groups):
        acc = proto.empty()
        for key, part in parts:
            bits = np.unpackbits(np.frombuffer(key, dtype=np.uint8))
            if g < bits.size and bits[g]:
                acc.merge(part)
        out[name] = acc
    total = proto.empty()
    for _, part in parts:
        total.merge(part)
    return {TOTAL: total, **out}

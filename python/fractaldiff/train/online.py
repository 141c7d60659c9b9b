"""Online accumulators: diffusion statistics of a run without keeping its snapshots.

For models too large to store one snapshot per step, these fold each snapshot into a small
state as it arrives and then forget it. They need only numpy (no torch), so they also work
with any other framework: call ``update(vector)`` once per snapshot, snapshots equally spaced
in time.

* :class:`MultipleTauMSD`: a multiple-tau correlator; the MSD at log-spaced lags with
  O(levels x block_size x D) memory.
* :class:`RunningDisplacement`: R(t) = ||W[t] - W[0]||, exactly as :func:`fractaldiff.displacement`
  with ``ref=0``.
* :class:`OnlineBoxIds`: per-snapshot box ids at dyadic scales (the hash of the offline box
  counting kernel), from which the number of occupied boxes per scale follows.
* :class:`OnlineAccumulators`: the three together, fed by :class:`fractaldiff.train.Recorder`.

The exact definition of the multiple-tau estimate, its relation to :func:`fractaldiff.msd` and
its memory are in docs/online.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import _core
from .._validation import as_float_vector, check_finite_vector, check_int, check_number
from ..engine.accumulators import grid_offsets, key_seed

__all__ = [
    "MultipleTauMSD",
    "OnlineAccumulators",
    "OnlineBoxIds",
    "OnlineMSDResult",
    "RunningDisplacement",
    "box_grid_offsets",
    "box_key_seed",
    "fold_box_ids",
]

#: Columns per chunk for the float64 temporaries of the pair sums (bounds the working set).
_CHUNK = 1 << 16


# --------------------------------------------------------------------------------------------
# Multiple-tau MSD
# --------------------------------------------------------------------------------------------


class OnlineMSDResult(NamedTuple):
    """Result of :meth:`MultipleTauMSD.result`.

    Attributes
    ----------
    lags : numpy.ndarray of int64
        Lags in snapshot units (multiply by the snapshot interval for optimizer steps).
    msd : numpy.ndarray of float64
        The estimate at each lag (docs/online.md gives its exact definition).
    n_pairs : numpy.ndarray of int64
        Number of pairs averaged at each lag.
    level : numpy.ndarray of int64
        Level (coarsening m**level) each lag comes from.
    """

    lags: np.ndarray
    msd: np.ndarray
    n_pairs: np.ndarray
    level: np.ndarray


class _Level:
    """One level of the correlator: a ring of its last p points and the pair sums."""

    __slots__ = ("ring", "count", "sums", "pairs")

    def __init__(self, p: int, n_params: int, dtype: np.dtype) -> None:
        self.ring = np.zeros((p, n_params), dtype=dtype)
        self.count = 0  # points that arrived at this level
        self.sums = np.zeros(p, dtype=np.float64)  # sums[k]: sum of squared distances at lag k
        self.pairs = np.zeros(p, dtype=np.int64)


class MultipleTauMSD:
    """Multiple-tau correlator: the MSD at log-spaced lags, online, in bounded memory.

    Parameters
    ----------
    n_params : int
        D, the length of every snapshot.
    block_size : int, default 16
        p, the points each level keeps; level 0 gives lags 1..p-1 exactly. A multiple of
        ``factor``, >= 2 * factor.
    factor : int, default 2
        m, the coarsening from one level to the next (lag grid spacing grows by m per level).
    coarsening : {"sample", "mean"}, default "sample"
        How level l + 1 is made from level l: every m-th point (unbiased, exact subset of the
        offline pairs) or the mean of blocks of m points (classic multiple-tau: less noise,
        biased at coarse levels). docs/online.md gives the exact relation to
        :func:`fractaldiff.msd`.
    dtype : {"float64", "float32"}, default "float64"
        Storage of the buffered points (as displacements from the first snapshot). float32
        halves the memory; pair sums are always taken in float64.
    max_levels : int, optional
        Stop allocating levels beyond this many (bounds memory; lags beyond
        ``(p-1) * m**(max_levels-1)`` are then not reported). Default: unbounded (levels are
        allocated as the run reaches them, about log_m(T / p) + 2 of them).

    Notes
    -----
    Cost per snapshot: about p * D (level 0) plus (p - p/m) * D / m**l at level l, in float64,
    in column chunks of 65536 (temporaries of ~p * 0.5 MB).

    Examples
    --------
    >>> import numpy as np
    >>> from fractaldiff.train.online import MultipleTauMSD
    >>> acc = MultipleTauMSD(n_params=3, block_size=4, factor=2)
    >>> for t in range(20):
    ...     acc.update(np.full(3, float(t)))
    >>> r = acc.result()
    >>> r.lags[:4], r.msd[:4]
    (array([1, 2, 3, 4]), array([ 3., 12., 27., 48.]))
    """

    def __init__(
        self,
        n_params: int,
        *,
        block_size: int = 16,
        factor: int = 2,
        coarsening: str = "sample",
        dtype: Any = "float64",
        max_levels: int | None = None,
    ) -> None:
        self.n_params = check_int(n_params, "n_params", minimum=1)
        self.block_size = check_int(block_size, "block_size", minimum=2)
        self.factor = check_int(factor, "factor", minimum=2)
        if self.block_size % self.factor or self.block_size < 2 * self.factor:
            raise ValueError(
                f"block_size must be a multiple of factor and >= 2 * factor, got "
                f"block_size={block_size}, factor={factor}"
            )
        if coarsening not in ("sample", "mean"):
            raise ValueError(f"coarsening must be 'sample' or 'mean', got {coarsening!r}")
        self.coarsening = coarsening
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self.max_levels = (None if max_levels is None
                           else check_int(max_levels, "max_levels", minimum=1))
        self._levels: list[_Level] = []
        self._x0: np.ndarray | None = None
        self.n_updates = 0

    # -- memory -------------------------------------------------------------------------------

    @staticmethod
    def n_levels_for(
        n_snapshots: int, block_size: int = 16, factor: int = 2, coarsening: str = "sample"
    ) -> int:
        """Levels allocated after ``n_snapshots`` updates.

        Level l + 1 exists once level l has received ``block_size`` points; level l has
        ``ceil(T / m**l)`` (sample) or ``T // m**l`` (mean) points. About
        ``log_m(T / p) + 2`` levels.
        """
        levels, n, b = 1, int(n_snapshots), 1
        while True:
            count = -(-n // b) if coarsening == "sample" else n // b
            if count < block_size:
                return levels
            levels += 1
            b *= factor

    @staticmethod
    def memory_bytes(
        n_params: int,
        n_snapshots: int,
        block_size: int = 16,
        factor: int = 2,
        coarsening: str = "sample",
        dtype: Any = "float64",
    ) -> int:
        """Bytes of the D-sized state after ``n_snapshots`` updates (from the structure sizes).

        ``levels * block_size * D * itemsize`` plus the float64 first snapshot (8 * D); the
        per-level lag sums and pair counts (16 * block_size bytes per level) are not included.
        """
        levels = MultipleTauMSD.n_levels_for(n_snapshots, block_size, factor, coarsening)
        return levels * block_size * n_params * np.dtype(dtype).itemsize + 8 * n_params

    @property
    def nbytes(self) -> int:
        """Bytes held now by the buffers."""
        total = 0 if self._x0 is None else self._x0.nbytes
        for lev in self._levels:
            total += lev.ring.nbytes + lev.sums.nbytes + lev.pairs.nbytes
        return total

    @property
    def n_levels(self) -> int:
        """Levels allocated so far."""
        return len(self._levels)

    # -- updating -----------------------------------------------------------------------------

    def update(self, x: Any) -> None:
        """Fold in the next snapshot (1-D, D values, numpy or torch; finite)."""
        row = as_float_vector(x, self.n_params)
        check_finite_vector(row, "the snapshot", "MultipleTauMSD.update")
        if self._x0 is None:
            self._x0 = row.astype(np.float64, copy=True)
        centered = row.astype(np.float64) - self._x0
        self.n_updates += 1
        if not self._levels:
            self._levels.append(_Level(self.block_size, self.n_params, self.dtype))
        self._push(0, centered)

    def _min_lag(self, level: int) -> int:
        return 1 if level == 0 else self.block_size // self.factor

    def _push(self, level: int, point: np.ndarray) -> None:
        """Add one point (float64, centred) to ``level`` and cascade to coarser levels.

        Level l + 1 is allocated when level l has received p points (before that no lag of
        level l + 1 has a pair); it is then given the coarse points of level l's first p points,
        all still in the ring, and afterwards each new coarse point as it completes.
        """
        lev = self._levels[level]
        p, m = self.block_size, self.factor
        pos = lev.count % p
        lev.ring[pos] = point
        stored = lev.ring[pos]  # the value as stored (rounded to dtype): pairs use it
        kmin = self._min_lag(level)
        kmax = min(lev.count, p - 1)
        if kmax >= kmin:
            ks = np.arange(kmin, kmax + 1)
            idx = (pos - ks) % p
            acc = np.zeros(ks.size, dtype=np.float64)
            for c0 in range(0, self.n_params, _CHUNK):
                c1 = min(self.n_params, c0 + _CHUNK)
                diff = lev.ring[idx, c0:c1].astype(np.float64, copy=False) - stored[c0:c1]
                acc += np.einsum("ij,ij->i", diff, diff)
            lev.sums[ks] += acc
            lev.pairs[ks] += 1
        s = lev.count
        lev.count += 1
        if self.max_levels is not None and level + 1 >= self.max_levels:
            return
        if level + 1 < len(self._levels):
            if self.coarsening == "sample" and s % m == 0:
                self._push(level + 1, stored)
            elif self.coarsening == "mean" and s % m == m - 1:
                self._push(level + 1, self._block_mean(lev, s))
        elif lev.count == p:  # allocate the next level and give it the coarse points so far
            self._levels.append(_Level(p, self.n_params, self.dtype))
            for j in range(0, p, m):
                if self.coarsening == "sample":
                    self._push(level + 1, lev.ring[j])
                else:
                    self._push(level + 1, self._block_mean(lev, j + m - 1))

    def _block_mean(self, lev: _Level, last: int) -> np.ndarray:
        """Mean (float64) of the stored points last - m + 1 .. last of a level."""
        idx = np.arange(last - self.factor + 1, last + 1) % self.block_size
        return lev.ring[idx].mean(axis=0, dtype=np.float64)

    # -- results ------------------------------------------------------------------------------

    def result(self) -> OnlineMSDResult:
        """The MSD at every lag with at least one pair, in increasing lag order."""
        lags, vals, pairs, levels = [], [], [], []
        for l_idx, lev in enumerate(self._levels):
            for k in range(self._min_lag(l_idx), self.block_size):
                if lev.pairs[k] > 0:
                    lags.append(k * self.factor**l_idx)
                    vals.append(lev.sums[k] / lev.pairs[k])
                    pairs.append(lev.pairs[k])
                    levels.append(l_idx)
        return OnlineMSDResult(
            np.asarray(lags, dtype=np.int64),
            np.asarray(vals, dtype=np.float64),
            np.asarray(pairs, dtype=np.int64),
            np.asarray(levels, dtype=np.int64),
        )

    def __repr__(self) -> str:
        return (
            f"MultipleTauMSD(n_params={self.n_params}, block_size={self.block_size}, "
            f"factor={self.factor}, coarsening={self.coarsening!r}, levels={self.n_levels}, "
            f"updates={self.n_updates})"
        )


# --------------------------------------------------------------------------------------------
# Running displacement
# --------------------------------------------------------------------------------------------


class RunningDisplacement:
    """R(t) = ||W[t] - W[0]||_2 from the first snapshot, online.

    Equals :func:`fractaldiff.displacement` (``ref=0``) of the same snapshots: differences and
    the sum of squares are taken in float64. Memory: the first snapshot (D float64) plus one
    float per snapshot.

    Parameters
    ----------
    n_params : int
        D, the length of every snapshot.
    """

    def __init__(self, n_params: int) -> None:
        self.n_params = check_int(n_params, "n_params", minimum=1)
        self._x0: np.ndarray | None = None
        self._values: list[float] = []

    def update(self, x: Any) -> float:
        """Fold in the next snapshot; returns its R(t)."""
        row = as_float_vector(x, self.n_params)
        if self._x0 is None:
            self._x0 = row.astype(np.float64, copy=True)
            self._values.append(0.0)
            return 0.0
        total = 0.0
        for c0 in range(0, self.n_params, _CHUNK):
            d = row[c0 : c0 + _CHUNK].astype(np.float64) - self._x0[c0 : c0 + _CHUNK]
            total += float(np.dot(d, d))
        value = math.sqrt(total)
        self._values.append(value)
        return value

    @property
    def values(self) -> np.ndarray:
        """R(t) for every snapshot so far, float64."""
        return np.asarray(self._values, dtype=np.float64)

    @property
    def nbytes(self) -> int:
        """Bytes held (first snapshot and the values)."""
        return (0 if self._x0 is None else self._x0.nbytes) + 8 * len(self._values)

    @staticmethod
    def memory_bytes(n_params: int, n_snapshots: int) -> int:
        """Bytes of state after ``n_snapshots`` updates."""
        return 8 * int(n_params) + 8 * int(n_snapshots)


# --------------------------------------------------------------------------------------------
# Box ids: adapter to the box-counting kernel's hash
# --------------------------------------------------------------------------------------------
# Box ids
# --------------------------------------------------------------------------------------------
#
# The hash is the one of the offline box-counting kernel (fractaldiff.box_counts,
# cpp/include/fractaldiff/box_kernels.hpp, keys from hd_common.hpp):
# q = trunc((x - origin_d) * (1 / eps0)) in float64, box id at scale k =
# (sum_d a_d * (q >> k), sum_d b_d * (q >> k)) mod 2^64.


def box_key_seed(seed: int = 0, grid: int = 0) -> int:
    """The key seed the offline box counting uses for grid ``grid`` under ``seed``."""
    return key_seed(seed, grid)


def box_grid_offsets(columns: Any, coarsest: float, seed: int = 0, grid: int = 0) -> np.ndarray:
    """Random per-coordinate grid offsets, uniform on [0, coarsest), as in box counting."""
    return grid_offsets(columns, coarsest, seed, grid)


def fold_box_ids(
    block: Any,
    col_start: int,
    origin: np.ndarray,
    eps0: float,
    n_scales: int,
    key_seed: int,
    ids: np.ndarray,
) -> None:
    """Add the box ids of a block of snapshots into ``ids`` (the box-counting kernel's hash).

    Parameters
    ----------
    block : numpy.ndarray, shape (T, B)
        Snapshots t, columns ``col_start .. col_start + B - 1``.
    col_start : int
        Global index of the block's first column (selects the keys).
    origin : numpy.ndarray of float64, shape (B,)
        Grid origin of each column; ``(x - origin) / eps0`` must lie in [0, 2^31).
    eps0 : float
        Finest box side; scale k has side ``eps0 * 2**k``.
    n_scales : int
        Number of dyadic scales (1..31).
    key_seed : int
        Hash key seed (:func:`box_key_seed`).
    ids : numpy.ndarray of uint64, shape (T, n_scales, 2)
        Accumulated in place (sums mod 2^64 merge over column blocks).

    Raises
    ------
    ValueError
        A quantized coordinate left [0, 2^31) (the weights moved out of the grid) or the data
        hold NaN/Inf.
    """
    block = np.asarray(block)
    if block.ndim == 1:
        block = block[None, :]
    origin = np.ascontiguousarray(origin, dtype=np.float64)
    status = _core.fold_box_ids(block, int(col_start), origin, float(eps0), int(n_scales),
                                int(key_seed), ids, 0)
    if status == _core.STATUS_OK:
        return
    y = (block.astype(np.float64) - origin) * (1.0 / float(eps0))
    ok = (y >= 0) & (y < _core.BOX_Q_LIMIT)  # False for NaN
    bad = np.argwhere(~ok)
    if bad.size:
        t, d = bad[0]
        raise ValueError(
            f"box ids: snapshot {int(t)}, parameter {col_start + int(d)} is {block[t, d]}, "
            f"outside the box grid (more than 2^30 boxes of side eps0={eps0:g} from the first "
            f"snapshot, or not finite); use a larger eps0"
        )
    raise ValueError(f"box ids: the kernel returned status {status}")  # pragma: no cover


class OnlineBoxIds:
    """Per-snapshot box ids at dyadic scales, online, with the box-counting kernel's hash.

    The grid is fixed by the first snapshot W[0]: coordinate d has origin
    ``W[0, d] - u_d - 2**(31 - n_scales) * C`` with ``C = eps0 * 2**(n_scales-1)`` the
    coarsest box side and ``u_d`` the random offset of :func:`box_grid_offsets` (as offline, a
    uniform shift of the grid), so W[0] sits in the middle of the kernel's 31-bit range and each
    coordinate may move about ``2**30 * eps0`` either way. (Offline box counting anchors the
    grid at each column's minimum instead, which an online pass cannot know; the counts of the
    two agree in distribution, and :meth:`origin` lets the offline kernel reproduce the online
    ids bit for bit.)

    Parameters
    ----------
    n_params : int
        D.
    eps0 : float
        Finest box side, in parameter units (choose it below the smallest step you want to
        resolve; scales are ``eps0 * 2**k``).
    n_scales : int, default 16
        Number of dyadic scales (1..31).
    seed, grid : int
        Random grid (as ``seed``/grid number of the offline box counting).

    Notes
    -----
    Memory: the origins (D float64), plus n_scales * 16 bytes per snapshot for the ids.
    """

    def __init__(
        self, n_params: int, eps0: float, *, n_scales: int = 16, seed: int = 0, grid: int = 0
    ) -> None:
        self.n_params = check_int(n_params, "n_params", minimum=1)
        self.eps0 = check_number(eps0, "eps0", positive=True)
        self.n_scales = check_int(n_scales, "n_scales", minimum=1)
        if self.n_scales > 31:
            raise ValueError(f"n_scales must be <= 31, got {n_scales}")
        self.seed = check_int(seed, "seed", minimum=0)
        self.grid = check_int(grid, "grid", minimum=0)
        self.key_seed = box_key_seed(self.seed, self.grid)
        self._origin: np.ndarray | None = None
        self._ids: list[np.ndarray] = []

    @property
    def coarsest(self) -> float:
        """Side of the coarsest box, ``eps0 * 2**(n_scales - 1)``."""
        return self.eps0 * 2.0 ** (self.n_scales - 1)

    @property
    def origin(self) -> np.ndarray | None:
        """The grid origin per coordinate (float64, D), set by the first snapshot."""
        return self._origin

    @property
    def eps(self) -> np.ndarray:
        """Box sides ``eps0 * 2**k``, k = 0..n_scales-1."""
        return self.eps0 * 2.0 ** np.arange(self.n_scales)

    def update(self, x: Any) -> np.ndarray:
        """Fold in the next snapshot; returns its ids, uint64 array (n_scales, 2)."""
        row = as_float_vector(x, self.n_params)
        if self._origin is None:
            check_finite_vector(row, "the snapshot", "OnlineBoxIds.update")
            cols = np.arange(self.n_params)
            headroom = 2.0 ** (31 - self.n_scales) * self.coarsest  # = 2^30 * eps0
            self._origin = (
                row.astype(np.float64)
                - box_grid_offsets(cols, self.coarsest, self.seed, self.grid)
                - headroom
            )
        ids = np.zeros((1, self.n_scales, 2), dtype=np.uint64)
        for c0 in range(0, self.n_params, _CHUNK):
            c1 = min(self.n_params, c0 + _CHUNK)
            fold_box_ids(
                row[None, c0:c1],
                c0,
                self._origin[c0:c1],
                self.eps0,
                self.n_scales,
                self.key_seed,
                ids,
            )
        self._ids.append(ids[0])
        return ids[0]

    @property
    def ids(self) -> np.ndarray:
        """Box ids of every snapshot so far, uint64 array (T, n_scales, 2)."""
        if not self._ids:
            return np.zeros((0, self.n_scales, 2), dtype=np.uint64)
        return np.stack(self._ids)

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Occupied boxes per scale: ``(eps, counts)``, counts int64 of length n_scales."""
        ids = self.ids
        counts = np.zeros(self.n_scales, dtype=np.int64)
        for k in range(self.n_scales):
            pairs = np.ascontiguousarray(ids[:, k, :]).view(np.dtype((np.void, 16)))
            counts[k] = np.unique(pairs).size
        return self.eps, counts

    @property
    def nbytes(self) -> int:
        """Bytes held (origins, ids)."""
        n = 0 if self._origin is None else self._origin.nbytes
        return n + 16 * self.n_scales * len(self._ids)

    @staticmethod
    def memory_bytes(n_params: int, n_snapshots: int, n_scales: int = 16) -> int:
        """Bytes of state after ``n_snapshots`` updates."""
        return 8 * n_params + 16 * n_scales * n_snapshots


# --------------------------------------------------------------------------------------------
# All together
# --------------------------------------------------------------------------------------------


class OnlineAccumulators:
    """The online accumulators a :class:`~fractaldiff.train.Recorder` feeds, in one object.

    Parameters
    ----------
    n_params : int
        D.
    msd : bool or dict, default True
        Keep a :class:`MultipleTauMSD` (a dict passes its keyword arguments).
    displacement : bool, default True
        Keep a :class:`RunningDisplacement`.
    box_eps0 : float, optional
        Keep an :class:`OnlineBoxIds` with this finest box side (off by default: the right box
        size depends on the run).
    box_options : dict, optional
        More keyword arguments for :class:`OnlineBoxIds` (``n_scales``, ``seed``, ``grid``).

    Attributes
    ----------
    msd, displacement, box_ids
        The accumulators (None where not kept).
    steps : list of int
        The optimizer step of each snapshot fed in (when given to :meth:`update`).
    """

    def __init__(
        self,
        n_params: int,
        *,
        msd: bool | dict = True,
        displacement: bool = True,
        box_eps0: float | None = None,
        box_options: dict | None = None,
    ) -> None:
        self.n_params = check_int(n_params, "n_params", minimum=1)
        if isinstance(msd, dict):
            self.msd: MultipleTauMSD | None = MultipleTauMSD(self.n_params, **msd)
        else:
            self.msd = MultipleTauMSD(self.n_params) if msd else None
        self.displacement = RunningDisplacement(self.n_params) if displacement else None
        self.box_ids = (
            None
            if box_eps0 is None
            else OnlineBoxIds(self.n_params, box_eps0, **(box_options or {}))
        )
        self.steps: list[int] = []

    @property
    def accumulators(self) -> Sequence[Any]:
        """The accumulators kept."""
        return [a for a in (self.msd, self.displacement, self.box_ids) if a is not None]

    def update(self, x: Any, step: int | None = None) -> None:
        """Fold one snapshot into every accumulator."""
        row = as_float_vector(x, self.n_params)
        for acc in self.accumulators:
            acc.update(row)
        if step is not None:
            self.steps.append(int(step))

    @property
    def nbytes(self) -> int:
        """Bytes held by all accumulators."""
        return sum(a.nbytes for a in self.accumulators)

    def summary(self) -> dict[str, Any]:
        """JSON-able results: MSD lags/values, R(t), box counts (those kept)."""
        out: dict[str, Any] = {"n_snapshots": len(self.steps) or None}
        if self.msd is not None:
            r = self.msd.result()
            out["msd"] = {"lags": r.lags.tolist(), "msd": r.msd.tolist(),
                          "n_pairs": r.n_pairs.tolist()}
        if self.displacement is not None:
            out["displacement"] = self.displacement.values.tolist()
        if self.box_ids is not None:
            eps, counts = self.box_ids.counts()
            out["box_counts"] = {"eps": eps.tolist(), "counts": counts.tolist()}
        if self.steps:
            out["steps"] = list(self.steps)
        return out

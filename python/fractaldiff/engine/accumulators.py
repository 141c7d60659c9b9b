"""Accumulators: the small partial sums that kernels fold column blocks into.

Every analysis over parameters is one accumulator class. An accumulator declares

* its **buffers**: arrays that hold sums over the columns folded so far, and that merge by
  addition (float64, or uint64 modulo 2^64 for box ids);
* its **fold**: the compiled CPU kernel that adds a ``(T, B)`` column block;
* its **merge** (adding the buffers of an accumulator over other columns) and its **finish**
  (the result from the merged sums);
* its **GPU kind**: the ``_core`` class that folds the same sums on a CUDA device
  (:attr:`Accumulator.gpu_kind`, built from :meth:`Accumulator.gpu_specs`), and how the device
  sums come back into the buffers (:meth:`Accumulator.gpu_collect`).

The drivers (:func:`fractaldiff.engine.folds.run`: local threads, dask, the GPU streamer) only
call these methods, so every analysis runs the same way on every driver.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import _core

__all__ = [
    "Accumulator",
    "BoxIdsAccumulator",
    "DIRECT_LAGS",
    "DisplacementAccumulator",
    "GramAccumulator",
    "LagsAccumulator",
    "MSDAccumulator",
    "grid_offsets",
    "key_seed",
]

_MASK64 = 0xFFFFFFFFFFFFFFFF

#: Smallest lags of the all-lag MSD summed by an exact direct pass (the rest via FFT).
DIRECT_LAGS = 8


class Accumulator:
    """Partial sums over a set of columns (base class).

    Subclasses set :attr:`gpu_kind` and implement :meth:`buffers`, :meth:`config`,
    :meth:`empty`, :meth:`fold` and :meth:`finish`.
    """

    #: Name of the ``_core`` class that folds this accumulator's sums on a CUDA device.
    gpu_kind: ClassVar[str] = ""
    #: Number of columns folded so far.
    n_cols: int = 0
    #: True when the sums depend on the global column indices (``start`` of :meth:`fold`).
    column_positions: ClassVar[bool] = False

    def buffers(self) -> tuple[np.ndarray, ...]:  # pragma: no cover - abstract
        """The arrays that merge by addition."""
        raise NotImplementedError

    def config(self) -> tuple:  # pragma: no cover - abstract
        """What two accumulators must share to merge."""
        raise NotImplementedError

    def empty(self) -> Accumulator:  # pragma: no cover - abstract
        """A new, zero accumulator of the same configuration."""
        raise NotImplementedError

    def fold(self, block: np.ndarray, start: int, n_threads: int = 0) -> int:  # pragma: no cover
        """Add a kernel-ready ``(T, B)`` block of the columns ``start:start+B``; returns the
        kernel's status code."""
        raise NotImplementedError

    def finish(self) -> Any:  # pragma: no cover - abstract
        """The result from the sums."""
        raise NotImplementedError

    def merge(self, other: Accumulator) -> Accumulator:
        """Add an accumulator over a disjoint set of columns (in place); returns self."""
        if type(other) is not type(self) or other.config() != self.config():
            raise ValueError(
                f"cannot merge {type(other).__name__}{other.config()} into "
                f"{type(self).__name__}{self.config()}"
            )
        for mine, theirs in zip(self.buffers(), other.buffers()):
            mine += theirs  # uint64 buffers wrap modulo 2^64, as their sums are defined
        self.n_cols += other.n_cols
        return self

    # ---- GPU ----------------------------------------------------------------------------------

    def gpu_specs(self) -> list[dict[str, Any]]:
        """Keyword arguments of the ``_core`` GPU folds (one per entry) that compute the sums."""
        return [{}]

    def gpu_prepare(self, index: int, fold: Any, start: int, n_cols: int) -> None:
        """Called before ``fold`` (number ``index`` of :meth:`gpu_specs`) folds the columns
        ``start:start+n_cols``."""

    def gpu_collect(self, index: int, fold: Any) -> int:
        """Wait for ``fold`` and add its sums into the buffers; returns a status code."""
        return fold.finish(*self.buffers())


class MSDAccumulator(Accumulator):
    """Partial sums from which the all-lag MSD of a snapshot matrix is finished.

    Holds, for the columns folded so far: the power spectrum of the centred columns summed over
    columns (length ``nfft``), the squared norm of every centred snapshot (length T) and exact
    sums of squared differences for lags 1..``n_direct``.

    Parameters
    ----------
    n_rows : int
        Number of snapshots T (>= 2).
    n_direct : int, optional
        Lags summed exactly by a direct pass (default 8, capped at T-1).
    """

    gpu_kind = "GpuMsdFold"

    def __init__(self, n_rows: int, n_direct: int = DIRECT_LAGS) -> None:
        if n_rows < 2:
            raise ValueError(f"the MSD needs at least 2 snapshots, got T={n_rows}")
        self.n_rows = int(n_rows)
        self.nfft = _core.msd_fft_length(self.n_rows)
        self.n_direct = int(min(n_direct, self.n_rows - 1, _core.MAX_DIRECT_LAGS))
        self.power = np.zeros(self.nfft)
        self.sqnorm = np.zeros(self.n_rows)
        self.direct = np.zeros(self.n_direct + 1)
        self.n_cols = 0

    def buffers(self):
        return (self.power, self.sqnorm, self.direct)

    def config(self):
        return (self.n_rows, self.n_direct)

    def empty(self) -> MSDAccumulator:
        return MSDAccumulator(self.n_rows, self.n_direct)

    def fold(self, block: np.ndarray, start: int = 0, n_threads: int = 0) -> int:
        status = _core.fold_msd_fft(block, self.power, self.sqnorm, self.direct, n_threads)
        self.n_cols += block.shape[1]
        return status

    def gpu_specs(self):
        return [{"n_rows": self.n_rows, "n_direct": self.n_direct}]

    def finish(self) -> np.ndarray:
        """The time-averaged MSD for lags 0..T-1 (float64, length T)."""
        t = self.n_rows
        n = self.nfft
        # packed column pairs: |A_k|^2 + |B_k|^2 = (|Z_k|^2 + |Z_{N-k}|^2) / 2
        sym = 0.5 * (self.power + np.roll(self.power[::-1], 1))
        s2 = np.fft.irfft(sym[: n // 2 + 1], n=n)[:t]
        csum = np.concatenate(([0.0], np.cumsum(self.sqnorm)))
        tau = np.arange(t)
        out = (csum[t - tau] + (csum[t] - csum[tau]) - 2.0 * s2) / (t - tau)
        k = self.n_direct
        out[1 : k + 1] = self.direct[1:] / (t - tau[1 : k + 1])
        out[0] = 0.0
        np.maximum(out, 0.0, out=out)  # the true MSD is >= 0; rounding may not cross it
        return out

    result = finish


class LagsAccumulator(Accumulator):
    """Sums of squared lag differences for selected lags (exact direct pass)."""

    gpu_kind = "GpuLagsFold"

    def __init__(self, n_rows: int, lags: np.ndarray) -> None:
        self.n_rows = int(n_rows)
        self.lags = np.ascontiguousarray(lags, dtype=np.int64)
        self.sums = np.zeros(self.lags.size)
        self.n_cols = 0

    def buffers(self):
        return (self.sums,)

    def config(self):
        return (self.n_rows, tuple(self.lags.tolist()))

    def empty(self) -> LagsAccumulator:
        return LagsAccumulator(self.n_rows, self.lags)

    def fold(self, block: np.ndarray, start: int = 0, n_threads: int = 0) -> int:
        self.n_cols += block.shape[1]
        if self.lags.size == 0:
            return _core.STATUS_OK
        return _core.fold_msd_lags(block, self.lags, self.sums, n_threads)

    def gpu_specs(self):
        return [{"n_rows": self.n_rows, "lags": self.lags}]

    def finish(self) -> np.ndarray:
        """The MSD at the selected lags (float64, in the order given)."""
        return self.sums / (self.n_rows - self.lags)

    result = finish


class DisplacementAccumulator(Accumulator):
    """Squared distances of every snapshot from a reference snapshot."""

    gpu_kind = "GpuDisplacementFold"

    def __init__(self, n_rows: int, ref: int) -> None:
        self.n_rows = int(n_rows)
        self.ref = int(ref)
        self.sq = np.zeros(self.n_rows)
        self.n_cols = 0

    def buffers(self):
        return (self.sq,)

    def config(self):
        return (self.n_rows, self.ref)

    def empty(self) -> DisplacementAccumulator:
        return DisplacementAccumulator(self.n_rows, self.ref)

    def fold(self, block: np.ndarray, start: int = 0, n_threads: int = 0) -> int:
        self.n_cols += block.shape[1]
        return _core.fold_displacement(block, self.ref, self.sq, n_threads)

    def gpu_specs(self):
        return [{"n_rows": self.n_rows, "ref": self.ref}]

    def finish(self) -> np.ndarray:
        """R(t) = ||X[t] - X[ref]||, float64."""
        return np.sqrt(self.sq)

    result = finish


class GramAccumulator(Accumulator):
    """The centred Gram matrix (T, T) of the folded columns (columns centred over time).

    The kernels add into the lower triangle (j <= i); the strict upper triangle is scratch.
    :meth:`finish` returns the symmetric matrix, in the buffer itself (no second T x T array).
    """

    gpu_kind = "GpuGramFold"

    def __init__(self, n_rows: int) -> None:
        self.n_rows = int(n_rows)
        self.gram = np.zeros((self.n_rows, self.n_rows))
        self.n_cols = 0

    def buffers(self):
        return (self.gram,)

    def config(self):
        return (self.n_rows,)

    def empty(self) -> GramAccumulator:
        return GramAccumulator(self.n_rows)

    def fold(self, block: np.ndarray, start: int = 0, n_threads: int = 0) -> int:
        self.n_cols += block.shape[1]
        return _core.fold_gram(block, self.gram, n_threads)

    def gpu_specs(self):
        return [{"n_rows": self.n_rows}]

    def finite(self) -> bool:
        """False when the squares overflowed float64 (the diagonal bounds every entry)."""
        return bool(np.all(np.isfinite(np.diagonal(self.gram))))

    def finish(self) -> np.ndarray:
        """The symmetric Gram matrix, float64 (T, T); built in place in the buffer."""
        g = self.gram
        t = self.n_rows
        for a in range(0, t, 256):  # mirror the lower triangle, one row block at a time
            b = min(t, a + 256)
            g[a:b, b:] = g[b:, a:b].T
            tile = g[a:b, a:b]
            iu = np.triu_indices(b - a, 1)
            tile[iu] = tile.T[iu]
        return g

    result = finish


# ---- box ids ------------------------------------------------------------------------------------


def grid_offsets(columns: Any, coarsest: float, seed: int = 0, grid: int = 0) -> np.ndarray:
    """Random per-coordinate grid offsets, uniform on [0, coarsest), as used by box counting.

    The offset of coordinate d depends only on (seed, grid, d), so any block of columns can be
    processed independently (out of core, on other machines) with the same grid.

    Parameters
    ----------
    columns : array_like of int
        Global column (parameter) indices d.
    coarsest : float
        Side of the coarsest box.
    seed, grid : int
        Random seed and grid number.

    Returns
    -------
    numpy.ndarray of float64
    """
    d = np.ascontiguousarray(columns, dtype=np.int64)
    return _core.box_grid_offsets(d, float(coarsest), int(seed) & _MASK64, int(grid) & _MASK64)


def key_seed(seed: int, grid: int) -> int:
    """Seed of the box-id hash keys of grid ``grid`` under ``seed`` (shared with the online
    box ids of :mod:`fractaldiff.train.online`, so both give the same ids)."""
    return int(_core.box_key_seed(int(seed) & _MASK64, int(grid) & _MASK64))


class BoxIdsAccumulator(Accumulator):
    """Box-id sums of every snapshot, per grid and dyadic scale: uint64 ``(n_grids, T,
    n_scales, 2)``, sums modulo 2^64 that add across column blocks.

    Column d of grid g is quantized with the origin ``min_d - u_d``, u_d the random offset of
    :func:`grid_offsets`. All grids are folded from the same block, so one pass over the data
    serves every grid (the grids ``first_grid .. first_grid + n_grids - 1`` of ``seed``).

    Parameters
    ----------
    n_rows, n_scales, n_grids : int
    eps0 : float
        Finest box side.
    seed : int
        Seed of the grid offsets and hash keys.
    mins : numpy.ndarray of float64, optional
        Per-column minima of the whole matrix. Without them each block's minima are computed
        while it is folded (a block holds all T rows of its columns, so they are the same).
    """

    gpu_kind = "GpuBoxIdsFold"
    column_positions = True

    def __init__(self, n_rows: int, n_scales: int, eps0: float, *, n_grids: int = 1,
                 seed: int = 0, mins: np.ndarray | None = None, first_grid: int = 0) -> None:
        self.n_rows, self.n_scales, self.n_grids = int(n_rows), int(n_scales), int(n_grids)
        self.eps0, self.seed, self.first_grid = float(eps0), int(seed), int(first_grid)
        self.coarsest = self.eps0 * 2.0 ** (self.n_scales - 1)
        self.mins = mins
        self.key_seeds = [key_seed(self.seed, self.first_grid + g) for g in range(self.n_grids)]
        self.ids = np.zeros((self.n_grids, self.n_rows, self.n_scales, 2), dtype=np.uint64)
        self.n_cols = 0

    def buffers(self):
        return (self.ids,)

    def config(self):
        return (self.n_rows, self.n_scales, self.eps0, self.n_grids, self.seed, self.first_grid)

    def empty(self) -> BoxIdsAccumulator:
        return BoxIdsAccumulator(self.n_rows, self.n_scales, self.eps0, n_grids=self.n_grids,
                                 seed=self.seed, mins=self.mins, first_grid=self.first_grid)

    def origins(self, grid: int, start: int, mins: np.ndarray) -> np.ndarray:
        """Float64 origins of this accumulator's grid number ``grid`` (grid ``first_grid +
        grid`` of the seed) for the columns ``start:start+len(mins)``."""
        cols = np.arange(start, start + mins.size, dtype=np.int64)
        return mins - grid_offsets(cols, self.coarsest, self.seed, self.first_grid + grid)

    def _block_mins(self, block: np.ndarray, start: int, n_threads: int) -> tuple[int, Any]:
        b = block.shape[1]
        if self.mins is not None:
            return _core.STATUS_OK, self.mins[start:start + b]
        lo, hi = np.empty(b), np.empty(b)
        status = _core.box_minmax(block, lo, hi, n_threads)
        if status == _core.STATUS_OK:
            check_box_range(float(np.max(hi - lo)) if b else 0.0, self.eps0, self.n_scales)
        return status, lo

    def fold(self, block: np.ndarray, start: int = 0, n_threads: int = 0) -> int:
        status, mins = self._block_mins(block, start, n_threads)
        if status != _core.STATUS_OK:
            return status
        self.n_cols += block.shape[1]
        for g in range(self.n_grids):
            st = _core.fold_box_ids(block, start, self.origins(g, start, mins), self.eps0,
                                    self.n_scales, self.key_seeds[g], self.ids[g], n_threads)
            if st != _core.STATUS_OK:
                return st
        return _core.STATUS_OK

    # GPU: one device fold per grid; the driver runs the min/max pass first (``mins`` given)

    def gpu_specs(self):
        return [{"n_rows": self.n_rows, "n_scales": self.n_scales, "key_seed": ks,
                 "eps0": self.eps0} for ks in self.key_seeds]

    def gpu_prepare(self, index, fold, start, n_cols):
        if self.mins is None:  # pragma: no cover - the GPU driver always passes mins
            raise RuntimeError("BoxIdsAccumulator on the GPU needs the column minima")
        fold.set_block(start, self.origins(index, start, self.mins[start:start + n_cols]))

    def gpu_collect(self, index, fold):
        return fold.finish(self.ids[index])

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, rare)``: occupied boxes per grid and scale, int64 ``(n_grids,
        n_scales)``, and the boxes holding exactly one and two snapshots, ``(n_grids, n_scales,
        2)``."""
        counts = np.empty((self.n_grids, self.n_scales), dtype=np.int64)
        rare = np.zeros((self.n_grids, self.n_scales, 2), dtype=np.int64)
        for g in range(self.n_grids):
            for k in range(self.n_scales):
                pairs = np.ascontiguousarray(self.ids[g, :, k, :]).view(np.dtype((np.void, 16)))
                occupancy = np.unique(pairs, return_counts=True)[1]
                counts[g, k] = occupancy.size
                rare[g, k] = np.bincount(np.minimum(occupancy, 3), minlength=4)[1:3]
        return counts, rare

    result = finish


def check_box_range(span: float, eps0: float, n_scales: int) -> None:
    """Raise ValueError when a coordinate with extent ``span`` would leave the quantization
    range of the box kernel (``_core.BOX_Q_LIMIT`` boxes, random offset included)."""
    limit = _core.BOX_Q_LIMIT
    if span / eps0 + 2.0 ** (n_scales - 1) >= limit:
        raise ValueError(
            f"eps0={eps0:g} is too small for the data: its largest per-coordinate extent "
            f"{span:g} spans {span / eps0:.3g} boxes, and box counting supports at most "
            f"2^31 boxes per coordinate (including the random offset of up to "
            f"2^(n_scales-1) = {2 ** (n_scales - 1)} boxes); use eps0 >= "
            f"{span / (limit - 2.0 ** (n_scales - 1)):.3g}"
        )


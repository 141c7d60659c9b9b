"""Accumulators: the small float64 partial sums that kernels fold column blocks into.

An accumulator holds sums over a set of parameter columns; accumulators over disjoint columns
merge by addition, and ``finish`` turns the sum into the result. The drivers (local threads,
dask, the GPU streamer) only fold, merge and finish.
"""

from __future__ import annotations

import numpy as np

from .. import _core

__all__ = ["Accumulator", "DIRECT_LAGS", "DisplacementAccumulator", "LagsAccumulator",
           "MSDAccumulator"]

#: Smallest lags of the all-lag MSD summed by an exact direct pass (the rest via FFT).
DIRECT_LAGS = 8

class Accumulator:
    """Partial sums over a set of columns; subclasses define the kernel, merge and finish."""

    n_cols: int = 0

    def fold(self, block: np.ndarray, n_threads: int = 0) -> int:  # pragma: no cover
        raise NotImplementedError

    def _arrays(self) -> tuple[np.ndarray, ...]:  # pragma: no cover
        raise NotImplementedError

    def _key(self) -> tuple:  # pragma: no cover
        raise NotImplementedError

    def merge(self, other: Accumulator) -> Accumulator:
        """Add an accumulator over a disjoint set of columns (in place); returns self."""
        if type(other) is not type(self) or other._key() != self._key():
            raise ValueError(
                f"cannot merge {type(other).__name__}{other._key()} into "
                f"{type(self).__name__}{self._key()}"
            )
        for mine, theirs in zip(self._arrays(), other._arrays()):
            mine += theirs
        self.n_cols += other.n_cols
        return self


class MSDAccumulator(Accumulator):
    """Partial sums from which the all-lag MSD of a snapshot matrix is finished.

    The accumulator holds, for the columns folded so far: the power spectrum of the centred
    columns summed over columns (length ``nfft``), the squared norm of every centred snapshot
    (length T) and exact sums of squared differences for lags 1..``n_direct``. Accumulators of
    disjoint column sets add (:meth:`merge`), so column blocks can be processed in any order, on
    any thread or machine.

    Parameters
    ----------
    n_rows : int
        Number of snapshots T (>= 2).
    n_direct : int, optional
        Lags summed exactly by a direct pass (default 8, capped at T-1).
    """

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

    def _arrays(self):
        return (self.power, self.sqnorm, self.direct)

    def _key(self):
        return (self.n_rows, self.n_direct)

    def fold(self, block: np.ndarray, n_threads: int = 0) -> int:
        """Add a ``(T, B)`` float32/float64 column block; returns the kernel's status code."""
        status = _core.fold_msd_fft(block, self.power, self.sqnorm, self.direct, n_threads)
        self.n_cols += block.shape[1]
        return status

    def result(self) -> np.ndarray:
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


class LagsAccumulator(Accumulator):
    """Sums of squared lag differences for selected lags (exact direct pass)."""

    def __init__(self, n_rows: int, lags: np.ndarray) -> None:
        self.n_rows = int(n_rows)
        self.lags = np.ascontiguousarray(lags, dtype=np.int64)
        self.sums = np.zeros(self.lags.size)
        self.n_cols = 0

    def _arrays(self):
        return (self.sums,)

    def _key(self):
        return (self.n_rows, tuple(self.lags.tolist()))

    def fold(self, block: np.ndarray, n_threads: int = 0) -> int:
        """Add a ``(T, B)`` float32/float64 column block; returns the kernel's status code."""
        self.n_cols += block.shape[1]
        if self.lags.size == 0:
            return _core.STATUS_OK
        return _core.fold_msd_lags(block, self.lags, self.sums, n_threads)

    def result(self) -> np.ndarray:
        """The MSD at the selected lags (float64, in the order given)."""
        return self.sums / (self.n_rows - self.lags)


class DisplacementAccumulator(Accumulator):
    """Squared distances of every snapshot from a reference snapshot."""

    def __init__(self, n_rows: int, ref: int) -> None:
        self.n_rows = int(n_rows)
        self.ref = int(ref)
        self.sq = np.zeros(self.n_rows)
        self.n_cols = 0

    def _arrays(self):
        return (self.sq,)

    def _key(self):
        return (self.n_rows, self.ref)

    def fold(self, block: np.ndarray, n_threads: int = 0) -> int:
        """Add a ``(T, B)`` float32/float64 column block; returns the kernel's status code."""
        self.n_cols += block.shape[1]
        return _core.fold_displacement(block, self.ref, self.sq, n_threads)

    def result(self) -> np.ndarray:
        """R(t) = ||X[t] - X[ref]||, float64."""
        return np.sqrt(self.sq)


# ---- parameter groups ---------------------------------------------------------------------------

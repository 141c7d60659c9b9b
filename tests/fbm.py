"""Exact fractional Brownian motion for tests, and a numpy time-averaged MSD.

Fractional Gaussian noise (fGn) with Hurst exponent H has the stationary
autocovariance

    gamma(k) = (|k + 1|^{2H} - 2 |k|^{2H} + |k - 1|^{2H}) / 2,   k = 0, 1, 2, ...

and its cumulative sum is fractional Brownian motion (fBm) sampled at integer
times, with Var[x(t)] = t^{2H} and E[(x(t + tau) - x(t))^2] = tau^{2H}.

Samples are drawn exactly with the Davies-Harte method: the n x n Toeplitz
covariance is embedded in a circulant matrix of size M = 2m (m >= n) whose
first row is c = [gamma(0), ..., gamma(m), gamma(m - 1), ..., gamma(1)].
A circulant matrix is diagonalised by the DFT, so with its eigenvalues
lam = DFT(c) (real, and non-negative for fGn) and Z = A + iB, A, B iid N(0, 1)
of length M,

    Y = DFT(sqrt(lam / M) * Z)

has Re(Y) and Im(Y) independent, each with covariance c[|j - k|] between entries
j and k. The first n entries of each are therefore two independent fGn paths.
This module is test support only; nothing in the package imports it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fgn_autocovariance",
    "fractional_gaussian_noise",
    "fractional_brownian_motion",
    "time_averaged_msd",
    "time_averaged_msd_direct",
]


def fgn_autocovariance(lags: np.ndarray, hurst: float) -> np.ndarray:
    """Autocovariance of unit fractional Gaussian noise at integer ``lags``."""
    k = np.abs(np.asarray(lags, dtype=np.float64))
    two_h = 2.0 * hurst
    return 0.5 * (np.abs(k + 1.0) ** two_h - 2.0 * k**two_h + np.abs(k - 1.0) ** two_h)


def _circulant_sqrt_eigenvalues(m: int, hurst: float) -> np.ndarray:
    """sqrt(eigenvalues / M) of the size-M = 2m circulant embedding."""
    gamma = fgn_autocovariance(np.arange(m + 1), hurst)
    first_row = np.concatenate([gamma, gamma[-2:0:-1]])  # length 2m
    eigenvalues = np.fft.fft(first_row).real
    if eigenvalues.min() < -1e-9 * eigenvalues.max():
        raise RuntimeError(f"circulant embedding is not positive for H = {hurst}")
    return np.sqrt(np.clip(eigenvalues, 0.0, None) / first_row.size)


def fractional_gaussian_noise(
    n_steps: int, hurst: float, n_dims: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Exact unit fGn, shape ``(n_steps, n_dims)``, independent columns."""
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst must be in (0, 1), got {hurst}")
    rng = np.random.default_rng() if rng is None else rng
    m = 1 << max(1, int(np.ceil(np.log2(n_steps))))
    scale = _circulant_sqrt_eigenvalues(m, hurst)
    n_pairs = (n_dims + 1) // 2
    z = rng.standard_normal((n_pairs, 2 * m)) + 1j * rng.standard_normal((n_pairs, 2 * m))
    y = np.fft.fft(scale * z, axis=1)[:, :n_steps]
    paths = np.concatenate([y.real, y.imag], axis=0)[:n_dims]
    return np.ascontiguousarray(paths.T)


def fractional_brownian_motion(
    n_snapshots: int, hurst: float, n_dims: int = 1, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Exact fBm at times 0..n_snapshots-1, shape ``(n_snapshots, n_dims)``, x[0] = 0."""
    steps = fractional_gaussian_noise(n_snapshots - 1, hurst, n_dims, rng)
    x = np.zeros((n_snapshots, n_dims))
    np.cumsum(steps, axis=0, out=x[1:])
    return x


def time_averaged_msd(x: np.ndarray, n_blocks: int | None = None) -> np.ndarray:
    """All-lag time-averaged MSD by FFT, summed over dimensions.

    msd(tau) = 1/(T - tau) sum_{t < T - tau} ||x[t + tau] - x[t]||^2, tau = 0..T-1.

    Parameters
    ----------
    x : ndarray, shape (T, D)
    n_blocks : int, optional
        If given, the D columns are split into ``n_blocks`` contiguous equal
        blocks and one MSD per block is returned, shape ``(n_blocks, T)``;
        the block MSDs sum to the full MSD.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0)
    n_snap, n_dims = x.shape
    blocks = 1 if n_blocks is None else n_blocks
    if n_dims % blocks:
        raise ValueError("n_blocks must divide the number of dimensions")
    size = 1 << int(np.ceil(np.log2(2 * n_snap - 1)))
    power = np.abs(np.fft.rfft(x, n=size, axis=0)) ** 2  # (size//2+1, D)
    power = power.reshape(power.shape[0], blocks, n_dims // blocks).sum(axis=2)
    autocorr = np.fft.irfft(power, n=size, axis=0)[:n_snap].T  # (blocks, T): S2(tau)
    squares = (x**2).reshape(n_snap, blocks, n_dims // blocks).sum(axis=2).T  # (blocks, T)
    cumulative = np.concatenate([np.zeros((blocks, 1)), np.cumsum(squares, axis=1)], axis=1)
    tau = np.arange(n_snap)
    head = cumulative[:, n_snap - tau]  # sum_{t < T - tau} x_t^2
    tail = cumulative[:, -1:] - cumulative[:, tau]  # sum_{t >= tau} x_t^2
    msd = (head + tail - 2.0 * autocorr) / (n_snap - tau)
    msd[:, 0] = 0.0
    return msd[0] if n_blocks is None else msd


def time_averaged_msd_direct(x: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Slow, obvious reference for :func:`time_averaged_msd` at selected lags."""
    x = np.asarray(x, dtype=np.float64)
    out = []
    for lag in lags:
        diff = x[lag:] - x[: x.shape[0] - lag]
        out.append(np.mean(np.sum(diff**2, axis=1)))
    return np.array(out)

"""Slow, obvious numpy versions of every kernel, used as the ground truth in tests.

Everything here is computed in float64 straight from the definitions, with no cleverness.
"""

from __future__ import annotations

import numpy as np


def msd_direct(X, lags=None) -> np.ndarray:
    """msd[tau] = 1/(T-tau) * sum_{t<T-tau} sum_d (X[t+tau,d] - X[t,d])**2, in float64."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    T = X.shape[0]
    lags = range(T) if lags is None else lags
    out = []
    for tau in lags:
        tau = int(tau)
        if tau == 0:
            out.append(0.0)
            continue
        diff = X[tau:] - X[: T - tau]
        out.append(float(np.einsum("ij,ij->", diff, diff)) / (T - tau))
    return np.array(out, dtype=np.float64)


def displacement_direct(X, ref=0) -> np.ndarray:
    """R[t] = || X[t] - X[ref] ||_2 in float64."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    diff = X - X[ref]
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def weight_like(T: int, D: int, step: float, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """The accuracy workload: column d is o_d + cumsum(step * xi), o_d ~ N(0,1), xi ~ N(0,1)."""
    rng = np.random.default_rng(seed)
    offsets = rng.standard_normal(D)
    steps = step * rng.standard_normal((T, D))
    return (offsets + np.cumsum(steps, axis=0)).astype(dtype)


def box_counts_direct(X, origin, eps0, n_scales) -> np.ndarray:
    """Occupied boxes per dyadic scale: quantize q = trunc((x - origin) * (1/eps0)) exactly as
    the kernel does, then count distinct rows of q >> k with np.unique(axis=0)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    q = ((X - np.asarray(origin, dtype=np.float64)) * (1.0 / eps0)).astype(np.int64)
    assert q.min() >= 0
    return np.array([np.unique(q >> k, axis=0).shape[0] for k in range(n_scales)])


def box_occupancy_direct(X, origin, eps0, n_scales) -> np.ndarray:
    """(n_scales, 3): occupied boxes, boxes holding exactly one point and exactly two points,
    from np.unique(axis=0, return_counts=True) over the quantized rows."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    q = ((X - np.asarray(origin, dtype=np.float64)) * (1.0 / eps0)).astype(np.int64)
    out = []
    for k in range(n_scales):
        c = np.unique(q >> k, axis=0, return_counts=True)[1]
        out.append((c.size, int(np.sum(c == 1)), int(np.sum(c == 2))))
    return np.array(out)


def sqdist_direct(X) -> np.ndarray:
    """All pairwise squared Euclidean distances in float64 (scipy's pdist)."""
    from scipy.spatial.distance import pdist, squareform

    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    return squareform(pdist(X, "sqeuclidean"))


# ---- box-id hash: numpy versions of the definitions in cpp/include/fractaldiff/hd_common.hpp ----

_MASK64 = 0xFFFFFFFFFFFFFFFF
_KEY_MULT = 0xA0761D6478BD642F  # kBoxKeyMult


def splitmix64(z) -> np.ndarray:
    """SplitMix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def box_grid_seed(seed: int, grid: int) -> int:
    s = (seed * 0x2545F4914F6CDD1D + grid * 0x9E3779B97F4A7C15) & _MASK64
    return int(splitmix64([s])[0])


def box_key_seed(seed: int, grid: int) -> int:
    return box_grid_seed(seed, grid) ^ 0x5851F42D4C957F2D


def box_grid_offsets(columns, coarsest: float, seed: int = 0, grid: int = 0) -> np.ndarray:
    d = np.asarray(columns, dtype=np.uint64)
    h = splitmix64(d ^ np.uint64(box_grid_seed(seed, grid)))
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53 * float(coarsest)


def box_keys(key_seed: int, col_start: int, n: int) -> np.ndarray:
    """(2, n) uint64 keys a_d, b_d of global columns col_start .. col_start + n - 1."""
    keys = np.empty((2, n), dtype=np.uint64)
    d = np.arange(col_start, col_start + n, dtype=np.uint64)
    for which in (0, 1):
        base = (int(key_seed) ^ ((_KEY_MULT * (which + 1)) & _MASK64)) & _MASK64
        inner = int(splitmix64([base])[0])
        with np.errstate(over="ignore"):
            keys[which] = splitmix64(np.uint64(inner) + d)
    return keys


def box_ids_direct(block, col_start, origin, eps0, n_scales, key_seed) -> np.ndarray:
    """Box ids (T, n_scales, 2) uint64 of a block, straight from the definition:
    q = trunc((x - origin) * (1/eps0)), id_s(k) = sum_d key_s(d) * (q_d >> k) mod 2^64."""
    block = np.asarray(block, dtype=np.float64)
    if block.ndim == 1:
        block = block[None, :]
    y = (block - np.asarray(origin, dtype=np.float64)) * (1.0 / float(eps0))
    assert np.all((y >= 0) & (y < 2.0**31))
    q = y.astype(np.int64).astype(np.uint64)
    keys = box_keys(key_seed, col_start, block.shape[1])
    ids = np.zeros((block.shape[0], n_scales, 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n_scales):
            qk = q >> np.uint64(k)
            for s in (0, 1):
                ids[:, k, s] = (qk * keys[s]).sum(axis=1, dtype=np.uint64)
    return ids


# ---- the fused SGLD update (cpp/include/fractaldiff/sgld_kernels.hpp) --------------------------

_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z) -> np.ndarray:
    """SplitMix64 finalizer without its increment."""
    with np.errstate(over="ignore"):
        return splitmix64(np.asarray(z, dtype=np.uint64) - np.uint64(_GOLDEN))


def sgld_noise(seed: int, step: int, n_chains: int, n_params: int) -> np.ndarray:
    """(C, D) float64 Gaussian draws of the fused SGLD update, from the definition: stream key
    mix(mix(seed + G(t+1)) + G(c+1)); 64 bits of pair k mix(key + G(k+1)); Box-Muller with
    u1 = (hi + 1) / 2^32, u2 = lo / 2^32; element d of block j = d // 512 at offset o = d % 512
    takes z0 of pair 256 j + o (o < 256) or z1 of pair 256 j + o - 256."""
    out = np.empty((n_chains, n_params))
    d = np.arange(n_params)
    j, o = d // 512, d % 512
    k = (j * 256 + np.where(o < 256, o, o - 256)).astype(np.uint64)
    for c in range(n_chains):
        inner = int(_mix([(seed + _GOLDEN * (step + 1)) & _MASK64])[0])
        key = int(_mix([(inner + _GOLDEN * (c + 1)) & _MASK64])[0])
        with np.errstate(over="ignore"):
            b = _mix(np.uint64(key) + np.uint64(_GOLDEN) * (k + np.uint64(1)))
        u1 = ((b >> np.uint64(32)).astype(np.float64) + 1.0) / 2.0**32
        u2 = (b & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32
        r = np.sqrt(-2.0 * np.log(u1))
        out[c] = np.where(o < 256, r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2))
    return out


def sgld_step(w, center, grad, nbeta, gamma, eps, seed: int, step: int):
    """One localized SGLD step of C chains in float64: returns (w_out, drift, virial) with
    drift = nβ g + γ (w - w*), virial = Σ_d (w - w*) drift, w_out = w - (ε/2) drift + √ε ξ."""
    w, center, grad = (np.asarray(a, dtype=np.float64) for a in (w, center, grad))
    nb, gm, ep = (np.asarray(a, dtype=np.float64)[:, None] for a in (nbeta, gamma, eps))
    delta = w - center
    drift = nb * grad + gm * delta
    virial = (delta * drift).sum(axis=1)
    xi = sgld_noise(seed, step, *w.shape)
    return w - 0.5 * ep * drift + np.sqrt(ep) * xi, drift, virial

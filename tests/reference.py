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

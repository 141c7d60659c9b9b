"""Point sets of known dimension, embedded in R^D by a random orthonormal map (for the tests)."""

from __future__ import annotations

import numpy as np


def embed(P: np.ndarray, D: int, seed: int = 0) -> np.ndarray:
    """Map k-dimensional points P (n, k) into R^D by a random orthonormal k-frame."""
    rng = np.random.default_rng(seed + 1000)
    Q, _ = np.linalg.qr(rng.standard_normal((D, P.shape[1])))
    return P @ Q.T


def cantor(n: int, seed: int = 0, depth: int = 30) -> np.ndarray:
    """Uniform measure on the middle-thirds Cantor set in [0, 1] (dimension log 2 / log 3)."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, size=(n, depth))
    return (2.0 * bits * 3.0 ** -np.arange(1, depth + 1)).sum(axis=1)[:, None]


def sierpinski(n: int, seed: int = 0, depth: int = 40) -> np.ndarray:
    """Uniform measure on the Sierpinski triangle (dimension log 3 / log 2)."""
    rng = np.random.default_rng(seed)
    v = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    digits = rng.integers(0, 3, size=(n, depth))
    w = 2.0 ** -np.arange(1, depth + 1)
    return np.einsum("nk,nkd->nd", w[None, :] * np.ones((n, 1)), v[digits])


def cube(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Uniform points in the unit k-cube (dimension k)."""
    return np.random.default_rng(seed).uniform(size=(n, k))


def brownian3(n: int, seed: int = 0) -> np.ndarray:
    """A Brownian path in R^3 sampled at n times (its trace has dimension 2)."""
    return np.cumsum(np.random.default_rng(seed).standard_normal((n, 3)), axis=0)


def brownian3_times(n: int, seed: int = 0) -> np.ndarray:
    """One Brownian path in R^3 observed at n uniformly random times in [0, 1] (exact Gaussian
    increments of variance dt): a sample of the path's occupation measure, whose correlation
    dimension is 2, with no step size below which the trace is unresolved."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(size=n))
    dt = np.diff(t, prepend=0.0)
    return np.cumsum(rng.standard_normal((n, 3)) * np.sqrt(dt)[:, None], axis=0)


DIMENSIONS = {
    "cantor": np.log(2) / np.log(3),
    "sierpinski": np.log(3) / np.log(2),
    "brownian3": 2.0,
}


def sierpinski_carpet(n: int, seed: int = 0, depth: int = 25) -> np.ndarray:
    """Uniform measure on the Sierpinski carpet (dimension log 8 / log 3)."""
    rng = np.random.default_rng(seed)
    cells = np.array([(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)], float)
    digits = rng.integers(0, 8, size=(n, depth))
    w = 3.0 ** -np.arange(1, depth + 1)
    return np.einsum("k,nkd->nd", w, cells[digits])


def koch(n: int, seed: int = 0, depth: int = 25) -> np.ndarray:
    """Uniform measure on the Koch curve (dimension log 4 / log 3)."""
    rng = np.random.default_rng(seed)
    rot = np.exp(1j * np.pi / 3)
    scale = np.array([1 / 3, rot / 3, np.conj(rot) / 3, 1 / 3])
    shift = np.array([0.0, 1 / 3, 0.5 + 1j * np.sqrt(3) / 6, 2 / 3])
    digits = rng.integers(0, 4, size=(n, depth))
    z = np.zeros(n, dtype=complex)
    for k in range(depth - 1, -1, -1):  # innermost map first
        d = digits[:, k]
        z = scale[d] * z + shift[d]
    return np.column_stack([z.real, z.imag])


def embed_random(P: np.ndarray, D: int, rng: np.random.Generator) -> np.ndarray:
    """Embed P (n, k) in R^D by a random rotation and a random offset, as weights would be."""
    Q, _ = np.linalg.qr(rng.standard_normal((D, P.shape[1])))
    return P @ Q.T + rng.standard_normal(D) * 10.0


DIMENSIONS.update({"sierpinski_carpet": np.log(8) / np.log(3), "koch": np.log(4) / np.log(3)})


def henon(n: int, burn: int = 500) -> np.ndarray:
    """n points of the Hénon attractor (a = 1.4, b = 0.3) after ``burn`` transient steps."""
    x, y = 0.1, 0.1
    out = np.empty((n, 2))
    for i in range(n + burn):
        x, y = 1.0 - 1.4 * x * x + y, 0.3 * x
        if i >= burn:
            out[i - burn] = (x, y)
    return out

"""Pairwise distances between snapshots, the correlation dimension and trajectory PCA.

All three come from one T x T matrix: the centred Gram matrix G of the snapshots (columns
centred by their mean over time), accumulated in float64 by a GEMM-like compiled kernel over
column blocks. Squared distances are G_ii + G_jj - 2 G_ij, the MSD is the mean of each diagonal
of the distance matrix, and the principal components of the trajectory are the top eigenvectors
of G.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import _core
from ..engine.folds import check_status, kernel_error, map_reduce, prepare_input
from .._validation import (
    check_device,
    check_fraction,
    check_int,
    check_memory_limit,
    check_n_threads,
    check_options,
)
from .windows import DimensionEstimate, scaling_fit, resolve_scale_window, select_window

__all__ = [
    "TrajectoryPCA",
    "centered_gram",
    "correlation_dimension",
    "msd_from_sqdist",
    "pairwise_sqdist",
    "trajectory_pca",
]

_OPTIONS = ("device", "memory_limit", "progress")


def centered_gram(X: Any, *, n_threads: int | None = None, **opts: Any) -> np.ndarray:
    r"""Gram matrix of the time-centred snapshots, :math:`G = \tilde X \tilde X^T`.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd` (T >= 1, D >= 1).
    n_threads : int, optional
        Threads for the compiled kernel.
    memory_limit : int or str, optional
        Bound on the working set when X streams from disk (as for :func:`fractaldiff.msd`).
    progress : bool, optional
        Show a progress bar (default: on a terminal, for data >= 1 GiB).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Where to compute the Gram matrix, as for :func:`fractaldiff.msd`: "auto" (default) uses
        the GPU for data in CUDA device memory and the CPU otherwise; "cuda" streams host data
        to the GPU. Device memory: the (T, T) float64 matrix plus ``memory_limit``.

    Returns
    -------
    numpy.ndarray of float64, shape (T, T)
        Symmetric; ``G[i, j] = sum_d (X[i,d] - m_d) (X[j,d] - m_d)``, m_d the mean of column d.
    """
    func = opts.pop("_func", "centered_gram")
    check_options(opts, func, _OPTIONS)
    device = check_device(opts.get("device", "auto"), func)
    nt = check_n_threads(n_threads)
    limit = check_memory_limit(opts.get("memory_limit"))
    from ..engine.gpu import choose_device, gpu_gram

    where, index = choose_device(device, X, func)
    if where == "cuda":  # the same accumulator on the GPU (its errors are raised there)
        g = gpu_gram(X, index, limit, opts.get("progress"), func)
    else:
        X, _, _, nt = prepare_input(X, 1, func, nt)
        g = map_reduce(X, partial(_gram_block, n_threads=nt), _sum_arrays, func=func,
                       memory_limit=limit, progress=opts.get("progress"))
    if not np.all(np.isfinite(np.diagonal(g))):  # squares overflowed float64
        locate = getattr(X, "first_nonfinite", lambda: None)
        raise kernel_error(_core.STATUS_NONFINITE, func, locate, "X")
    low = np.tril(g)
    low += np.tril(g, -1).T
    return low


def _input_rows(X: Any, min_rows: int, what: str) -> tuple[Any, int]:
    """``(X, T)``: data in CUDA device memory as it is (the GPU kernels read it in place),
    anything else as a validated source (or dask array)."""
    from ..engine.gpu import as_device_matrix, is_device_array

    if is_device_array(X):
        t = as_device_matrix(X, "X").shape[0]
        if t < min_rows:
            raise ValueError(f"X has T={t} snapshot(s); {what} needs at least {min_rows}")
        return X, t
    src, t, _, _ = prepare_input(X, min_rows, what, 0)
    return src, t


def _gram_block(block: np.ndarray, start: int, n_threads: int) -> np.ndarray:
    """Lower triangle of the centred Gram matrix of one column block (adds across blocks)."""
    t = block.shape[0]
    g = np.zeros((t, t))
    check_status(_core.fold_gram(block, g, n_threads))
    return g


def _sum_arrays(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0]
    for p in parts[1:]:
        out += p
    return out


def _sqdist_from_gram(g: np.ndarray) -> np.ndarray:
    d = np.diag(g).copy()
    out = d[:, None] + d[None, :]  # d_i + d_j == d_j + d_i: the result is exactly symmetric
    out -= 2.0 * g
    np.maximum(out, 0.0, out=out)
    np.fill_diagonal(out, 0.0)
    return out


def pairwise_sqdist(X: Any, *, n_threads: int | None = None, **opts: Any) -> np.ndarray:
    r"""Squared Euclidean distances between all pairs of snapshots.

    .. math:: D_{ij} = \|X_i - X_j\|_2^2 = G_{ii} + G_{jj} - 2 G_{ij}

    with G the Gram matrix of the time-centred snapshots (:func:`centered_gram`).

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd`.
    n_threads : int, optional
        Threads for the compiled kernel.
    memory_limit : int or str, optional
        Bound on the working set when X streams from disk (as for :func:`fractaldiff.msd`).
    progress : bool, optional
        Show a progress bar (default: on a terminal, for data >= 1 GiB).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Where to compute the Gram matrix, as for :func:`fractaldiff.msd`: "auto" (default) uses
        the GPU for data in CUDA device memory and the CPU otherwise; "cuda" streams host data
        to the GPU. Device memory: the (T, T) float64 matrix plus ``memory_limit``.

    Returns
    -------
    numpy.ndarray of float64, shape (T, T)
        Symmetric, zero diagonal, non-negative.

    Notes
    -----
    Accuracy: all arithmetic is float64 on data centred by the column means, so the error is
    relative to the snapshots' spread about their mean, not to their magnitude (large weight
    offsets cost nothing). Bound: ``|err(D_ij)| <= (256 + D/256 + 3) * 2**-53 *
    (|x_i - m| + |x_j - m|)**2``; measured on the weight-like workload (T = 2048, D = 50 000,
    float32, steps 1e-3) the largest relative error is about 1e-12 (benchmarks/bench_fractal.py).

    Cost: T^2 D multiply-adds in a register-blocked, threaded kernel (half of a GEMM, by
    symmetry); memory: the (T, T) result and a packed float64 chunk of T x 256 values.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> fd.pairwise_sqdist(np.array([[0.0, 0.0], [3.0, 4.0]]))
    array([[ 0., 25.],
           [25.,  0.]])
    """
    g = centered_gram(X, n_threads=n_threads, _func="pairwise_sqdist", **opts)
    return _sqdist_from_gram(g)


def msd_from_sqdist(sqdist: Any) -> np.ndarray:
    """Time-averaged MSD from a squared-distance matrix: the mean of each upper diagonal.

    ``msd[tau] = mean_t sqdist[t, t + tau]``, tau = 0..T-1; a cross-check of
    :func:`fractaldiff.msd` from the matrix that :func:`pairwise_sqdist` returns.
    """
    d = np.asarray(sqdist, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"sqdist must be a square (T, T) matrix, got shape {d.shape}")
    return np.array([np.diagonal(d, k).mean() for k in range(d.shape[0])])


def _check_theiler(theiler: Any, t: int) -> int:
    w = check_int(theiler, "theiler", minimum=1)
    if w >= t:
        raise ValueError(
            f"theiler={w} must be smaller than the number of snapshots T={t}: pairs closer "
            f"than {w} snapshots in time are excluded, which would leave no pairs"
        )
    return w


def correlation_dimension(X: Any, *, theiler: int = 1, window: Any = "auto",
                          n_radii: int = 64, min_pairs: int = 100, max_fraction: float = 0.25,
                          n_threads: int | None = None, **opts: Any) -> DimensionEstimate:
    r"""Correlation dimension of the snapshot cloud (Grassberger–Procaccia, Takens).

    The correlation integral over pairs at least ``theiler`` snapshots apart in time,

    .. math:: C(r) = \frac{\#\{(i, j): j - i \ge w,\ \|X_i - X_j\| < r\}}
                          {\#\{(i, j): j - i \ge w\}},

    scales as :math:`r^{\nu}` over a scaling region; ``dimension`` is the fitted slope of
    log C against log r there. ``takens`` is Takens' maximum-likelihood estimate
    :math:`\hat\nu = -\left(\frac1M \sum \log(r_{ij}/r_0)\right)^{-1}` over the M pairs with
    :math:`r_{ij} < r_0`, r_0 the upper end of the window.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd` (T >= 3).
    theiler : int, default 1
        Theiler window w >= 1: pairs with ``|i - j| < w`` are excluded (w = 1 excludes only
        i = j). Trajectories are correlated in time: consecutive snapshots lie close together
        because of the dynamics, not because of the geometry of the set, and count as a
        spurious low-dimensional piece at small r. Use at least the lag over which snapshots
        stay correlated (e.g. a few times the decorrelation lag of the MSD's crossover).
        Must be < T. For a diffusive path the time-close pairs *are* its geometry at small r:
        excluding them leaves only later returns below the RMS displacement over w
        snapshots, where C(r) follows the embedding dimension; the automatic window starts
        above that radius (Notes).
    window : "auto" or (float, float), default "auto"
        Radii ``(smallest, largest)`` to fit over, or "auto" (see Notes).
    n_radii : int, default 64
        Log-spaced radii from the smallest non-zero to the largest pair distance.
    min_pairs : int, default 100
        Automatic window: ignore radii with fewer pairs below them (Poisson noise).
    max_fraction : float, default 0.25
        Automatic window: ignore radii with C(r) above this (saturation at the set's size).
    n_threads : int, optional
        Threads for the compiled kernel.
    memory_limit : int or str, optional
        Bound on the working set when X streams from disk (as for :func:`fractaldiff.msd`).
    progress : bool, optional
        Show a progress bar (default: on a terminal, for data >= 1 GiB).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Where to compute the Gram matrix, as for :func:`fractaldiff.msd`: "auto" (default) uses
        the GPU for data in CUDA device memory and the CPU otherwise; "cuda" streams host data
        to the GPU. Device memory: the (T, T) float64 matrix plus ``memory_limit``.

    Returns
    -------
    DimensionEstimate
        ``.dimension`` (slope), ``.stderr``, ``.window`` (radii), ``.r``, ``.C``, ``.takens``,
        ``.takens_stderr``; ``.details`` holds ``theiler``, ``n_pairs`` (pairs used),
        ``takens_pairs`` (M), ``msd`` (the MSD from the same distance matrix, a cross-check
        of :func:`fractaldiff.msd`) and ``theiler_radius`` (the automatic window's lower
        bound from the Theiler window, 0 when not applied).

    Raises
    ------
    ValueError
        Bad shape, T < 3, D = 0, NaN/Inf, ``theiler`` >= T, fewer than 3 usable radii (the
        message says how many pairs are needed).

    Notes
    -----
    Automatic window: among radii with at least ``min_pairs`` pairs below them and
    ``C(r) <= max_fraction`` (and, for ``theiler`` > 1, at least the RMS displacement over
    ``theiler`` snapshots, sqrt(MSD(w)), when at least 4 radii spanning a factor 2 remain:
    not so for unordered samples, whose lag-w displacement is the set's size), the longest
    run (at least 4 radii spanning a factor 2) in which the slopes fitted to the run's two
    halves agree within 10 % (:func:`fractaldiff.dimension.select_window`).

    Trajectories sampled at equal time steps resolve the set only above the step: a random
    walk of T steps in 3-D has C(r) ~ r^3 below the step and spans only sqrt(T) steps, so
    with T = 4096 its local slope falls from 3 to 1.5 with no plateau (the trace's dimension
    2 shows only over a hand-picked window, with a large stderr). The same path observed at
    T uniformly random times has C(r) ~ r^2 down to the smallest pairs (tests: 1.90-1.95 for
    T = 4096, theiler = 1).

    Uncertainty: ``stderr`` combines the fit's standard error with half the difference of the
    slopes of the window's two halves (curvature). ``takens_stderr`` is the formal
    ``takens / sqrt(M)``; pairs sharing points are not independent, so treat it as a lower
    bound. Reliable estimates need T >= about 10**(dimension/2) points well beyond that, the
    usual rule for correlation dimensions.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> rng = np.random.default_rng(0)
    >>> Q = np.linalg.qr(rng.standard_normal((50, 2)))[0].T    # random 2-D plane in R^50
    >>> X = rng.uniform(size=(2000, 2)) @ Q
    >>> est = fd.correlation_dimension(X)
    >>> abs(est.dimension - 2) < 0.1
    True
    """
    func = "correlation_dimension"
    check_options(opts, func, _OPTIONS)
    n_radii = check_int(n_radii, "n_radii", minimum=4)
    min_pairs = check_int(min_pairs, "min_pairs", minimum=1)
    max_fraction = check_fraction(max_fraction, "max_fraction")
    src, t = _input_rows(X, 3, "the correlation dimension")
    w = _check_theiler(theiler, t)
    sq = pairwise_sqdist(src, n_threads=n_threads, **opts)
    iu, ju = np.triu_indices(t, k=w)
    dist = np.sqrt(sq[iu, ju])
    del iu, ju
    dist.sort()
    n_pairs = dist.size
    positive = dist[dist > 0]
    if positive.size < 2 or positive[0] == positive[-1]:
        raise ValueError(
            f"{func}: the {n_pairs} pairs outside the Theiler window have fewer than 2 distinct "
            f"non-zero distances; the points are (nearly) identical"
        )
    r = np.geomspace(positive[0], positive[-1], n_radii)
    below = np.searchsorted(dist, r, side="left")  # pairs with distance < r
    c = below / n_pairs
    x = np.log(r)
    with np.errstate(divide="ignore"):
        y = np.log(c)
    step = x[1] - x[0]
    slope_span = max(1, int(round(math.log(2.0) / step)))
    msd = msd_from_sqdist(sq)
    r_theiler = 0.0
    if isinstance(window, str) and window == "auto":
        cand = (below >= min_pairs) & (c <= max_fraction)
        if w > 1:
            # Pairs closer than the typical displacement over the Theiler lag are depleted by
            # the exclusion: C(r) there counts only later returns and, for a diffusive path,
            # scales with the embedding dimension. Start the window above it when that leaves
            # a usable range (it does not for unordered samples, where it is the set's size).
            r_theiler = float(math.sqrt(max(msd[min(w, msd.size - 1)], 0.0)))
            above = cand & (r >= r_theiler)
            if int(above.sum()) >= 4 and r[above].max() >= 2 * r[above].min():
                cand = above
            else:
                r_theiler = 0.0
        ncand = int(cand.sum())
        if ncand < 3:
            raise ValueError(
                f"{func}: only {ncand} radii have >= min_pairs={min_pairs} pairs below them and "
                f"C(r) <= {max_fraction}; a fit needs at least 3. There are {n_pairs} pairs "
                f"(T={t}, theiler={w}); use more snapshots (several hundred at least), a "
                f"smaller theiler window or min_pairs, or pass window=(r_lo, r_hi)"
            )
        start, stop = select_window(x, y, cand, min_points=min(4, ncand),
                                    min_span=min(math.log(2.0), float(np.ptp(x[cand]))),
                                    tolerance=0.1, slope_span=slope_span)
        above = ""
        if r_theiler:
            above = f", r >= {r_theiler:.4g} (RMS displacement over the Theiler lag)"
        rule = (f"auto: longest run of radii with >= {min_pairs} pairs and C <= {max_fraction:g}"
                f"{above} whose two halves' slopes agree within 10%")
    else:
        start, stop = resolve_scale_window(window, r, func)
        if np.any(below[start:stop] == 0):
            raise ValueError(f"{func}: window {window!r} includes radii with no pairs below "
                             f"them; raise its lower end")
        rule = "manual"
    dim, intercept, stderr = scaling_fit(x, y, start, stop)
    r0 = r[stop - 1]
    m = int(np.searchsorted(dist, r0, side="left"))
    near = dist[:m]
    near = near[near > 0]
    m = near.size
    if m >= 2:
        takens = float(-1.0 / np.mean(np.log(near / r0)))
        takens_se = takens / math.sqrt(m)
    else:  # pragma: no cover - the window guarantees pairs below r0
        takens, takens_se = float("nan"), float("nan")
    return DimensionEstimate(
        method="correlation",
        dimension=float(dim),
        stderr=float(stderr),
        window=(float(r[start]), float(r[stop - 1])),
        scales=r,
        values=c,
        n_points=t,
        window_rule=rule,
        intercept=float(intercept),
        takens=takens,
        takens_stderr=takens_se,
        details={"theiler": w, "n_pairs": n_pairs, "takens_pairs": m, "msd": msd,
                 "theiler_radius": r_theiler},
    )


@dataclass(frozen=True, eq=False, repr=False)
class TrajectoryPCA:
    """Principal components of a weight trajectory (from its centred Gram matrix).

    Attributes
    ----------
    scores : numpy.ndarray, shape (T, k)
        Coordinates of the snapshots along the top k principal axes (time-centred).
    explained_variance : numpy.ndarray, shape (k,)
        Variance along each axis (eigenvalue / (T - 1)).
    explained_variance_ratio : numpy.ndarray, shape (k,)
        Fraction of the total variance along each axis.
    total_variance : float
        Sum of the variances of all D coordinates over time.
    """

    scores: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    total_variance: float

    def __repr__(self) -> str:
        k = self.scores.shape[1]
        top = np.round(self.explained_variance_ratio[:3], 4).tolist()
        return f"TrajectoryPCA(n_components={k}, explained_variance_ratio[:3]={top})"

    def box_counting_dimension(self, **kwargs: Any) -> DimensionEstimate:
        """Box-counting dimension of the projected trajectory (the ``scores``).

        Keyword arguments are those of :func:`fractaldiff.box_counting_dimension`.
        """
        from .boxcount import box_counting_dimension

        return box_counting_dimension(self.scores, **kwargs)


def trajectory_pca(X: Any, n_components: int = 10, *, n_threads: int | None = None,
                   **opts: Any) -> TrajectoryPCA:
    """Top principal components of the trajectory, from the centred Gram matrix.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd` (T >= 2).
    n_components : int, default 10
        Number of components k (capped at T).
    n_threads : int, optional
        Threads for the compiled kernel.
    memory_limit : int or str, optional
        Bound on the working set when X streams from disk (as for :func:`fractaldiff.msd`).
    progress : bool, optional
        Show a progress bar (default: on a terminal, for data >= 1 GiB).
    device : {"auto", "cpu", "cuda", "cuda:N"}, optional
        Where to compute the Gram matrix, as for :func:`fractaldiff.msd`: "auto" (default) uses
        the GPU for data in CUDA device memory and the CPU otherwise; "cuda" streams host data
        to the GPU. Device memory: the (T, T) float64 matrix plus ``memory_limit``.

    Returns
    -------
    TrajectoryPCA

    Notes
    -----
    With G = U diag(l) U^T the eigendecomposition of the T x T centred Gram matrix, the scores
    are U sqrt(l): the same as projecting the centred snapshots on the top right singular
    vectors, without ever forming a D x D matrix. Cost: the Gram matrix plus an O(T^3)
    eigendecomposition.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> X = np.cumsum(np.random.default_rng(0).standard_normal((500, 100)), axis=0)
    >>> pca = fd.trajectory_pca(X, n_components=3)
    >>> pca.scores.shape, bool(pca.explained_variance_ratio[0] > 0.5)   # random walks: PC1
    ((500, 3), True)
    """
    k = check_int(n_components, "n_components", minimum=1)
    src, t = _input_rows(X, 2, "trajectory PCA")
    g = centered_gram(src, n_threads=n_threads, _func="trajectory_pca", **opts)
    k = min(k, t)
    vals, vecs = np.linalg.eigh(g)
    vals = vals[::-1][:k].clip(min=0.0)
    vecs = vecs[:, ::-1][:, :k]
    # a deterministic sign: the largest |entry| of each component is positive
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    vecs = vecs * signs
    total = float(np.trace(g))
    scores = vecs * np.sqrt(vals)
    ratio = vals / total if total > 0 else np.zeros_like(vals)
    return TrajectoryPCA(scores=scores, explained_variance=vals / (t - 1),
                         explained_variance_ratio=ratio, total_variance=total / (t - 1))

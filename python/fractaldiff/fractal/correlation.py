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
from typing import Any

import numpy as np

from .. import _core
from .._validation import (
    AnalysisOptions,
    check_fraction,
    check_int,
    shared_docs,
)
from ..engine.accumulators import GramAccumulator
from ..engine.folds import kernel_error, prepare_input, run
from .windows import (
    DimensionEstimate,
    correlation_uncertainty,
    resolve_scale_window,
    scaling_fit,
    select_window,
)

__all__ = [
    "TrajectoryPCA",
    "centered_gram",
    "correlation_dimension",
    "msd_from_sqdist",
    "pairwise_sqdist",
    "sqdist_from_gram",
    "top_eigenpairs",
    "trajectory_pca",
]


def _gram(X: Any, options: AnalysisOptions, groups: Any = None, start: Any = None,
          stop: Any = None) -> Any:
    """The symmetric centred Gram matrix (or ``{group: matrix}``), checked for overflow."""
    res = run(X, GramAccumulator, options, min_rows=1, what=options.func, groups=groups,
              start=start, stop=stop)
    accs = res if isinstance(res, dict) else {None: res}
    for acc in accs.values():
        if not acc.finite():  # squares overflowed float64
            locate = getattr(X, "first_nonfinite", lambda: None)
            raise kernel_error(_core.STATUS_NONFINITE, options.func, locate, "X")
    out = {name: acc.finish() for name, acc in accs.items()}
    return out if isinstance(res, dict) else out[None]


@shared_docs
def centered_gram(X: Any, *, groups: Any = None, start: int | None = None,
                  stop: int | None = None, n_threads: int | None = None, device: str = "auto",
                  memory_limit: int | str | None = None, progress: bool | None = None
                  ) -> Any:
    r"""Gram matrix of the time-centred snapshots, :math:`G = \tilde X \tilde X^T`.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd` (T >= 1, D >= 1).
    <<groups>>
    <<start_stop>>
    <<n_threads>>
    <<device>>
        Device memory: the (T, T) float64 matrix plus ``memory_limit``.
    <<memory_limit>>
    <<progress>>

    Returns
    -------
    numpy.ndarray of float64, shape (T, T), or a dict of them with ``groups``
        Symmetric; ``G[i, j] = sum_d (X[i,d] - m_d) (X[j,d] - m_d)``, m_d the mean of column d.

    Notes
    -----
    Memory: the (T, T) result (one per group with ``groups``); nothing else of that size.
    """
    options = AnalysisOptions.check("centered_gram", n_threads=n_threads, device=device,
                                    memory_limit=memory_limit, progress=progress)
    return _gram(X, options, groups, start, stop)


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


def sqdist_from_gram(g: np.ndarray) -> np.ndarray:
    """Squared distances ``G_ii + G_jj - 2 G_ij`` from a symmetric Gram matrix, computed in
    place: ``g`` is overwritten and returned (no second (T, T) array)."""
    d = np.diag(g).copy()
    for a in range(0, d.size, 256):  # one row block at a time: O(256 T) scratch
        rows = g[a:a + 256]
        rows *= -2.0
        # (d_i + d_j) - 2 G_ij: d_i + d_j == d_j + d_i, so the result is exactly symmetric
        rows += d[a:a + 256, None] + d[None, :]
    np.maximum(g, 0.0, out=g)
    np.fill_diagonal(g, 0.0)
    return g


@shared_docs
def pairwise_sqdist(X: Any, *, groups: Any = None, start: int | None = None,
                    stop: int | None = None, n_threads: int | None = None, device: str = "auto",
                    memory_limit: int | str | None = None, progress: bool | None = None
                    ) -> Any:
    r"""Squared Euclidean distances between all pairs of snapshots.

    .. math:: D_{ij} = \|X_i - X_j\|_2^2 = G_{ii} + G_{jj} - 2 G_{ij}

    with G the Gram matrix of the time-centred snapshots (:func:`centered_gram`).

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd`.
    <<groups>>
    <<start_stop>>
    <<n_threads>>
    <<device>>
        Device memory: the (T, T) float64 matrix plus ``memory_limit``.
    <<memory_limit>>
    <<progress>>

    Returns
    -------
    numpy.ndarray of float64, shape (T, T), or a dict of them with ``groups``
        Symmetric, zero diagonal, non-negative.

    Notes
    -----
    Accuracy: all arithmetic is float64 on data centred by the column means, so the error is
    relative to the snapshots' spread about their mean, not to their magnitude (large weight
    offsets cost nothing). Bound: ``|err(D_ij)| <= (256 + D/256 + 3) * 2**-53 *
    (|x_i - m| + |x_j - m|)**2``; benchmarks/bench_fractal.py measures it on weight-like data.

    Cost: T^2 D multiply-adds in a register-blocked, threaded kernel (half of a GEMM, by
    symmetry); memory: the (T, T) result (the distances are formed in the Gram matrix's
    place) and a packed float64 chunk of T x 256 values.

    Examples
    --------
    >>> import numpy as np, fractaldiff as fd
    >>> fd.pairwise_sqdist(np.array([[0.0, 0.0], [3.0, 4.0]]))
    array([[ 0., 25.],
           [25.,  0.]])
    """
    options = AnalysisOptions.check("pairwise_sqdist", n_threads=n_threads, device=device,
                                    memory_limit=memory_limit, progress=progress)
    g = _gram(X, options, groups, start, stop)
    if isinstance(g, dict):
        return {name: sqdist_from_gram(m) for name, m in g.items()}
    return sqdist_from_gram(g)


def msd_from_sqdist(sqdist: Any) -> np.ndarray:
    """Time-averaged MSD from a squared-distance matrix: the mean of each upper diagonal.

    ``msd[tau] = mean_t sqdist[t, t + tau]``, tau = 0..T-1; a cross-check of
    :func:`fractaldiff.msd` from the matrix that :func:`pairwise_sqdist` returns.

    Parameters
    ----------
    sqdist : array_like, shape (T, T)
        Squared distances between snapshots, e.g. from :func:`pairwise_sqdist`.

    Returns
    -------
    numpy.ndarray of float64, shape (T,)
        ``msd[tau]`` for tau = 0..T-1 (``msd[0]`` is the mean of the diagonal).
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


#: most radii correlation_dimension evaluates C(r) at (the cost grows with it)
MAX_RADII = 512


@shared_docs
def correlation_dimension(X: Any, *, theiler: int = 1, window: Any = "auto",
                          n_radii: int = 64, min_pairs: int = 100,
                          max_fraction: float | None = None,
                          n_threads: int | None = None, device: str = "auto",
                          memory_limit: int | str | None = None, progress: bool | None = None
                          ) -> DimensionEstimate:
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
        Log-spaced radii from the smallest non-zero to the largest pair distance (4..512).
    min_pairs : int, default 100
        Automatic window: ignore radii with fewer pairs below them (Poisson noise).
    max_fraction : float, optional
        Automatic window: ignore radii with C(r) above this (saturation at the set's size).
        Default 0.1, or 0.25 with a Theiler window (``theiler`` > 1). Edge effects of a filled
        set bend C(r) down well below 0.25 (a filled square of 2000 points: slope biased by
        -0.055 at 0.25, -0.04 at 0.1); but a Theiler window depletes the small radii, and
        the scaling region of a trajectory then lies at larger r (a Brownian path with
        theiler = 10: +0.40 at 0.1, -0.08 at 0.25; benchmarks/coverage.py).
    <<n_threads>>
    <<device>>
        Device memory: the (T, T) float64 matrix plus ``memory_limit``.
    <<memory_limit>>
    <<progress>>

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
    halves agree within 10 % (:func:`fractaldiff.fractal.windows.select_window`).

    Trajectories sampled at equal time steps resolve the set only above the step: a random
    walk of T steps in 3-D has C(r) ~ r^3 below the step and spans only sqrt(T) steps, so
    with T = 4096 its local slope falls from 3 to 1.5 with no plateau (the trace's dimension
    2 shows only over a hand-picked window, with a large stderr). The same path observed at
    T uniformly random times has C(r) ~ r^2 down to the smallest pairs (tests: 1.90-1.95 for
    T = 4096, theiler = 1).

    Uncertainty (:func:`fractaldiff.fractal.windows.correlation_uncertainty`): ``stderr``
    combines a delete-a-group jackknife over the points (20 contiguous blocks: the jackknife of
    a U-statistic, and a block jackknife over time for a trajectory; pairs that share a point
    are dependent, so the scatter of C(r) about the line understates the error several-fold)
    with the difference of the slopes of the window's two halves (curvature: a bias term).
    ``takens_stderr`` combines the jackknife of Takens' estimate with its difference from the
    slope (curvature below r_0 biases it). Estimates above 0.4 of the Eckmann-Ruelle limit
    2 log10 T are flagged (``details["resolution_limited"]``, a ``ResolutionWarning``) and
    their ``details["interval"]`` is one-sided: a lower bound. benchmarks/coverage.py measures
    the coverage of these intervals (docs/coverage.md).

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
    options = AnalysisOptions.check(func, n_threads=n_threads, device=device,
                                    memory_limit=memory_limit, progress=progress)
    n_radii = check_int(n_radii, "n_radii", minimum=4)
    if n_radii > MAX_RADII:
        raise ValueError(f"n_radii must be <= {MAX_RADII}, got {n_radii}: the automatic window "
                         "compares every run of radii (cost ~ n_radii^2), and C(r) has no "
                         "detail finer than a few dozen radii per decade")
    min_pairs = check_int(min_pairs, "min_pairs", minimum=1)
    if max_fraction is None:
        max_fraction = 0.25 if check_int(theiler, "theiler", minimum=1) > 1 else 0.1
    max_fraction = check_fraction(max_fraction, "max_fraction")
    src, t = _input_rows(X, 3, "the correlation dimension")
    w = _check_theiler(theiler, t)
    sq = sqdist_from_gram(_gram(src, options))
    # the pair distances (j - i >= w), gathered row by row into one array: index arrays of
    # the triangle (np.triu_indices) would take twice its memory
    n_pairs = (t - w) * (t - w + 1) // 2
    dist = np.empty(n_pairs)
    off = 0
    for i in range(t - w):
        row = sq[i, i + w:]
        dist[off : off + row.size] = row
        off += row.size
    np.sqrt(dist, out=dist)
    dist.sort()
    first = int(np.searchsorted(dist, 0.0, side="right"))  # sorted: zeros first
    positive = dist[first:]
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
                                    tolerance=0.1)
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
    near = dist[min(first, m) : m]  # 0 < d < r0
    m = near.size
    if m >= 2:
        takens = float(-1.0 / np.mean(np.log(near / r0)))
        takens_se = takens / math.sqrt(m)
    else:  # pragma: no cover - the window guarantees pairs below r0
        takens, takens_se = float("nan"), float("nan")
    unc = correlation_uncertainty(sq, w, r, x, y, start, stop, t, float(dim), takens)
    stderr, takens_se = unc["stderr"], unc["takens_stderr"]
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
                 "theiler_radius": r_theiler, **unc["details"]},
    )


def top_eigenpairs(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending, clipped at 0) and their eigenvectors (T, k) of a
    symmetric matrix, computed in ``g``'s memory (``g`` is destroyed): no (T, T) copy."""
    import scipy.linalg

    t = g.shape[0]
    # g is symmetric: its transpose is the same matrix in Fortran order, which LAPACK
    # overwrites in place
    vals, vecs = scipy.linalg.eigh(g.T, overwrite_a=True, check_finite=False,
                                   subset_by_index=(t - k, t - 1), driver="evr")
    return vals[::-1].clip(min=0.0), vecs[:, ::-1]


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

    def plot(self, ax=None, **kwargs: Any):
        """The trajectory in the plane of two components, coloured by time
        (:func:`fractaldiff.fractal.plots.plot_trajectory_pca`: ``components``, ``steps``)."""
        from .plots import plot_trajectory_pca

        return plot_trajectory_pca(self, ax, **kwargs)

    def box_counting_dimension(self, **kwargs: Any) -> DimensionEstimate:
        """Box-counting dimension of the projected trajectory (the ``scores``).

        Keyword arguments are those of :func:`fractaldiff.box_counting_dimension`.
        """
        from .boxcount import box_counting_dimension

        return box_counting_dimension(self.scores, **kwargs)


@shared_docs
def trajectory_pca(X: Any, n_components: int = 10, *, n_threads: int | None = None,
                   device: str = "auto", memory_limit: int | str | None = None,
                   progress: bool | None = None) -> TrajectoryPCA:
    """Top principal components of the trajectory, from the centred Gram matrix.

    Parameters
    ----------
    X : array_like, shape (T, D) or (T,)
        Snapshots, as for :func:`fractaldiff.msd` (T >= 2).
    n_components : int, default 10
        Number of components k (capped at T).
    <<n_threads>>
    <<device>>
        Device memory: the (T, T) float64 matrix plus ``memory_limit``.
    <<memory_limit>>
    <<progress>>

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
    g = _gram(src, AnalysisOptions.check("trajectory_pca", n_threads=n_threads, device=device,
                                         memory_limit=memory_limit, progress=progress))
    k = min(k, t)
    total = float(np.trace(g))
    vals, vecs = top_eigenpairs(g, k)
    # a deterministic sign: the largest |entry| of each component is positive
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    vecs = vecs * signs
    scores = vecs * np.sqrt(vals)
    ratio = vals / total if total > 0 else np.zeros_like(vals)
    return TrajectoryPCA(scores=scores, explained_variance=vals / (t - 1),
                         explained_variance_ratio=ratio, total_variance=total / (t - 1))

"""Exact check on a singular 2-parameter model: grid posterior vs SGLD vs SGD histograms."""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ToyCheckResult", "toy_singular_check"]


@dataclass
class ToyCheckResult:
    """What :func:`toy_singular_check` returns.

    Attributes
    ----------
    edges : numpy.ndarray, shape (bins + 1,)
        Histogram bin edges, the same on both axes (w1 and w2).
    posterior : numpy.ndarray, shape (bins, bins)
        Mass of the tempered posterior p(w) ∝ ρ(w) exp(−nβ L_n(w)) in each bin (from the fine
        grid), indexed [i(w1), j(w2)].
    sgld, sgd : numpy.ndarray, shape (bins, bins)
        Stationary histograms (normalized) of the SGLD and SGD runs.
    sgd_tempered : numpy.ndarray, shape (bins, bins)
        The tempered posterior at ``sgd_best_nbeta``, the inverse temperature that fits the
        SGD histogram best (min JS over a scan).
    distances : dict
        ``{"posterior-sgld": {"js", "tv", "hellinger"}, "posterior-sgd": ...,
        "sgld-sgd": ..., "sgd_tempered-sgd": ...}``: Jensen–Shannon divergence (nats), total
        variation and Hellinger distance between the binned densities.
    sgld_convergence : list of (int, float)
        (steps per chain after burn-in, JS(posterior, SGLD histogram of the first that many
        steps)): shrinks with run length as the sampler converges.
    sgd_best_nbeta, sgd_predicted_nbeta : float
        Fitted and predicted (2 B / (η σ²), the small-learning-rate Langevin approximation of
        minibatch noise with per-sample gradient variance σ² at the singular set) effective
        inverse temperature of SGD.
    settings : dict
    seconds : float
    """

    edges: np.ndarray
    posterior: np.ndarray
    sgld: np.ndarray
    sgd: np.ndarray
    sgd_tempered: np.ndarray
    distances: dict[str, dict[str, float]]
    sgld_convergence: list[tuple[int, float]]
    sgd_best_nbeta: float
    sgd_predicted_nbeta: float
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self) -> str:
        """Plain-text table of the distances."""
        lines = [f"toy singular model f(x) = w1 w2 x, n = {self.settings['n']}, "
                 f"nβ = {self.settings['nbeta']:g}, prior N(0, {self.settings['prior_std']:g}²)"
                 f", {self.settings['bins']}x{self.settings['bins']} bins",
                 f"{'pair':>20} {'JS (nats)':>10} {'TV':>7} {'Hellinger':>9}"]
        for k, v in self.distances.items():
            lines.append(f"{k:>20} {v['js']:>10.4f} {v['tv']:>7.4f} {v['hellinger']:>9.4f}")
        conv = ", ".join(f"{s}: {d:.4f}" for s, d in self.sgld_convergence)
        lines.append(f"SGLD vs grid JS by steps per chain: {conv}")
        lines.append(f"SGD effective nβ: fitted {self.sgd_best_nbeta:.4g}, predicted "
                     f"2B/(ησ²) = {self.sgd_predicted_nbeta:.4g}")
        lines.append(f"{self.seconds:.1f} s")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no histograms)."""
        return {"distances": self.distances,
                "sgld_convergence": [list(v) for v in self.sgld_convergence],
                "sgd_best_nbeta": self.sgd_best_nbeta,
                "sgd_predicted_nbeta": self.sgd_predicted_nbeta,
                "settings": dict(self.settings), "seconds": self.seconds}

    def plot(self, path: Any = None) -> Any:
        """2-D density panels: grid posterior, SGLD, SGD, tempered posterior fitted to SGD."""
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        e = self.edges
        panels = [("posterior (grid)", self.posterior), ("SGLD", self.sgld), ("SGD", self.sgd),
                  (f"tempered, nβ={self.sgd_best_nbeta:.3g}", self.sgd_tempered)]
        vmax = max(float(p.max()) for _, p in panels)
        for ax, (title, p) in zip(axes, panels):
            ax.pcolormesh(e, e, p.T, vmin=0, vmax=vmax, shading="flat")
            ax.set_title(title)
            ax.set_xlabel("w1")
            ax.set_aspect("equal")
        axes[0].set_ylabel("w2")
        d = self.distances
        fig.suptitle(f"JS(post, SGLD) = {d['posterior-sgld']['js']:.3g}, JS(post, SGD) = "
                     f"{d['posterior-sgd']['js']:.3g}, JS(tempered, SGD) = "
                     f"{d['sgd_tempered-sgd']['js']:.3g}")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _dists(p: np.ndarray, q: np.ndarray) -> dict[str, float]:
    from .posterior import js_divergence

    p = p.ravel() / p.sum()
    q = q.ravel() / q.sum()
    return {"js": float(js_divergence(p, q)), "tv": float(0.5 * np.abs(p - q).sum()),
            "hellinger": float(math.sqrt(max(0.0, 1.0 - np.sqrt(p * q).sum())))}


def _pos_int(v: Any, name: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _pos(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
            math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def toy_singular_check(
    *,
    n: int = 200,
    true_slope: float = 0.0,
    nbeta: float | None = None,
    prior_std: float = 1.0,
    extent: float = 3.0,
    grid: int | None = None,
    bins: int = 40,
    n_chains: int = 400,
    n_steps: int = 20000,
    n_burnin: int = 2000,
    sgld_step_size: float = 3e-4,
    sgd_lr: float = 0.01,
    sgd_batch_size: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> ToyCheckResult:
    """Tempered posterior of f(x) = w1·w2·x on a grid vs stationary SGLD and SGD histograms.

    Data: x_i ~ N(0, 1), y_i = ``true_slope``·x_i + N(0, 1), i = 1..n (seeded). Loss
    L_n(w) = (1/2n) Σ (y_i − w1 w2 x_i)² (unit-noise Gaussian NLL up to a constant); prior
    ρ = N(0, σ² I), σ = ``prior_std``. At ``true_slope = 0`` the true parameters are the cross
    {w1 w2 = 0}, a normal crossing with λ = 1/2: the posterior is a non-Gaussian cross.

    * **Grid**: p(w) ∝ ρ(w) exp(−nβ L_n(w)) on a ``grid`` × ``grid`` lattice over
      [−extent, extent]² (default 20 cells per bin and axis), integrated into ``bins`` ×
      ``bins`` histogram bins.
    * **SGLD** (full batch, exact gradients from sufficient statistics):
      Δw = −(ε/2)(nβ ∇L_n + w/σ²) + N(0, ε I), ``n_chains`` chains started from the prior,
      ``n_steps`` steps, the first ``n_burnin`` discarded.
    * **SGD** with minibatch noise: w ← w − η(∇L_B(w) + w/(nσ²)), batches of
      ``sgd_batch_size`` drawn with replacement, weight decay = the prior at β = 1; same
      chains and lengths. Its small-η effective inverse temperature is predicted as
      2B/(η σ_g²), σ_g² the per-sample variance of y·x at the singular set; the nβ that fits
      the SGD histogram best is found by scanning the grid posterior.

    Distances between every pair of binned densities: Jensen–Shannon (nats), total variation,
    Hellinger. The SGLD-vs-grid JS at growing run lengths shows convergence.

    Parameters
    ----------
    n : int, default 200
    true_slope : float, default 0
    nbeta : float, optional
        Inverse temperature of the posterior and of SGLD (default n: the Bayesian posterior).
    prior_std, extent : float
    grid, bins : int
    n_chains, n_steps, n_burnin : int
    sgld_step_size, sgd_lr : float
    sgd_batch_size : int
    seed : int
    progress : bool

    Returns
    -------
    ToyCheckResult
    """
    t0 = time.perf_counter()
    n = _pos_int(n, "n", 2)
    nb = float(n) if nbeta is None else _pos(nbeta, "nbeta")
    prior_std = _pos(prior_std, "prior_std")
    extent = _pos(extent, "extent")
    bins = _pos_int(bins, "bins", 2)
    grid = 20 * bins if grid is None else _pos_int(grid, "grid", 10)
    n_chains = _pos_int(n_chains, "n_chains")
    n_steps = _pos_int(n_steps, "n_steps", 2)
    n_burnin = _pos_int(n_burnin, "n_burnin", 0)
    if n_burnin >= n_steps:
        raise ValueError(f"n_burnin ({n_burnin}) must be < n_steps ({n_steps})")
    eps = _pos(sgld_step_size, "sgld_step_size")
    lr = _pos(sgd_lr, "sgd_lr")
    B = _pos_int(sgd_batch_size, "sgd_batch_size")
    if B > n:
        raise ValueError(f"sgd_batch_size={B} is larger than n={n}")
    if isinstance(true_slope, bool) or not isinstance(true_slope, numbers.Real) or \
            not math.isfinite(float(true_slope)):
        raise ValueError(f"true_slope must be a finite number, got {true_slope!r}")

    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    y = float(true_slope) * x + rng.standard_normal(n)
    sxx, sxy, syy = float(np.mean(x * x)), float(np.mean(x * y)), float(np.mean(y * y))
    xx, xy = x * x, x * y

    def loss(u: np.ndarray) -> np.ndarray:
        return 0.5 * (syy - 2 * u * sxy + u * u * sxx)

    # grid posterior (cell centres), integrated into histogram bins
    g = (np.arange(grid) + 0.5) / grid * 2 * extent - extent
    W1, W2 = np.meshgrid(g, g, indexing="ij")
    U = W1 * W2
    logprior = -0.5 * (W1 ** 2 + W2 ** 2) / prior_std ** 2
    Lg = loss(U)
    edges = np.linspace(-extent, extent, bins + 1)
    bi = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, bins - 1)

    def binned(nbeta_: float) -> np.ndarray:
        lp = logprior - nbeta_ * Lg
        p = np.exp(lp - lp.max())
        h = np.zeros((bins, bins))
        np.add.at(h, (bi[:, None].repeat(grid, 1), bi[None, :].repeat(grid, 0)), p)
        return h / h.sum()

    post = binned(nb)

    # chains from the prior
    w_sgld = rng.standard_normal((n_chains, 2)) * prior_std
    w_sgd = w_sgld.copy()
    kept = n_steps - n_burnin
    marks = sorted({max(1, kept // 64), max(1, kept // 16), max(1, kept // 4), kept})
    h_sgld = np.zeros((bins, bins))
    h_sgd = np.zeros((bins, bins))
    conv: list[tuple[int, float]] = []
    wd = 1.0 / (n * prior_std ** 2)
    sq = math.sqrt(eps)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_steps, desc="toy check", leave=False)
    chunk = 250
    step = 0
    with np.errstate(over="ignore", invalid="ignore"):  # divergence raises below
        while step < n_steps:
            m = min(chunk, n_steps - step)
            noise = rng.standard_normal((m, n_chains, 2)) * sq
            idx = rng.integers(0, n, (m, n_chains, B))
            bxx = xx[idx].mean(2)
            bxy = xy[idx].mean(2)
            keep_sgld = np.empty((m, n_chains, 2))
            keep_sgd = np.empty((m, n_chains, 2))
            for j in range(m):
                # SGLD, exact full-batch gradient of nβ L_n + |w|²/(2σ²)
                a, b = w_sgld[:, 0], w_sgld[:, 1]
                gu = nb * (a * b * sxx - sxy)
                g0 = gu * b + a / prior_std ** 2
                g1 = gu * a + b / prior_std ** 2
                w_sgld[:, 0] = a - 0.5 * eps * g0 + noise[j, :, 0]
                w_sgld[:, 1] = b - 0.5 * eps * g1 + noise[j, :, 1]
                # SGD on a minibatch, weight decay = prior at β = 1
                a, b = w_sgd[:, 0], w_sgd[:, 1]
                gu = a * b * bxx[j] - bxy[j]
                w_sgd[:, 0] = a - lr * (gu * b + wd * a)
                w_sgd[:, 1] = b - lr * (gu * a + wd * b)
                keep_sgld[j] = w_sgld
                keep_sgd[j] = w_sgd
            if not (np.isfinite(w_sgld).all() and np.isfinite(w_sgd).all()):
                raise FloatingPointError("toy_singular_check: a chain diverged; use a smaller "
                                         "sgld_step_size / sgd_lr")
            lo = max(0, n_burnin - step)
            if lo < m:
                h_sgld += np.histogram2d(keep_sgld[lo:, :, 0].ravel(), keep_sgld[lo:, :, 1].ravel(),
                                         bins=[edges, edges])[0]
                h_sgd += np.histogram2d(keep_sgd[lo:, :, 0].ravel(), keep_sgd[lo:, :, 1].ravel(),
                                        bins=[edges, edges])[0]
                done_kept = step + m - n_burnin
                while marks and done_kept >= marks[0]:
                    marks.pop(0)
                    conv.append((int(done_kept), _dists(post, h_sgld)["js"]))
            step += m
            if bar is not None:
                bar.update(m)
    if bar is not None:
        bar.close()
    h_sgld /= h_sgld.sum()
    h_sgd /= h_sgd.sum()

    # the tempered posterior that fits SGD best
    scan = np.geomspace(nb / 30, nb * 30, 61)
    js_scan = np.array([_dists(binned(v), h_sgd)["js"] for v in scan])
    j = int(np.argmin(js_scan))
    lo_j, hi_j = max(0, j - 1), min(len(scan) - 1, j + 1)
    fine = np.geomspace(scan[lo_j], scan[hi_j], 21)
    js_fine = np.array([_dists(binned(v), h_sgd)["js"] for v in fine])
    best_nb = float(fine[int(np.argmin(js_fine))])
    sgd_temp = binned(best_nb)
    var_g = float(np.var(xy))  # per-sample gradient noise of y·x at w1 w2 = 0
    predicted = 2.0 * B / (lr * var_g)
    distances = {
        "posterior-sgld": _dists(post, h_sgld),
        "posterior-sgd": _dists(post, h_sgd),
        "sgld-sgd": _dists(h_sgld, h_sgd),
        "sgd_tempered-sgd": _dists(sgd_temp, h_sgd),
    }
    settings = dict(n=n, true_slope=float(true_slope), nbeta=nb, prior_std=prior_std,
                    extent=extent, grid=grid, bins=bins, n_chains=n_chains, n_steps=n_steps,
                    n_burnin=n_burnin, sgld_step_size=eps, sgd_lr=lr, sgd_batch_size=B,
                    seed=int(seed), lambda_true=0.5 if float(true_slope) == 0.0 else 1.0)
    return ToyCheckResult(edges=edges, posterior=post, sgld=h_sgld, sgd=h_sgd,
                          sgd_tempered=sgd_temp, distances=distances, sgld_convergence=conv,
                          sgd_best_nbeta=best_nb, sgd_predicted_nbeta=predicted,
                          settings=settings, seconds=time.perf_counter() - t0)

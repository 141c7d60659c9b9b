"""Is SGD almost Bayesian? Cluster masses of SGD, of the posterior, and of tempered SGD."""

from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["PosteriorComparison", "compare_posterior", "js_divergence", "kl_divergence",
           "tempered_masses", "wasserstein_masses"]

#: masses are floored at this value (then renormalized) before KL, so that KL stays finite
MASS_FLOOR = 1e-10


# --- distances between probability vectors ---------------------------------------------------


def _prob(p: Any, name: str) -> np.ndarray:
    a = np.asarray(p, dtype=float)
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ValueError(f"{name} must be a non-empty probability vector, got shape {a.shape}")
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name} must hold finite non-negative masses")
    s = a.sum(-1, keepdims=True)
    if (s <= 0).any():
        raise ValueError(f"{name} must have positive total mass")
    return a / s


def kl_divergence(p: Any, q: Any, *, floor: float = MASS_FLOOR) -> np.ndarray | float:
    """KL(p ‖ q) = Σ p log(p / q) in nats, over the last axis.

    Both are normalized; ``q`` is floored at ``floor`` and renormalized (so that a cluster
    with no tempered mass gives a large but finite value); terms with p = 0 are 0.
    """
    p = _prob(p, "p")
    q = _prob(q, "q")
    q = np.maximum(q, floor)
    q = q / q.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
    out = np.maximum(t.sum(-1), 0.0)
    return float(out) if out.ndim == 0 else out


def js_divergence(p: Any, q: Any) -> np.ndarray | float:
    """Jensen–Shannon divergence in nats: ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q)/2; in
    [0, log 2], symmetric (the square root is a metric)."""
    p = _prob(p, "p")
    q = _prob(q, "q")
    m = 0.5 * (p + q)

    def part(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * (np.log(np.where(a > 0, a, 1.0)) -
                                        np.log(np.where(m > 0, m, 1.0))), 0.0).sum(-1)

    out = np.clip(0.5 * part(p) + 0.5 * part(q), 0.0, math.log(2.0))
    return float(out) if out.ndim == 0 else out


def wasserstein_masses(p: Any, q: Any, ground: Any) -> float:
    """Earth mover's distance between two mass vectors on K points with ground distance
    matrix ``ground`` (K, K): the optimal transport linear program (scipy HiGHS)."""
    from scipy.optimize import linprog

    p = _prob(p, "p")
    q = _prob(q, "q")
    C = np.asarray(ground, dtype=float)
    K = len(p)
    if C.shape != (K, K) or len(q) != K:
        raise ValueError(f"ground must be ({K}, {K}) and q of length {K}")
    if K == 1:
        return 0.0
    A = np.zeros((2 * K, K * K))
    for i in range(K):
        A[i, i * K:(i + 1) * K] = 1.0
        A[K + i, i::K] = 1.0
    res = linprog(C.ravel(), A_eq=A[:-1], b_eq=np.concatenate([p, q])[:-1], bounds=(0, None),
                  method="highs")
    if not res.success:  # pragma: no cover - the LP is always feasible
        raise RuntimeError(f"optimal transport failed: {res.message}")
    return float(max(res.fun, 0.0))


def tempered_masses(p_sgd: Any, exponents: Any) -> np.ndarray:
    """P_temp(C_k) ∝ P_SGD(C_k)^{e_k}, normalized (computed in log space).

    ``exponents`` (K,) or (n_xi, K): e_k = m · D_ξ,k. Clusters with zero SGD mass keep 0.
    """
    p = _prob(p_sgd, "p_sgd")
    e = np.asarray(exponents, dtype=float)
    with np.errstate(divide="ignore"):
        logp = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf)
    lw = e * logp
    lw = np.where(np.isnan(lw), -np.inf, lw)
    mx = lw.max(-1, keepdims=True)
    w = np.exp(lw - mx)
    return w / w.sum(-1, keepdims=True)


# --- result ----------------------------------------------------------------------------------


@dataclass
class PosteriorComparison:
    """What :func:`compare_posterior` returns (see its docstring for every definition).

    Attributes
    ----------
    clusters : ClusterResult
    xis : numpy.ndarray, shape (n_xi,)
        Coarse-graining scales ξ swept.
    p_sgd, p_bayes : numpy.ndarray, shape (K,)
        Raw SGD frequencies and SGLD posterior masses per cluster.
    p_tempered : numpy.ndarray, shape (n_xi, K)
        Tempered SGD masses at every ξ.
    kl, js, wasserstein : numpy.ndarray, shape (n_xi,)
        KL(P_Bayes ‖ P_temp(ξ)), JS(P_Bayes, P_temp(ξ)) (nats) and W1 (ground metric:
        ``clusters.ground_distance``) at every ξ.
    kl_ci, js_ci, wasserstein_ci : numpy.ndarray, shape (n_xi, 2)
        Bootstrap percentile intervals (``confidence``) over ensemble members.
    best_xi : float
        The ξ minimizing KL; ``best`` its index.
    raw : dict
        KL/JS/W between P_Bayes and raw P_SGD, each ``{"value", "ci"}``.
    llc, llc_stderr, displacement_exponent, spectral_dimension, walk_dimension :
        numpy.ndarray, shape (K,)
        Per-cluster λ̂, α (slope of log R vs log t, late window), d_s and d_walk = 2 λ̂ / d_s.
    diffusion_coefficient : numpy.ndarray, shape (n_xi, K)
        D_ξ,k = ξ^{2 - d_walk,k}.
    m : float
        The exponent's sample count.
    settings, diagnostics : dict
    """

    clusters: Any
    xis: np.ndarray
    p_sgd: np.ndarray
    p_bayes: np.ndarray
    p_tempered: np.ndarray
    kl: np.ndarray
    js: np.ndarray
    wasserstein: np.ndarray
    kl_ci: np.ndarray
    js_ci: np.ndarray
    wasserstein_ci: np.ndarray
    best: int
    raw: dict[str, Any]
    llc: np.ndarray
    llc_stderr: np.ndarray
    displacement_exponent: np.ndarray
    spectral_dimension: np.ndarray
    walk_dimension: np.ndarray
    diffusion_coefficient: np.ndarray
    m: float
    p_sgd_ci: np.ndarray | None = None
    p_bayes_ci: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict, repr=False)

    def with_m(self, m: float) -> PosteriorComparison:
        """The same comparison re-tempered with another exponent count ``m`` (no new
        sampling): e.g. ``m=1`` for P_temp ∝ P_SGD^{D_ξ,k}."""
        import dataclasses

        if isinstance(m, bool) or not isinstance(m, numbers.Real) or not (
                math.isfinite(float(m)) and float(m) > 0):
            raise ValueError(f"m must be a finite number > 0, got {m!r}")
        out = _temper(self.state, float(m))
        settings = dict(self.settings, m=float(m))
        return dataclasses.replace(self, m=float(m), settings=settings, **out)

    @property
    def best_xi(self) -> float:
        """ξ with the smallest KL(P_Bayes ‖ P_temp)."""
        return float(self.xis[self.best])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able copy of every number."""
        b = self.best

        def lst(a: Any) -> Any:
            return None if a is None else np.asarray(a, dtype=float).tolist()

        return {
            "best_xi": self.best_xi, "m": self.m,
            "at_best_xi": {
                "kl": float(self.kl[b]), "kl_ci": lst(self.kl_ci[b]),
                "wasserstein": float(self.wasserstein[b]),
                "wasserstein_ci": lst(self.wasserstein_ci[b]),
                "js": float(self.js[b]), "js_ci": lst(self.js_ci[b]),
                "p_tempered": lst(self.p_tempered[b]),
            },
            "raw_sgd_vs_bayes": {k: {"value": float(v["value"]), "ci": lst(v["ci"])}
                                 for k, v in self.raw.items()},
            "p_sgd": lst(self.p_sgd), "p_bayes": lst(self.p_bayes),
            "p_sgd_ci": lst(self.p_sgd_ci), "p_bayes_ci": lst(self.p_bayes_ci),
            "xis": lst(self.xis), "kl": lst(self.kl), "js": lst(self.js),
            "wasserstein": lst(self.wasserstein), "kl_ci": lst(self.kl_ci),
            "js_ci": lst(self.js_ci), "wasserstein_ci": lst(self.wasserstein_ci),
            "llc": lst(self.llc), "llc_stderr": lst(self.llc_stderr),
            "displacement_exponent": lst(self.displacement_exponent),
            "spectral_dimension": lst(self.spectral_dimension),
            "walk_dimension": lst(self.walk_dimension),
            "clusters": self.clusters.to_dict(), "settings": dict(self.settings),
            "diagnostics": {k: v for k, v in self.diagnostics.items()
                            if isinstance(v, (int, float, str, list, dict, type(None)))},
        }

    def table(self, as_dict: bool = False) -> str | dict[str, Any]:
        """Plain-text summary (or the :meth:`to_dict` dict with ``as_dict=True``)."""
        if as_dict:
            return self.to_dict()
        b = self.best
        conf = self.settings.get("confidence", 0.95)

        def ci(a: np.ndarray) -> str:
            return f"[{a[0]:.3g}, {a[1]:.3g}]"

        lines = [f"clusters (probe-set map, metric={self.clusters.metric}):",
                 f"{'cluster':>7} {'P_SGD':>7} {'P_Bayes':>8} {'P_temp':>7} {'llc':>7} "
                 f"{'± se':>6} {'alpha':>6} {'d_s':>6} {'d_walk':>6} {'size':>5}"]
        for k in range(len(self.p_sgd)):
            lines.append(
                f"{'C' + str(k + 1):>7} {self.p_sgd[k]:>7.3f} {self.p_bayes[k]:>8.3f} "
                f"{self.p_tempered[b, k]:>7.3f} {self.llc[k]:>7.3f} {self.llc_stderr[k]:>6.3f} "
                f"{self.displacement_exponent[k]:>6.3f} {self.spectral_dimension[k]:>6.3f} "
                f"{self.walk_dimension[k]:>6.3f} {self.clusters.sizes[k]:>5d}")
        lines.append(f"best ξ = {self.best_xi:.3g} (min KL over {len(self.xis)} values in "
                     f"[{self.xis[0]:.3g}, {self.xis[-1]:.3g}]), m = {self.m:g}; "
                     f"{conf:.0%} bootstrap intervals over members")
        if float(np.ptp(self.kl)) <= 1e-6 * max(1.0, float(np.min(self.kl))):
            lines.append("note: KL does not change across the ξ sweep (the tempered masses are "
                         "the same at every ξ), so ξ is not identified")
        elif self.best in (0, len(self.xis) - 1) and len(self.xis) > 1:
            lines.append("note: the best ξ is at the edge of the sweep (the KL minimum may lie "
                         "beyond it)")
        def cell(v: float, c: np.ndarray) -> str:
            return f"{v:.3g} {ci(c)}"

        r = self.raw
        lines.append(f"{'':>22} {'KL':>22} {'Wasserstein':>22} {'Jensen-Shannon':>22}")
        lines.append(f"{'Bayes vs tempered SGD':>22} {cell(self.kl[b], self.kl_ci[b]):>22} "
                     f"{cell(self.wasserstein[b], self.wasserstein_ci[b]):>22} "
                     f"{cell(self.js[b], self.js_ci[b]):>22}")
        lines.append(f"{'Bayes vs raw SGD':>22} {cell(r['kl']['value'], r['kl']['ci']):>22} "
                     f"{cell(r['wasserstein']['value'], r['wasserstein']['ci']):>22} "
                     f"{cell(r['js']['value'], r['js']['ci']):>22}")
        lines.append(f"{'paper (Table 2)':>22} {'0.009':>22} {'0.002':>22} {'0.003':>22}")
        d = self.diagnostics
        lines.append(f"SGLD: {d.get('n_chains')} chains, nβ = {self.settings.get('nbeta'):.4g}"
                     f", acceptance {d.get('acceptance', float('nan')):.2f}, "
                     f"{d.get('chains_moved', float('nan')):.1%} of chains changed cluster, "
                     f"{d.get('unassigned_fraction', float('nan')):.1%} of samples farther "
                     f"than the threshold from every cluster; P_Bayes first vs second half of "
                     f"the samples differ by up to {d.get('p_bayes_drift', float('nan')):.3f}")
        return "\n".join(lines)

    def plot(self, path: Any = None, *, axes: Any = None) -> Any:
        """Three panels: KL (and JS, W) vs ξ (paper Fig. 3), masses per cluster side by side
        (Fig. 4b), and the λ̂ histogram of the SGD solutions (Fig. 4a). Returns the figure."""
        import matplotlib

        if axes is None:
            if path is not None:
                matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        else:
            fig = axes[0].figure
        ax = axes[0]
        ax.plot(self.xis, self.kl, "o-", ms=3, label="KL(Bayes ‖ tempered)")
        ax.fill_between(self.xis, self.kl_ci[:, 0], self.kl_ci[:, 1], alpha=0.25)
        ax.plot(self.xis, self.js, "-", label="Jensen–Shannon")
        ax.plot(self.xis, self.wasserstein, "-", label="Wasserstein")
        ax.axhline(self.raw["kl"]["value"], color="gray", ls="--", label="KL(Bayes ‖ raw SGD)")
        ax.axvline(self.best_xi, color="k", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("ξ")
        ax.set_ylabel("divergence (nats)")
        ax.set_title(f"best ξ = {self.best_xi:.3g}")
        ax.legend(fontsize=7)
        ax = axes[1]
        K = len(self.p_sgd)
        xk = np.arange(K)
        wdt = 0.27
        ax.bar(xk - wdt, self.p_sgd, wdt, label="SGD")
        ax.bar(xk, self.p_bayes, wdt, label="Bayes (SGLD)")
        ax.bar(xk + wdt, self.p_tempered[self.best], wdt, label=f"tempered, ξ={self.best_xi:.2g}")
        ax.set_xticks(xk, [f"C{k + 1}" for k in range(K)])
        ax.set_ylabel("mass")
        ax.legend(fontsize=7)
        ax = axes[2]
        v = self.clusters.member_llc
        v = v[np.isfinite(v)]
        if len(v):
            ax.hist(v, bins=max(5, min(30, len(v) // 3)))
        ax.set_xlabel("λ̂ of SGD solutions")
        ax.set_ylabel("members")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


# --- the comparison --------------------------------------------------------------------------


def default_probe(x_train: np.ndarray, *, points: int = 1024, margin: float = 0.25,
                  seed: int = 0) -> np.ndarray:
    """Probe inputs: for 2 features a grid over the data's bounding box widened by ``margin``
    of its range on each side (functions differ mostly off the data); otherwise up to
    ``points`` training inputs chosen with ``seed``."""
    x = np.asarray(x_train, dtype=np.float32)
    if x.ndim == 2 and x.shape[1] == 2:
        side = int(round(math.sqrt(points)))
        lo, hi = x.min(0), x.max(0)
        span = hi - lo
        g0 = np.linspace(lo[0] - margin * span[0], hi[0] + margin * span[0], side)
        g1 = np.linspace(lo[1] - margin * span[1], hi[1] + margin * span[1], side)
        return np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2).astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[:points]
    return x[np.sort(idx)]


def _late_slopes(steps: np.ndarray, R: np.ndarray, late_fraction: float) -> np.ndarray:
    """Per-member OLS slope of log R vs log t over t >= late_fraction * t_max (t > 0, R > 0)."""
    t = np.asarray(steps, dtype=float)
    sel = (t >= late_fraction * t.max()) & (t > 0)
    if sel.sum() < 3:
        sel = t > 0
    lt = np.log(t[sel])
    out = np.full(R.shape[0], np.nan)
    for i in range(R.shape[0]):
        r = R[i, sel]
        ok = r > 0
        if ok.sum() >= 3:
            out[i] = np.polyfit(lt[ok], np.log(r[ok]), 1)[0]
    return out


def _check_xis(xis: Any) -> np.ndarray:
    a = np.atleast_1d(np.asarray(xis, dtype=float))
    if a.ndim != 1 or len(a) == 0:
        raise ValueError("xis must be a non-empty 1-D sequence of scales ξ > 0")
    if not np.isfinite(a).all() or (a <= 0).any():
        bad = a[~(np.isfinite(a) & (a > 0))][0]
        raise ValueError(f"xis: every ξ must be finite and > 0, got {bad}")
    return np.sort(a)


def compare_posterior(
    ensemble: Any,
    data: Any = None,
    *,
    probe_inputs: Any = None,
    clusters: Any = None,
    xis: Any = None,
    m: float | None = None,
    d_s: Any = None,
    loss: str = "cross_entropy",
    threshold: float = 0.05,
    n_clusters: int | None = None,
    min_cluster_fraction: float = 0.01,
    llc: Any = "auto",
    llc_members: Any = 8,
    llc_kwargs: dict | None = None,
    late_fraction: float = 0.1,
    sgld_steps: int = 1000,
    sgld_burnin: int = 500,
    sgld_thin: int = 100,
    sgld_step_size: float = 1e-4,
    sgld_batch_size: int | None = 64,
    prior_std: float = 10.0,
    n_chains: int | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> PosteriorComparison:
    """Cluster masses of raw SGD, of the Bayesian posterior and of tempered SGD (paper §4.2).

    1. **Clusters.** :func:`cluster_solutions` on the members' predictions on a probe set
       (default :func:`default_probe`); cluster 0 (C1) is the largest. The probe-set map
       (nearest representative) assigns every function — SGD members and posterior samples
       alike — to a cluster.
    2. **P_SGD(C_k)**: the fraction of ensemble members the map puts in C_k.
    3. **P_Bayes(C_k)**: SGLD chains started from the members (one per member, or
       ``n_chains`` drawn evenly) sample p(w | D) ∝ ρ(w) exp(−n L_n(w)), ρ = N(0, σ² I) with
       σ = ``prior_std``; Δw = −(ε/2)(n ∇L_B(w) + w/σ²) + N(0, ε I) (the
       :mod:`fractaldiff.bayes` SGLD engine without localization, γ = 0). After
       ``sgld_burnin`` steps, every ``sgld_thin`` steps each chain's function is mapped to a
       cluster; P_Bayes is the fraction of those samples per cluster. **nβ = n, not
       n / log n**: the posterior of the claim is the ordinary Bayesian posterior at β = 1
       (the likelihood of n i.i.d. samples is exp(−n L_n)); n / log n is the WBIC
       temperature that makes the *LLC estimator* λ̂ = nβ(E[L_n] − L_n(w*)) consistent, a
       device for measuring λ, not the posterior whose masses are compared. Caveat: chains
       that never leave their basin reproduce the starting (SGD) distribution; the fraction
       of chains that changed cluster is reported (``diagnostics["chains_moved"]``).
    4. **Tempered SGD.** Per cluster, λ̂_k (mean over members where it was estimated, see
       :func:`cluster_solutions`), the displacement exponent α_k (mean over the cluster's
       members of the OLS slope of log R vs log t over the late window t ≥ ``late_fraction``
       · t_max; R(t) = ‖w(t) − w(0)‖ recorded by :func:`~fractaldiff.train.train_ensemble`),
       d_s,k = 2 λ̂_k α_k (Alexander–Orbach, paper Eq. 17) unless ``d_s`` is given,
       d_walk,k = 2 λ̂_k / d_s,k, D_ξ,k = ξ^{2 − d_walk,k} (Cor. 3.1), and
       **P_temp(C_k; ξ) ∝ P_SGD(C_k)^{m · D_ξ,k}**, normalized (our reading of the paper's
       p(w | X_m) = ρ(w) p_s(w)^{m D_ξ} / Z applied to cluster masses; ``m`` defaults to the
       training-set size). Note: with d_s from the same λ̂, d_walk,k = 1/α_k and λ̂ cancels;
       λ̂ matters only through a user-supplied ``d_s``.
    5. **Distances at every ξ**: KL(P_Bayes ‖ P_temp) (nats; P_temp floored at
       :data:`MASS_FLOOR`), Jensen–Shannon divergence (nats, ≤ log 2) and the 1-Wasserstein
       distance with ground metric = the function distance between cluster representatives
       (fraction of probe points where they disagree). The best ξ minimizes KL. Intervals:
       ``n_bootstrap`` resamples of the members (with their chains and their λ̂ and α),
       percentile intervals at ``confidence``; clusters and representatives stay fixed.

    Parameters
    ----------
    ensemble : EnsembleResult
        From :func:`fractaldiff.train.train_ensemble` (N >= 2 members).
    data : Dataset or tuple, optional
        Training data (default: the ensemble's). n = its size.
    probe_inputs : array_like, optional
    clusters : ClusterResult, optional
        Precomputed clusters of these members (then probe_inputs must be the ones used).
    xis : sequence of float, optional
        ξ > 0 to sweep; default 81 values log-spaced in [0.01, 100].
    m : float, optional
        Sample count in the exponent (default n).
    d_s : float or sequence of K floats, optional
        Spectral dimension(s) to use instead of 2 λ̂_k α_k.
    loss : {"cross_entropy", "mse"}
    threshold, n_clusters, min_cluster_fraction, llc, llc_members, llc_kwargs
        Passed to :func:`cluster_solutions`.
    late_fraction : float, default 0.1
    sgld_steps, sgld_burnin, sgld_thin : int
        Steps per chain, burn-in, and thinning of the posterior chains.
    sgld_step_size : float, default 1e-4
        ε; keep ε·n·(largest curvature) ≪ 4.
    sgld_batch_size : int or None, default 64
        Minibatch per chain and step (None: full batch).
    prior_std : float, default 10
    n_chains : int, optional
        Number of posterior chains (default: one per member).
    n_bootstrap : int, default 200
    confidence : float, default 0.95
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    PosteriorComparison
    """
    from ..train.ensemble import EnsembleResult
    from ._engine import run_sgld
    from .clusters import (
        cluster_solutions,
        flat_members,
        member_outputs,
        members_potential,
        probe_signatures,
        xy_tensors,
    )

    t_start = time.perf_counter()
    if not isinstance(ensemble, EnsembleResult):
        raise TypeError(f"ensemble must be a fractaldiff.train.train_ensemble result, got "
                        f"{type(ensemble).__name__}")
    N = ensemble.n_models
    if N < 2:
        raise ValueError(f"need an ensemble of at least 2 members, got {N}")
    xis_arr = _check_xis(np.geomspace(0.01, 100.0, 81) if xis is None else xis)
    for name, v in (("sgld_steps", sgld_steps), ("sgld_thin", sgld_thin),
                    ("n_bootstrap", n_bootstrap)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if isinstance(sgld_burnin, bool) or not isinstance(sgld_burnin, numbers.Integral) or \
            not 0 <= sgld_burnin < sgld_steps:
        raise ValueError(f"sgld_burnin must be an int in [0, sgld_steps), got {sgld_burnin!r}")
    for name, v in (("sgld_step_size", sgld_step_size), ("prior_std", prior_std)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (
                math.isfinite(float(v)) and float(v) > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    for name, v in (("confidence", confidence), ("late_fraction", late_fraction)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a number, got {v!r}")
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if not 0 <= float(late_fraction) < 1:
        raise ValueError(f"late_fraction must lie in [0, 1), got {late_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if n_chains is not None and (isinstance(n_chains, bool)
                                 or not isinstance(n_chains, numbers.Integral)):
        raise TypeError(f"n_chains must be an int or None, got {n_chains!r}")
    data = ensemble.data if data is None else data
    if data is None:
        raise ValueError("data is required (the ensemble carries none)")
    x, y = xy_tensors(data, loss)
    n = int(x.shape[0])
    if sgld_batch_size is not None and (
            isinstance(sgld_batch_size, bool) or not isinstance(sgld_batch_size, numbers.Integral)
            or not 1 <= sgld_batch_size <= n):
        raise ValueError(f"sgld_batch_size must be None or an int in [1, {n}] (the data set "
                         f"size), got {sgld_batch_size!r}")
    m_eff = float(n if m is None else m)
    if not (math.isfinite(m_eff) and m_eff > 0):
        raise ValueError(f"m must be a finite number > 0, got {m!r}")
    if probe_inputs is None:
        probe_inputs = default_probe(x.numpy(), seed=seed)

    # 1-2. clusters and raw SGD masses
    if clusters is None:
        clusters = cluster_solutions(
            ensemble, probe_inputs, threshold=threshold, n_clusters=n_clusters,
            min_cluster_fraction=min_cluster_fraction, data=data, loss=loss, llc=llc,
            llc_members=llc_members, llc_kwargs=llc_kwargs, seed=seed, progress=progress,
            metric="disagreement" if loss == "cross_entropy" else "euclidean")
    elif len(clusters.labels) != N:
        raise ValueError(f"clusters has {len(clusters.labels)} members, the ensemble {N}")
    K = clusters.n_clusters
    labels = clusters.labels
    p_sgd = np.bincount(labels, minlength=K) / N

    # 3. posterior chains
    rng = np.random.default_rng(seed)
    C = N if n_chains is None else int(n_chains)
    if C < 1:
        raise ValueError(f"n_chains must be >= 1, got {n_chains}")
    chain_member = np.arange(N) if C == N else np.sort(rng.choice(N, C, replace=C > N))
    nbeta = float(n)
    pot = members_potential(ensemble.model, ensemble.params, ensemble.buffers, x, y, loss,
                            chain_member, l2=1.0 / (nbeta * float(prior_std) ** 2))
    W = flat_members(ensemble.params)[torch.as_tensor(chain_member)].float().contiguous()
    names = list(ensemble.params)
    shapes = [tuple(v.shape[1:]) for v in ensemble.params.values()]
    sizes = [int(np.prod(s)) if s else 1 for s in shapes]
    bufs_c = {k: v[torch.as_tensor(chain_member)] for k, v in ensemble.buffers.items()}

    def chain_clusters(Wc: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        p = {k: t.reshape(C, *s) for k, t, s in zip(names, torch.split(Wc, sizes, dim=1),
                                                      shapes)}
        out = member_outputs(ensemble.model, p, bufs_c, probe_inputs)
        return clusters.assign(probe_signatures(out, clusters.metric))

    start_lab, _ = chain_clusters(W)
    samples = []
    dists = []
    acc = []
    done = 0
    seg_seed = int(seed) * 1000003 + 17
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(sgld_steps), desc="posterior SGLD", leave=False)
    zeros = torch.zeros(C, dtype=torch.float64)
    while done < sgld_steps:
        seg = min(int(sgld_thin) if done >= sgld_burnin else int(sgld_burnin) - done or
                  int(sgld_thin), int(sgld_steps) - done)
        run = run_sgld(pot, W, nbeta=torch.full((C,), nbeta, dtype=torch.float64),
                       gamma=zeros, eps=torch.full((C,), float(sgld_step_size),
                                                   dtype=torch.float64),
                       n_steps=seg, batch_size=sgld_batch_size, seed=seg_seed + done,
                       mala_every=max(1, seg // 2), progress=False)
        W = run.final.float()
        done += seg
        acc.append(run.acceptance)
        if bar is not None:
            bar.update(seg)
        if not torch.isfinite(W).all():
            raise FloatingPointError(
                "compare_posterior: posterior SGLD diverged (non-finite parameters); use a "
                "smaller sgld_step_size")
        if done > sgld_burnin:
            lab, dd = chain_clusters(W)
            samples.append(lab)
            dists.append(dd)
    if bar is not None:
        bar.close()
    S = np.stack(samples, 1)  # (C, n_samples)
    counts_c = np.stack([(S == k).sum(1) for k in range(K)], 1).astype(float)  # (C, K)
    p_bayes = counts_c.sum(0) / counts_c.sum()
    dd = np.stack(dists, 1)
    thr = clusters.threshold if clusters.threshold is not None else np.inf
    acceptance = float(np.nanmean(np.stack(acc))) if acc else float("nan")

    # 4-5. exponents, tempering, distances, bootstrap
    member_alpha = _late_slopes(ensemble.displacement_steps, ensemble.displacement,
                                float(late_fraction))
    user_ds = None
    if d_s is not None:
        user_ds = np.broadcast_to(np.asarray(d_s, dtype=float), (K,)).copy()
        if not np.isfinite(user_ds).all() or (user_ds <= 0).any():
            raise ValueError(f"d_s must be finite and > 0, got {d_s}")
    state = {"counts": counts_c, "chain_member": chain_member, "labels": labels,
             "member_llc": np.asarray(clusters.member_llc, dtype=float),
             "cluster_llc": np.asarray(clusters.llc, dtype=float),
             "member_alpha": member_alpha, "ground": clusters.ground_distance,
             "xis": xis_arr, "user_ds": user_ds, "n_bootstrap": int(n_bootstrap),
             "confidence": float(confidence), "seed": int(seed)}
    out = _temper(state, m_eff)
    moved = float(np.mean(S[:, -1] != start_lab))
    half = S.shape[1] // 2
    if half >= 1:
        first = np.bincount(S[:, :half].ravel(), minlength=K) / S[:, :half].size
        second = np.bincount(S[:, half:].ravel(), minlength=K) / S[:, half:].size
        drift = float(np.abs(second - first).max())
    else:
        first = second = np.full(K, np.nan)
        drift = float("nan")
    diagnostics = {
        "n_chains": C, "acceptance": acceptance, "chains_moved": moved,
        "p_bayes_first_half": first.tolist(), "p_bayes_second_half": second.tolist(),
        "p_bayes_drift": drift,
        "unassigned_fraction": float(np.mean(dd > thr)),
        "samples_per_chain": int(S.shape[1]), "seconds": time.perf_counter() - t_start,
        "member_displacement_exponent": member_alpha,
    }
    if moved == 0.0:
        warnings.warn(
            "compare_posterior: no posterior chain left the cluster it started in, so P_Bayes "
            "equals the SGD starting distribution; run longer chains (sgld_steps) or a larger "
            "sgld_step_size", RuntimeWarning, stacklevel=2)
    settings = {"n": n, "nbeta": nbeta, "m": m_eff, "prior_std": float(prior_std),
                "sgld_steps": int(sgld_steps), "sgld_burnin": int(sgld_burnin),
                "sgld_thin": int(sgld_thin), "sgld_step_size": float(sgld_step_size),
                "sgld_batch_size": sgld_batch_size, "late_fraction": float(late_fraction),
                "n_bootstrap": int(n_bootstrap), "confidence": float(confidence), "seed": int(seed),
                "d_s_user": None if user_ds is None else user_ds.tolist(),
                "kl_direction": "KL(P_Bayes || P_temp)", "mass_floor": MASS_FLOOR,
                "ground_metric": f"{clusters.metric} distance between cluster representatives"}
    return PosteriorComparison(
        clusters=clusters, xis=xis_arr, p_sgd=p_sgd, p_bayes=p_bayes,
        llc_stderr=np.asarray(clusters.llc_stderr, dtype=float), m=m_eff,
        settings=settings, diagnostics=diagnostics, state=state, **out)


def _temper(state: dict, m_eff: float) -> dict[str, Any]:
    """Tempered masses, distances and bootstrap intervals from the stored comparison state."""
    counts_c = state["counts"]
    chain_member = state["chain_member"]
    labels = state["labels"]
    member_llc = state["member_llc"]
    member_alpha = state["member_alpha"]
    ground = state["ground"]
    xis_arr = state["xis"]
    user_ds = state["user_ds"]
    confidence = state["confidence"]
    N = len(labels)
    C, K = counts_c.shape
    p_sgd = np.bincount(labels, minlength=K) / N
    p_bayes = counts_c.sum(0) / counts_c.sum()

    def cluster_stats(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lam = np.array(state["cluster_llc"], dtype=float)
        alp = np.full(K, np.nan)
        lab = labels[idx]
        for k in range(K):
            sel = idx[lab == k]
            v = member_llc[sel]
            v = v[np.isfinite(v)]
            if len(v):
                lam[k] = v.mean()
            a = member_alpha[sel]
            a = a[np.isfinite(a)]
            if len(a):
                alp[k] = a.mean()
            else:
                allk = member_alpha[labels == k]
                allk = allk[np.isfinite(allk)]
                alp[k] = allk.mean() if len(allk) else np.nan
        return lam, alp

    def exponents(lam: np.ndarray, alp: np.ndarray) -> tuple[np.ndarray, ...]:
        ds = user_ds if user_ds is not None else 2.0 * lam * alp
        with np.errstate(divide="ignore", invalid="ignore"):
            dw = 2.0 * lam / ds
        D = xis_arr[:, None] ** (2.0 - dw[None, :])
        return ds, dw, D

    lam, alp = cluster_stats(np.arange(N))
    ds, dw, D = exponents(lam, alp)
    if not np.isfinite(D).all():
        bad = [f"C{k + 1}" for k in range(K) if not np.isfinite(D[:, k]).all()]
        raise ValueError(
            f"compare_posterior: D_ξ is undefined for {', '.join(bad)} (no λ̂ or displacement "
            f"exponent: estimate λ̂ at members with llc='auto', pass llc=, or pass d_s=)")
    p_temp = tempered_masses(p_sgd, m_eff * D)
    kl = kl_divergence(np.broadcast_to(p_bayes, p_temp.shape), p_temp)
    js = js_divergence(np.broadcast_to(p_bayes, p_temp.shape), p_temp)
    ws = np.array([wasserstein_masses(p_bayes, row, ground) for row in p_temp])
    best = int(np.nanargmin(kl))
    raw = {"kl": kl_divergence(p_bayes, p_sgd), "js": js_divergence(p_bayes, p_sgd),
           "wasserstein": wasserstein_masses(p_bayes, p_sgd, ground)}

    B = state["n_bootstrap"]
    nx = len(xis_arr)
    bk = np.empty((B, nx))
    bj = np.empty((B, nx))
    bw = np.empty(B)
    braw = np.empty((B, 3))
    bps = np.empty((B, K))
    bpb = np.empty((B, K))
    chain_of_member: dict[int, list[int]] = {}
    for c, i in enumerate(chain_member):
        chain_of_member.setdefault(int(i), []).append(c)
    brng = np.random.default_rng(state["seed"] + 1)
    for b in range(B):
        idx = brng.integers(0, N, N)
        ps = np.bincount(labels[idx], minlength=K) / N
        ch = [c for i in idx for c in chain_of_member.get(int(i), [])]
        if not ch:
            ch = list(brng.integers(0, C, C))
        pb = counts_c[ch].sum(0)
        pb = pb / pb.sum()
        lam_b, alp_b = cluster_stats(idx)
        Db = exponents(lam_b, alp_b)[2]
        Db = np.where(np.isfinite(Db), Db, D)
        pt = tempered_masses(ps, m_eff * Db)
        bk[b] = kl_divergence(np.broadcast_to(pb, pt.shape), pt)
        bj[b] = js_divergence(np.broadcast_to(pb, pt.shape), pt)
        bw[b] = wasserstein_masses(pb, pt[best], ground)  # the LP: at the best ξ only
        braw[b] = (kl_divergence(pb, ps), js_divergence(pb, ps),
                   wasserstein_masses(pb, ps, ground))
        bps[b], bpb[b] = ps, pb
    lo, hi = 50 * (1 - confidence), 50 * (1 + confidence)

    def pct(a: np.ndarray) -> np.ndarray:
        return np.stack([np.percentile(a, lo, axis=0), np.percentile(a, hi, axis=0)], -1)

    ws_ci = np.full((nx, 2), np.nan)
    ws_ci[best] = pct(bw)
    raw_d = {"kl": {"value": raw["kl"], "ci": pct(braw[:, 0])},
             "js": {"value": raw["js"], "ci": pct(braw[:, 1])},
             "wasserstein": {"value": raw["wasserstein"], "ci": pct(braw[:, 2])}}
    return dict(p_tempered=p_temp, kl=kl, js=js, wasserstein=ws, kl_ci=pct(bk), js_ci=pct(bj),
                wasserstein_ci=ws_ci, best=best, raw=raw_d, llc=lam,
                displacement_exponent=alp, spectral_dimension=ds, walk_dimension=dw,
                diffusion_coefficient=D, p_sgd_ci=pct(bps), p_bayes_ci=pct(bpb))

"""SGLD step-size calibration for the LLC: :func:`calibrate_llc`."""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from ._engine import (
    LLCWarning,
    Potential,
    batch_means_se,
    check_pos,
    run_sgld,
    summarize,
    torch_threads,
)
from .llc import check_common, init_losses, resolve_localization, setup

__all__ = ["LLCCalibration", "calibrate_llc", "calibrate_with_potential"]

#: Default step-size grid: half decades from 1e-7 to 1e-2.
DEFAULT_STEP_SIZES = tuple(float(v) for v in 10.0 ** np.arange(-7.0, -1.99, 0.5))


@dataclass(repr=False)
class LLCCalibration:
    """Result of a step-size sweep.

    Attributes
    ----------
    step_size : float
        The chosen ε: the largest *stable* step: no diverged chain, converged traces (first
        vs second half), mean MALA acceptance >= ``acceptance_target``, λ̂ > 0, and a virial
        ratio E[(w - w*)·∇U]/D within ``virial_tolerance`` of 1 (exactly 1 under the local
        posterior: below 1 the chains have not spread out yet, above 1 the step inflates the
        posterior by the discretization factor, 1/(1 - εκ/4) for a quadratic).
    nbeta, localization : float
        The nβ and γ the choice is for (the first of each sweep).
    table : list of dict
        One row per (step_size, nbeta, localization): llc, stderr, acceptance, diverged,
        converged, stable, flags.
    ok : bool
        False when no step size was stable; ``step_size`` is then the non-diverged step with
        acceptable acceptance whose virial ratio is closest to 1 (or the smallest tried).
    plateau : bool
        Whether λ̂ at the chosen step agrees with the next smaller stable step's (within 3
        combined standard errors or ``rtol``); False is a hint that λ̂ still depends on ε.
    """

    step_size: float
    nbeta: float
    localization: float
    table: list[dict[str, Any]]
    ok: bool
    plateau: bool = True

    def plot(self, ax: Any = None) -> Any:
        """λ̂ ± stderr and acceptance against ε (log axis); the choice marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        combos = sorted({(r["nbeta"], r["localization"]) for r in self.table})
        for nb, gm in combos:
            rows = [r for r in self.table if r["nbeta"] == nb and r["localization"] == gm]
            eps = np.array([r["step_size"] for r in rows])
            lam = np.array([r["llc"] for r in rows])
            se = np.array([r["stderr"] for r in rows])
            ax.errorbar(eps, lam, yerr=se, marker="o", ms=3, capsize=2,
                        label=f"nβ={nb:.3g}, γ={gm:.3g}")
        ax.axvline(self.step_size, color="k", ls="--", lw=1, label=f"chosen ε={self.step_size:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("step size ε")
        ax.set_ylabel("λ̂")
        ax.legend(fontsize="small")
        return ax

    def __repr__(self) -> str:
        lines = [f"LLCCalibration(step_size={self.step_size:.3g}, nβ={self.nbeta:.4g}, "
                 f"γ={self.localization:.3g}, ok={self.ok}, plateau={self.plateau})",
                 f"{'eps':>9} {'nbeta':>8} {'gamma':>7} {'llc':>10} {'stderr':>8} "
                 f"{'accept':>6} {'virial':>6} stable"]
        for r in self.table:
            lines.append(
                f"{r['step_size']:9.2g} {r['nbeta']:8.4g} {r['localization']:7.3g} "
                f"{r['llc']:10.4g} {r['stderr']:8.2g} {r['acceptance']:6.2f} {r['virial']:6.3f} "
                f"{'yes' if r['stable'] else 'no: ' + ','.join(r['flags'])}"
            )
        return "\n".join(lines)


def calibrate_with_potential(
    pot: Potential, w0: torch.Tensor, init: float, *, nbeta: float | list[float],
    localization: float | list[float], batch: int | None, seed: int | None,
    n_chains: int = 4, n_draws: int = 300, n_burnin: int = 100,
    step_sizes: Any = None, acceptance_target: float = 0.9, rtol: float = 0.05,
    virial_tolerance: float = 0.1, progress: bool = False, mala_every: int = 5,
) -> LLCCalibration:
    """The sweep behind :func:`calibrate_llc`, on an already built potential."""
    eps_list = sorted(float(e) for e in (step_sizes if step_sizes is not None
                                         else DEFAULT_STEP_SIZES))
    nbs = [float(v) for v in np.atleast_1d(nbeta)]
    gms = [float(v) for v in np.atleast_1d(localization)]
    combos = list(itertools.product(eps_list, nbs, gms))
    C = len(combos) * n_chains
    rep = lambda k: torch.tensor([c[k] for c in combos for _ in range(n_chains)],  # noqa: E731
                                 dtype=torch.float64)
    centers = w0[None].expand(C, -1).contiguous()
    run = run_sgld(pot, centers, nbeta=rep(1), gamma=rep(2), eps=rep(0), n_steps=n_draws,
                   batch_size=batch, seed=seed, mala_every=mala_every, progress=progress,
                   desc="calibrate_llc")
    table = []
    for i, (e, nb, gm) in enumerate(combos):
        sl = slice(i * n_chains, (i + 1) * n_chains)
        s = summarize(run.trace[sl], init, nb, n_burnin, run.acceptance[sl], pot.n_params,
                      virial=run.virial[sl], acceptance_floor=acceptance_target,
                      virial_tolerance=virial_tolerance)
        acc = float(np.nanmean(s.acceptance)) if np.isfinite(s.acceptance).any() else float("nan")
        flags = [k for k, v in s.flags.items() if v and k != "chains_disagree"]
        vir = float(np.nanmean(s.virial)) if np.isfinite(s.virial).any() else float("nan")
        # its standard error from batch means within each chain (4 chains alone give a
        # poor spread), pooled over the chains
        vt = run.virial[sl][:, n_burnin:]
        vt = vt[np.isfinite(vt).all(axis=1)]
        vir_se = (math.sqrt(sum(batch_means_se(row) ** 2 for row in vt)) / len(vt)
                  if len(vt) else 0.0)
        # Choosing a step asks more than the diagnostic flag (which allows 3 standard errors
        # before it warns): the inflation must be within the tolerance at one standard error
        # above the measured virial, so that a noisy short run does not pick a step whose
        # true inflation is past it (4 chains x 200 draws often misread a quadratic's 1.19
        # as 1.1).
        inflated = math.isfinite(vir) and vir + vir_se > 1.0 + virial_tolerance
        if inflated and "not_equilibrated" not in flags:
            flags.append("not_equilibrated")
        stable = (not flags) and math.isfinite(s.mean) and s.mean > 0
        table.append(dict(step_size=e, nbeta=nb, localization=gm, llc=s.mean,
                          stderr=s.stderr, acceptance=acc, virial=vir, virial_se=vir_se,
                          diverged=bool(s.diverged.any()),
                          converged=not s.flags["not_converged"], stable=stable, flags=flags))
    nb0, gm0 = nbs[0], gms[0]
    rows = [r for r in table if r["nbeta"] == nb0 and r["localization"] == gm0]
    stable = [r for r in rows if r["stable"]]
    plateau = True
    if stable:
        ok = True
        top = stable[-1]
        chosen = top["step_size"]
        below = stable[-2] if len(stable) >= 2 else None
        if below is not None:
            tol = max(3.0 * math.hypot(below["stderr"], top["stderr"]), rtol * abs(below["llc"]))
            plateau = abs(top["llc"] - below["llc"]) <= tol
    else:
        ok = False
        usable = [r for r in rows if not r["diverged"] and math.isfinite(r["virial"])
                  and (not math.isfinite(r["acceptance"])
                       or r["acceptance"] >= acceptance_target)]
        if usable:
            chosen = min(usable, key=lambda r: abs(r["virial"] - 1.0))["step_size"]
        else:
            chosen = rows[0]["step_size"]
    return LLCCalibration(chosen, nb0, gm0, table, ok, plateau)


def calibrate_llc(
    model_or_loss_fn: torch.nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data_or_w0: Any = None,
    *,
    step_sizes: Any = None,
    nbeta: float | list[float] | None = None,
    localization: float | list[float] | None = None,
    n: int | None = None,
    loss: str | Callable = "cross_entropy",
    n_chains: int = 4,
    n_draws: int = 300,
    n_burnin: int = 100,
    batch_size: int | None = None,
    acceptance_target: float = 0.9,
    rtol: float = 0.05,
    virial_tolerance: float = 0.1,
    seed: int | None = 0,
    device: Any = None,
    progress: bool = False,
    n_threads: int | None = None,
) -> LLCCalibration:
    """Choose the SGLD step size ε for :func:`estimate_llc` by a batched sweep.

    Every (ε, nβ, γ) combination gets ``n_chains`` short chains, and **all of them run as one
    vmapped computation**. A combination is *stable* when no chain diverged, the trace
    converged (first vs second half of the kept draws), the mean MALA acceptance is at least
    ``acceptance_target``, λ̂ > 0 and the virial ratio E[(w - w*)·∇U]/D is within
    ``virial_tolerance`` of 1 (it is exactly 1 under the localized posterior). The choice is
    the largest stable ε for the first nβ and γ given: too small a step has not spread the
    chains over the posterior in the draws given (virial < 1), too large a step inflates λ̂
    (for a quadratic by 1 / (1 - εκ/4), κ = nβ a + γ; virial > 1), lowers the acceptance or
    diverges.

    Parameters
    ----------
    model_or_loss_fn, data_or_w0, n, loss, batch_size, seed, device, progress, n_threads
        As for :func:`estimate_llc`.
    step_sizes : sequence of float, optional
        ε values to try (default half decades 1e-7 ... 1e-2).
    nbeta : float or sequence of float, optional
        nβ value(s) to sweep (default n / log n).
    localization : float or sequence of float, optional
        γ value(s) to sweep (default as in :func:`estimate_llc`: 100 with a model, 1 with a
        loss function).
    n_chains : int, default 4
        Chains per combination.
    n_draws, n_burnin : int, default 300, 100
        Steps per chain (burn-in included) and burn-in.
    acceptance_target : float, default 0.9
        Minimum mean MALA acceptance probability (measured every 5 steps).
    rtol : float, default 0.05
        Relative agreement between neighbouring step sizes (for ``plateau``).
    virial_tolerance : float, default 0.1
        Allowed |virial ratio - 1| (0.1 allows ~10 % discretization inflation at most).

    Returns
    -------
    LLCCalibration
        ``.step_size``, ``.table``, ``.plot()``.
    """
    func = "calibrate_llc"
    localization = resolve_localization(localization, model_or_loss_fn)
    n_chains, n_draws, n_burnin, _, _ = check_common(
        func, n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin, localization=0.0,
        mala_every=1)
    if step_sizes is not None:
        step_sizes = [check_pos(e, "step_sizes", func) for e in np.atleast_1d(step_sizes)]
        if not step_sizes:
            raise ValueError(f"{func}: step_sizes is empty")
    gms = [float(g) for g in np.atleast_1d(localization)]
    for g in gms:
        if not (math.isfinite(g) and g >= 0):
            raise ValueError(f"{func}: localization must be finite and >= 0, got {g!r}")
    if not 0.0 <= float(acceptance_target) < 1.0:
        raise ValueError(f"{func}: acceptance_target must be in [0, 1), got {acceptance_target!r}")
    nb_first = None if nbeta is None else float(np.atleast_1d(nbeta)[0])
    pot, w0, _, nb, batch = setup(func, model_or_loss_fn, data_or_w0, n=n, loss=loss,
                                  nbeta=nb_first, batch_size=batch_size, device=device)
    try:
        nbs = [nb] if nbeta is None else [check_pos(v, "nbeta", func)
                                          for v in np.atleast_1d(nbeta)]
        init = float(init_losses(pot, w0[None], func)[0])
        with torch_threads(n_threads, func):
            cal = calibrate_with_potential(
                pot, w0, init, nbeta=nbs, localization=gms, batch=batch, seed=seed,
                n_chains=n_chains, n_draws=n_draws, n_burnin=n_burnin, step_sizes=step_sizes,
                acceptance_target=float(acceptance_target), rtol=rtol,
                virial_tolerance=float(virial_tolerance), progress=progress)
    finally:
        pot.cleanup()
    if not cal.ok:
        warnings.warn(f"{func}: no step size was stable (converged, no divergence, acceptance "
                      f">= {acceptance_target}, virial ratio within {virial_tolerance} of 1); "
                      f"using {cal.step_size:.3g}, the closest to equilibrium. Try more draws, a "
                      "stronger localization or other step_sizes", LLCWarning, stacklevel=2)
    return cal

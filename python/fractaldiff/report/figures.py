"""The report's figures, drawn from results.json alone (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_figures"]

_COL = {"sgd": "#1f77b4", "adam": "#d62728", "beyond": "#2ca02c"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _v(d: Any, key: str = "value") -> float | None:
    if not isinstance(d, dict):
        return None
    v = d.get(key)
    return None if v is None or not math.isfinite(v) else float(v)


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    _plt().close(fig)
    tmp.replace(path)


def fig_moons(res: dict[str, Any], path: Path) -> bool:
    m = res.get("moons") or {}
    if not m.get("mean_R"):
        return False
    plt = _plt()
    t = np.asarray(m["t_normalized"])
    R = np.asarray(m["mean_R"])
    sd = np.asarray(m["sd_R"])
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.fill_between(t, np.maximum(R - sd, R * 1e-3), R + sd, color="0.85",
                    label="± 1 sd over models")
    ax.loglog(t, R, color="k", lw=2, label=f"mean R(t), {m['n_models']} models")
    ref = R[len(R) // 2] * np.sqrt(t / t[len(t) // 2])
    ax.loglog(t, ref, "--", color="0.4", label="Brownian t^(1/2)")
    steps_last = m["steps"][-1]
    for name, color in (("early", "tab:orange"), ("late", "tab:blue")):
        f = (m.get("fits") or {}).get(name) or {}
        if _v(f) is None or "window" not in f:
            continue
        lo, hi = f["window"]
        tt = np.geomspace(lo, hi, 50)
        ax.loglog(tt / steps_last, f["prefactor"] * tt ** f["value"], color=color, lw=2.5,
                  alpha=0.8, label=f"{name}: R ~ t^{f['value']:.2f} ± {f['stderr'] or 0:.2f}")
    ax.set_xlabel("normalized time t / T")
    ax.set_ylabel("mean displacement R(t) = ||w(t) - w(0)||")
    ax.set_title("(a) two-moons ensemble: displacement vs time (paper Fig. 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True


def _digit_points(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in (res.get("digits") or {}).get("rows", []) + (res.get("beyond") or {}).get("rows", []):
        if r.get("llc") and r.get("spectral_dimension"):
            rows.append(r)
    return rows


def fig_ds_llc(res: dict[str, Any], path: Path) -> bool:
    rows = _digit_points(res)
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    seen = set()
    for r in rows:
        g = r.get("group") or "beyond"
        lab = {"sgd": "MLP SGD", "adam": "MLP Adam"}.get(g, r["label"])
        if g != "beyond" and g in seen:
            lab = None
        seen.add(g)
        ax.errorbar(r["llc"]["value"], r["spectral_dimension"]["value"],
                    xerr=r["llc"]["stderr"], yerr=r["spectral_dimension"]["stderr"],
                    fmt="o" if g != "beyond" else "s", color=_COL.get(g, None), label=lab,
                    capsize=3)
    vals = [r["llc"]["value"] for r in rows] + [r["spectral_dimension"]["value"] for r in rows]
    vals = [v for v in vals if v > 0]
    lo, hi = min(vals) / 1.5, max(vals) * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="d_s = λ̄ (Lemma 3.4 bound)")
    ax.fill_between([lo, hi], [lo, lo], [lo, hi], color="0.93", zorder=0,
                    label="d_s < λ̄ (bound holds)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("time-averaged LLC λ̄")
    ax.set_ylabel("spectral dimension d_s = 2 λ̄ α")
    ax.set_title("(b) d_s vs λ̄ (paper Fig. 2a)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return True


def fig_llc_disp(res: dict[str, Any], path: Path) -> bool:
    rows = [r for r in _digit_points(res) if r.get("total_displacement")]
    rows = [r for r in (res.get("digits") or {}).get("rows", [])
            if r.get("llc") and r.get("total_displacement")]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    for g in ("sgd", "adam"):
        rr = [r for r in rows if r.get("group") == g]
        if rr:
            ax.errorbar([r["total_displacement"] for r in rr], [r["llc"]["value"] for r in rr],
                        yerr=[r["llc"]["stderr"] for r in rr], fmt="o", color=_COL[g],
                        label=g.upper(), capsize=3)
    ax.set_xlabel("total displacement ||w(T) - w(0)||")
    ax.set_ylabel("time-averaged LLC λ̄")
    ax.set_title("(b) λ̄ vs total displacement (paper Fig. 2b)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return True



def _overlay_power_law(ax: Any, t: np.ndarray, y: np.ndarray, est: dict | None, color: str,
                       name: str) -> None:
    """Draw the fitted power law c t^value over its window (c by least squares in log-log)."""
    est = est or {}
    if _v(est) is None or "window" not in est:
        return
    lo, hi = est["window"]
    sel = (t >= lo) & (t <= hi) & (t > 0) & (y > 0)
    if sel.sum() < 2:
        return
    c = np.exp(np.mean(np.log(y[sel]) - est["value"] * np.log(t[sel])))
    tt = np.geomspace(lo, hi, 20)
    ax.loglog(tt, c * tt ** est["value"], color=color, lw=2.5, alpha=0.7,
              label=f"{name}={est['value']:.3f}±{est.get('stderr') or 0:.3f}")
    ax.legend(fontsize=7)

def fig_runs(res: dict[str, Any], path: Path, which: str) -> bool:
    rows = [(n, r) for n, r in (res.get("runs") or {}).items()
            if (r.get("analysis") or {}).get("displacement" if which == "R" else "msd")]
    if not rows:
        return False
    plt = _plt()
    n = len(rows)
    cols = min(4, n)
    nr = int(math.ceil(n / cols))
    fig, axes = plt.subplots(nr, cols, figsize=(3.2 * cols, 2.6 * nr), squeeze=False)
    for ax, (name, r) in zip(axes.ravel(), rows):
        a = r["analysis"]
        if which == "R":
            t, y = np.asarray(a["displacement"]["t"]), np.asarray(a["displacement"]["R"])
            ax.loglog(t, y, color="k", lw=1)
            _overlay_power_law(ax, t, y, a.get("displacement_exponent"), "tab:blue", "late α")
            ax.set_xlabel("steps since first snapshot", fontsize=8)
            ax.set_ylabel("R(t)", fontsize=8)
        else:
            t, y = np.asarray(a["msd"]["lag"]), np.asarray(a["msd"]["msd"])
            ax.loglog(t, y, color="k", lw=1)
            _overlay_power_law(ax, t, y, a.get("msd_exponent"), "tab:red", "β")
            ax.set_xlabel("lag τ (steps), late window", fontsize=8)
            ax.set_ylabel("MSD(τ)", fontsize=8)
        ax.set_title(r.get("label", name), fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle("(e) R(t) with the late-regime fit" if which == "R"
                 else "(e) time-averaged MSD of the late window with its fit", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return True


def fig_posterior(res: dict[str, Any], folder: Path) -> dict[str, str]:
    """Fig. 3 (KL vs ξ) and Fig. 4 (LLC histogram, cluster masses), when available."""
    p = res.get("posterior") or {}
    out: dict[str, str] = {}
    if not p.get("available"):
        return out
    plt = _plt()
    kl = p.get("kl_vs_xi")
    if kl and kl.get("xi"):
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        ax.plot(kl["xi"], kl["kl"], "o-", color="k", label="KL(Bayes ‖ tempered SGD)")
        ci = kl.get("kl_ci")
        if ci and all(c is not None and None not in c for c in ci):
            ax.fill_between(kl["xi"], [c[0] for c in ci], [c[1] for c in ci], color="0.85",
                            label="95 % bootstrap interval")
        raw = ((p.get("table2_raw") or {}).get("kl") or {}).get("value")
        if raw:
            ax.axhline(raw, color="tab:red", ls="-.", label="KL(Bayes ‖ raw SGD)")
        ax.set_xscale("log")
        if p.get("best_xi") is not None:
            ax.axvline(p["best_xi"], color="tab:blue", ls="--", label=f"best ξ = {p['best_xi']:g}")
        ax.axvline(0.5, color="0.6", ls=":", label="paper ξ = 0.5")
        ax.set_xlabel("coarse-graining scale ξ")
        ax.set_ylabel("KL divergence (nats)")
        ax.set_yscale("log")
        ax.set_title("(d) KL vs ξ (paper Fig. 3)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        _save(fig, folder / "fig3_kl_vs_xi.png")
        out["fig3"] = "fig3_kl_vs_xi.png"
    llcs = p.get("solution_llcs")
    masses = p.get("cluster_masses")
    if llcs or masses:
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.8))
        if llcs:
            axes[0].hist(llcs, bins=min(20, max(5, len(llcs) // 3)), color="0.5")
            axes[0].set_xlabel("LLC of SGD solutions λ̂")
            axes[0].set_ylabel("count")
            axes[0].set_title("(d) LLC histogram (paper Fig. 4a)")
        if masses:
            names = masses["clusters"]
            x = np.arange(len(names))
            wdt = 0.27
            for k, (key, lab) in enumerate((("sgd", "SGD"), ("bayes", "Bayes"),
                                            ("tempered", "tempered SGD"))):
                if masses.get(key) is not None:
                    axes[1].bar(x + (k - 1) * wdt, masses[key], wdt, label=lab)
            axes[1].set_xticks(x)
            axes[1].set_xticklabels(names)
            axes[1].set_ylabel("cluster mass")
            axes[1].set_title("(d) cluster masses (paper Fig. 4b)")
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        _save(fig, folder / "fig4_llc_clusters.png")
        out["fig4"] = "fig4_llc_clusters.png"
    return out


def make_figures(res: dict[str, Any], folder: Path) -> dict[str, str]:
    """Write every figure that the results support; returns {key: file name}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    if fig_moons(res, folder / "fig1_moons_displacement.png"):
        out["fig1"] = "fig1_moons_displacement.png"
    if fig_ds_llc(res, folder / "fig2a_ds_vs_llc.png"):
        out["fig2a"] = "fig2a_ds_vs_llc.png"
    if fig_llc_disp(res, folder / "fig2b_llc_vs_displacement.png"):
        out["fig2b"] = "fig2b_llc_vs_displacement.png"
    if fig_runs(res, folder / "runs_displacement.png", "R"):
        out["runs_R"] = "runs_displacement.png"
    if fig_runs(res, folder / "runs_msd.png", "msd"):
        out["runs_msd"] = "runs_msd.png"
    out.update(fig_posterior(res, folder))
    return out

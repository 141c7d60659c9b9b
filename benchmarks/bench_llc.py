"""LLC estimation: fractaldiff.bayes.estimate_llc against devinterp 1.3.2, measured in one run.

Same model, data, chains x draws, batch size, step size ε, localization γ and nβ for both
(CPU, float32). devinterp runs its chains one after the other (cores=1, its default); ours run
as one vmapped computation. Also: the time per chain-step against one plain forward+backward of
the model on one batch (the floor a per-chain implementation cannot beat), and the memory per
chain (peak RSS growth per extra chain, from child processes).

Workloads:
* digits MLP: fractaldiff.train.mlp(64, 10, width=128) with BatchNorm (26 634 parameters),
  8 chains x 200 draws, batch 64, ε = 1e-4, γ = 100, nβ = n / log n (n = 1437);
* two-moons MLP: mlp(2, 2, width=32) (1 286 parameters), same sampler settings (n = 800).

BatchNorm: both evaluate the model in eval mode (running statistics), ours by construction,
devinterp through its ``evaluate`` callback, so both sample the same posterior.

``--validate`` prints the validation table instead: λ̂ on potentials with known learning
coefficients at the recommended settings of docs/llc.md (the same runs as tests/test_llc.py),
with the exact finite-nβ value from grid_llc where the model has at most 3 parameters.

Run:  nice python benchmarks/bench_llc.py [--quick] [--repeat N] [--no-memory] [--validate]
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from fractaldiff.bayes import estimate_llc  # noqa: E402
from fractaldiff.train import digits, mlp, train, two_moons  # noqa: E402

EPS, GAMMA, CHAINS, DRAWS, BATCH = 1e-4, 100.0, 8, 200, 64


def workload(name: str, trained: bool = True):
    if name == "digits":
        ds = digits()
        model = mlp(64, 10, width=128, seed=0)
    else:
        ds = two_moons(1000, noise=0.1)
        model = mlp(2, 2, width=32, seed=0)
    if not trained:
        model.eval()
        return model, ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, ds, optimizer="adam", lr=1e-3, batch_size=64, epochs=20, seed=0,
              device="cpu")
    model.eval()
    return model, ds


def ours(model, ds, chains=CHAINS, draws=DRAWS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimate_llc(model, ds, step_size=EPS, localization=GAMMA, n_chains=chains,
                            n_draws=draws, n_burnin=0, batch_size=BATCH, seed=0, warn=False)


def devinterp_run(model, ds, nbeta, chains=CHAINS, draws=DRAWS):
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    x = torch.as_tensor(ds.x_train)
    y = torch.as_tensor(ds.y_train)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=BATCH, shuffle=True)

    def evaluate(m, data):
        m.eval()  # BatchNorm on running statistics, as in fractaldiff
        xb, yb = data
        return torch.nn.functional.cross_entropy(m(xb), yb)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model, loader, evaluate=evaluate, sampling_method=SGLD,
            optimizer_kwargs=dict(lr=EPS, localization=GAMMA, nbeta=nbeta),
            num_chains=chains, num_draws=draws, num_burnin_steps=0, seed=0, device="cpu",
            verbose=False, online=False)
    return out


def floor_step(model, ds, repeat: int) -> float:
    """One plain forward+backward of the model on one batch (seconds)."""
    x = torch.as_tensor(ds.x_train[:BATCH])
    y = torch.as_tensor(ds.y_train[:BATCH])
    params = [p for p in model.parameters()]

    def once():
        for p in params:
            p.grad = None
        torch.nn.functional.cross_entropy(model(x), y).backward()

    for _ in range(20):
        once()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(200):
            once()
        times.append((time.perf_counter() - t0) / 200)
    for p in params:
        p.grad = None
    return statistics.median(times)


def memory_probe(name: str, chains: int) -> None:
    # untrained weights (memory does not depend on them; training would leave freed heap
    # that hides the sampler's growth in the peak RSS)
    model, ds = workload(name, trained=False)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ours(model, ds, chains=chains, draws=10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{(peak - base) * 1024}")


def memory_per_chain(name: str) -> float:
    many = 130 if name == "digits" else 1026  # growth well above the allocator's noise
    vals = {}
    for c in (2, many):
        out = subprocess.run([sys.executable, __file__, "--memory-probe", name, str(c)],
                             capture_output=True, text=True, check=True)
        vals[c] = int(out.stdout.strip().splitlines()[-1])
    return (vals[many] - vals[2]) / (many - 2)


def validate() -> None:
    from fractaldiff.bayes import grid_llc

    def rrr(w):
        a = w[:15].reshape(3, 5)
        b = w[15:].reshape(5, 3)
        return 0.5 * ((b @ a) ** 2).sum()

    cases = [
        ("Σ w_i², d=1", lambda w: (w**2).sum(), 1, 0.5, 100.0, 2e-4, 1.0),
        ("Σ w_i², d=4", lambda w: (w**2).sum(), 4, 2.0, 100.0, 2e-4, None),
        ("Σ w_i², d=20", lambda w: (w**2).sum(), 20, 10.0, 100.0, 2e-4, None),
        ("w1⁴", lambda w: w[0] ** 4, 1, 0.25, 100.0, 2e-4, 1.5),
        ("w1² + w2⁴", lambda w: w[0] ** 2 + w[1] ** 4, 2, 0.75, 100.0, 2e-4, 1.5),
        ("w1² w2²", lambda w: w[0] ** 2 * w[1] ** 2, 2, 0.5, 100.0, 2e-4, 5.0),
        ("RRR (5,3,5,0)", rrr, 30, 6.5, 1000.0, 1e-4, None),
    ]
    print("| K(w) | true λ | nβ | ε | λ̂ ± stderr | error | exact finite-nβ (grid) | "
          "volume exponent (grid) | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, fn, d, lam, nb, eps, radius in cases:
        t0 = time.perf_counter()
        r = estimate_llc(fn, torch.zeros(d, dtype=torch.float64), nbeta=nb, localization=1.0,
                         step_size=eps, n_chains=64, n_draws=3000, n_burnin=1000, seed=0,
                         warn=False)
        dt = time.perf_counter() - t0
        if radius is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                g = grid_llc(fn, np.zeros(d), radius, nbeta=nb, localization=1.0,
                             n_points=20001 if d == 1 else 801)
            gl, gv = f"{g.llc:.4f}", f"{g.volume_exponent:.3f}"
        else:
            gl = gv = "–"
        print(f"| {name} | {lam:g} | {nb:g} | {eps:g} | {r.mean:.3f} ± {r.stderr:.3f} | "
              f"{100 * (r.mean - lam) / lam:+.1f} % | {gl} | {gv} | {dt:.1f} |")
    print("(γ = 1, 64 chains x 3000 steps of which 1000 burn-in, seed 0, float64)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 repeats, 50 draws")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--validate", action="store_true", help="print the validation table")
    ap.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.validate:
        validate()
        return
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]))
        return
    repeat = 2 if args.quick else args.repeat
    draws = 50 if args.quick else DRAWS
    try:
        import devinterp  # noqa: F401
        have_dv = True
    except ImportError:
        have_dv = False
        print("devinterp not installed: pip install devinterp==1.3.2 (--no-deps + einops, "
              "cloudpickle, pandas) to compare")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); chains={CHAINS}, "
          f"draws={draws}, batch={BATCH}, eps={EPS}, gamma={GAMMA}; median of {repeat}")
    rows = []
    for name in ("digits", "moons"):
        model, ds = workload(name)
        D = sum(p.numel() for p in model.parameters())
        n = len(ds.x_train)
        nbeta = n / math.log(n)
        t_ours, t_dv, lam_o, lam_d = [], [], [], []
        for _ in range(repeat):  # interleaved: ours, devinterp, ours, ...
            t0 = time.perf_counter()
            res = ours(model, ds, draws=draws)
            t_ours.append(time.perf_counter() - t0)
            lam_o.append((res.mean, res.stderr))
            if have_dv:
                t0 = time.perf_counter()
                out = devinterp_run(model, ds, nbeta, draws=draws)
                t_dv.append(time.perf_counter() - t0)
                lam_d.append((float(out["llc/mean"]), float(out["llc/std"]) / math.sqrt(CHAINS)))
        to = statistics.median(t_ours)
        floor = floor_step(model, ds, repeat)
        per_chain_step = to / (CHAINS * draws)
        mem = float("nan") if args.no_memory else memory_per_chain(name)
        td = statistics.median(t_dv) if t_dv else float("nan")
        if t_dv:
            pair = sorted(d / o for d, o in zip(t_dv, t_ours))
            print(f"{name}: per-repeat speed-up devinterp/fractaldiff min {pair[0]:.1f}x, "
                  f"median {statistics.median(pair):.1f}x, max {pair[-1]:.1f}x")
        rows.append((name, D, to, td, td / to, per_chain_step * 1e3, floor * 1e3,
                     per_chain_step / floor, mem / 1e6, lam_o[-1], lam_d[-1] if lam_d else None))
    print()
    print("| model | D | fractaldiff s | devinterp s | speed-up | ms / chain-step | "
          "fwd+bwd ms | chain-step / fwd+bwd | MB / chain | λ̂ fractaldiff | λ̂ devinterp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, D, to, td, ratio, pcs, fl, rel, mb, lo, ld) in rows:
        dv = f"{ld[0]:.2f} ± {ld[1]:.2f}" if ld else "n/a"
        print(f"| {name} MLP | {D} | {to:.3f} | {td:.3f} | {ratio:.1f}x | {pcs:.3f} | {fl:.3f} "
              f"| {rel:.2f} | {mb:.3f} | {lo[0]:.2f} ± {lo[1]:.2f} | {dv} |")
    targets = {"digits": 3.0, "moons": 8.0}
    for row in rows:
        if math.isfinite(row[4]):
            ok = "meets" if row[4] >= targets[row[0]] else "MISSES"
            print(f"{row[0]}: {row[4]:.1f}x vs devinterp ({ok} the {targets[row[0]]:g}x target)")


if __name__ == "__main__":
    main()

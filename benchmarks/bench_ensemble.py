"""Ensembles and the posterior comparison: train_ensemble vs a loop of train(), and the time of
the whole SGD-vs-Bayes comparison (paper §4.2) at the default sizes.

    python benchmarks/bench_ensemble.py [--quick] [--threads 1] [--repeat 3]

1. N = 500 two-moons MLPs (2-16-16-2 ReLU, no BatchNorm; and the BatchNorm variant) trained by
   SGD as ONE vmapped computation vs a Python loop of ``fractaldiff.train.train`` calls with the
   same seeds. The loop is timed on a subset of members and scaled to N (it is linear in N);
   the output says so. Correctness is asserted: the subset's final parameters equal the
   ensemble's members.
2. The whole comparison at the default sizes: train_ensemble (N = 500, 1000 steps) +
   cluster_solutions with per-member λ̂ + compare_posterior (SGLD posterior chains, ξ sweep,
   bootstrap) + toy_singular_check; each timed, the tables printed.

Both arms run under the same torch thread count (default 1: tiny kernels, a shared machine);
ratios are medians over ``--repeat`` interleaved repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import fractaldiff.bayes as fb
import fractaldiff.train as ft


def model_fn(batch_norm: bool):
    return lambda s: ft.mlp(2, 2, width=16, depth=2, batch_norm=batch_norm, seed=s)


def bench_training(data, n_models: int, steps: int, subset: int, repeat: int) -> list[dict]:
    rows = []
    for bn in (False, True):
        mf = model_fn(bn)
        kw = dict(lr=0.1, batch_size=32, steps=steps)
        t_ens, t_loop = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ens = ft.train_ensemble(mf, data, n_models, seed=0, **kw)
            t_ens.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            looped = []
            for s in range(subset):
                m = mf(s)
                ft.train(m, data, seed=s, device="cpu", **kw)
                looped.append(m)
            t_loop.append((time.perf_counter() - t0) * n_models / subset)
        err = 0.0
        for i, m in enumerate(looped):
            for k, p in m.named_parameters():
                if bn and k.startswith("fc") and k.endswith("bias"):
                    continue
                err = max(err, float((ens.params[k][i] - p.detach()).abs().max()))
        assert err < 1e-3, f"ensemble and loop disagree: max |Δw| = {err}"
        ratios = [a / b for a, b in zip(t_loop, t_ens)]
        rows.append(dict(model="2-16-16-2" + (" +BN" if bn else ""), n=n_models, steps=steps,
                         ens=statistics.median(t_ens), loop=statistics.median(t_loop),
                         ratio=statistics.median(ratios), spread=(min(ratios), max(ratios)),
                         err=err, subset=subset, acc=float(ens.train_accuracy.mean())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--plot", default=None, help="save the comparison figure here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    repeat = args.repeat or (1 if quick else 3)
    data = ft.two_moons(1000, seed=0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{'quick' if quick else 'full'} run, medians of {repeat} interleaved repeat(s)")

    steps = 100 if quick else 500
    subset = 4 if quick else 10
    rows = bench_training(data, 500, steps, subset, repeat)
    print("\n### train_ensemble vs a loop of train() (two moons, SGD lr 0.1, batch 32)\n")
    print(f"loop timed on {subset} of 500 members and scaled x{500 // subset} (linear in N); "
          "final parameters of those members checked against the ensemble")
    print("\n| model | N | steps | ensemble (s) | loop (s, scaled) | speed-up | range | "
          "max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['n']} | {r['steps']} | {r['ens']:.2f} | {r['loop']:.1f} | "
              f"{r['ratio']:.1f}x | {r['spread'][0]:.1f}-{r['spread'][1]:.1f}x | "
              f"{r['err']:.1e} |")
    if args.skip_compare:
        return

    # --- the whole comparison at the default sizes ---------------------------------------
    n_models = 100 if quick else 500
    ep = 10 if quick else 40
    print(f"\n### whole comparison: N = {n_models}, {ep} epochs "
          f"({ep * 25} steps), default compare_posterior and toy_singular_check\n")
    times = {}
    t0 = time.perf_counter()
    ens = ft.train_ensemble(model_fn(False), data, n_models, lr=0.1, batch_size=32, epochs=ep)
    times["train_ensemble"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kw = dict(sgld_steps=400, sgld_burnin=200, n_bootstrap=100) if quick else {}
        cmp = fb.compare_posterior(ens, seed=0, **kw)
    times["compare_posterior"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    toy = fb.toy_singular_check(**({"n_steps": 8000, "n_chains": 200} if quick else {}))
    times["toy_singular_check"] = time.perf_counter() - t0
    total = sum(times.values())
    print("| stage | seconds |")
    print("|---|---|")
    for k, v in times.items():
        print(f"| {k} | {v:.1f} |")
    print(f"| **total** | **{total:.1f}** |")
    print(f"\ntrain accuracy {ens.train_accuracy.mean():.3f} ± {ens.train_accuracy.std():.3f}, "
          f"test accuracy {ens.test_accuracy.mean():.3f}; {len(caught)} warning(s) during the "
          f"comparison")
    print("\n```")
    print(cmp.table())
    print("```\n\nthe same ensemble and chains re-tempered with m = 1 (P_temp ∝ P_SGD^D):\n")
    print("```")
    lines = cmp.with_m(1).table().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("best ξ"))
    print("\n".join(lines[start:-1]))
    print("```\n\n```")
    print(toy.table())
    print("```")
    if args.plot:
        cmp.plot(args.plot)
        toy.plot(args.plot.replace(".png", "_toy.png"))


if __name__ == "__main__":
    main()

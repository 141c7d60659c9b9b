"""Recording overhead of fractaldiff.train.Recorder and memory of the online accumulators.

Part 1: an MLP (64-256-256-10, ReLU + BatchNorm, D = 86,026) trained with plain SGD on
scikit-learn's digits, batch 64, on the CPU. Blocks of steps without a recorder, with a
recorder snapshotting every step, and every 10 steps are interleaved in random order (the
machine is shared and noisy); one recorder per condition is created before the timed blocks
and kept open (as in a training run), and each block's time includes waiting for it to finish
writing (``flush``). The overhead is (median block time with) / (median block time without) - 1.
Targets: <= 10 % every step, <= 2 % every 10 steps. Correctness is asserted: the
stores hold the steps and parameters they should. A fourth kind of block, "raw write", only
writes the parameters' bytes into a fresh preallocated file with one os.pwritev per step: the
floor for any recorder that keeps every float32 snapshot on disk (in the page cache).

Part 2: memory of the online accumulators for D = 10^6 parameters and 10^4 snapshots, from
the structure sizes, and measured (tracemalloc peak of the live state) for a smaller D.

Usage: python benchmarks/bench_recorder.py [--repeats 15] [--block 40] [--threads 1]
       [--writer auto|thread|sync]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

import fractaldiff as fd
from fractaldiff.train import Recorder, digits, mlp
from fractaldiff.train.online import (
    MultipleTauMSD,
    OnlineAccumulators,
    OnlineBoxIds,
    RunningDisplacement,
)


def overhead(repeats: int, block: int, threads: int, device: str, digits_npz: str | None,
             writer: str = "auto") -> None:
    torch.set_num_threads(threads)
    if digits_npz:  # the same data saved from sklearn, for machines without scikit-learn
        z = np.load(digits_npz)
        xs, ys = z["x_train"], z["y_train"]
    else:
        ds = digits()
        xs, ys = ds.x_train, ds.y_train
    dev = torch.device(device)
    x, y = torch.as_tensor(xs).to(dev), torch.as_tensor(ys).to(dev)
    model = mlp(64, 10, width=256, depth=2, seed=0).to(dev)
    d = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    bs = 64
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def run(n: int, rec: Recorder | None) -> None:
        for _ in range(n):
            idx = torch.randint(0, x.shape[0], (bs,), generator=gen).to(dev)
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if rec is not None:
                rec.step(loss=loss, lr=0.01, epoch=0, batch_size=bs)

    tmp = tempfile.mkdtemp(prefix="bench-recorder-")
    times: dict[str, list[float]] = {"none": [], "every 1": [], "every 10": [], "raw write": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    rng = random.Random(0)
    run(3 * block, None)  # warm up
    # One recorder per condition for the whole run, as in training: its set-up (store creation,
    # the initial snapshot) is not part of any timed block. Each condition's blocks continue its
    # own step count; the steps of the other conditions' blocks are not seen by it.
    paths = {"every 1": os.path.join(tmp, "every1.fdstore"),
             "every 10": os.path.join(tmp, "every10.fdstore")}
    recs: dict[str, object] = {"none": None}
    snapshots: dict[int, np.ndarray] = {}  # every-1 step -> parameters, checked at the end
    try:
        for cond, every in (("every 1", 1), ("every 10", 10)):
            recs[cond] = Recorder(model, paths[cond], every=every, **WRITERS[writer])
            recs[cond].flush()
        recs["raw write"] = RawWrite(model, os.path.join(tmp, "raw"), repeats * block + 1)
        for _ in range(repeats):
            conds = list(times)
            rng.shuffle(conds)
            for cond in conds:
                rec = recs[cond]
                sync()
                t0 = time.perf_counter()
                c0 = time.process_time()
                run(block, rec)
                if rec is not None:
                    rec.flush()
                sync()
                times[cond].append(time.perf_counter() - t0)
                cpu[cond].append(time.process_time() - c0)
                if cond == "every 1":  # untimed: the parameters of the step just recorded
                    snapshots[rec.step_count] = torch.cat(
                        [p.detach().reshape(-1) for p in model.parameters()]).cpu().numpy()
        n_steps = repeats * block
        for cond, every in (("every 1", 1), ("every 10", 10)):
            recs[cond].close()
            with fd.open_store(paths[cond]) as s:  # the benchmark asserts correctness
                want = list(range(0, n_steps + 1, every))
                assert list(s.steps) == want, (list(s.steps)[:5], want[:5])
                if every == 1:
                    for step, row in snapshots.items():
                        assert np.array_equal(s[step], row), step
    finally:
        for rec in recs.values():
            if rec is not None:
                rec.close()
        shutil.rmtree(tmp, ignore_errors=True)
    base = statistics.median(times["none"])
    cbase = statistics.median(cpu["none"])
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(f"MLP 64-256-256-10 + BatchNorm on digits, D = {d:,}, batch {bs}, plain SGD, "
          f"{name}, torch threads = {threads}, os.cpu_count() = {os.cpu_count()}, load "
          f"average {os.getloadavg()[0]:.1f}")
    used = "direct" if rec_direct(model) and writer == "auto" else writer
    print(f"writer: {WRITER_NAMES[used]}, sys.getswitchinterval() = "
          f"{sys.getswitchinterval() * 1e3:g} ms")
    print(f"{repeats} interleaved repeats of {block}-step blocks; medians. Wall: the overhead "
          f"the loop sees; CPU: process CPU time (all threads) per step")
    print(f"{'recording':<12} {'wall/step':>11} {'overhead':>9}  {'target':>7}  met  "
          f"{'CPU/step':>11} {'CPU overhead':>12}")
    print(f"{'none':<12} {base / block * 1e3:>8.3f} ms {'':>9}  {'':>7}  {'':>3}  "
          f"{cbase / block * 1e3:>8.3f} ms")
    for cond, target in (("every 1", 0.10), ("every 10", 0.02)):
        med = statistics.median(times[cond])
        cmed = statistics.median(cpu[cond])
        ov = med / base - 1
        print(f"{cond:<12} {med / block * 1e3:>8.3f} ms {ov * 100:>8.1f} %  "
              f"{target * 100:>5.0f} %  {'yes' if ov <= target else 'NO ':<3}  "
              f"{cmed / block * 1e3:>8.3f} ms {(cmed / cbase - 1) * 100:>10.1f} %")
    med = statistics.median(times["raw write"])
    cmed = statistics.median(cpu["raw write"])
    print(f"{'raw write':<12} {med / block * 1e3:>8.3f} ms {(med / base - 1) * 100:>8.1f} %  "
          f"{'':>7}  {'':<3}  {cmed / block * 1e3:>8.3f} ms {(cmed / cbase - 1) * 100:>10.1f} %"
          f"   (floor: os.pwritev of the parameters to a fresh preallocated file every step, "
          f"no checksum, no metadata)")
    spread = {k: (min(v) / block * 1e3, max(v) / block * 1e3) for k, v in times.items()}
    print("per-step time range over blocks (ms): "
          + ", ".join(f"{k} {lo:.3f}..{hi:.3f}" for k, (lo, hi) in spread.items()))


class RawWrite:
    """The floor of every-step recording: the parameters' bytes written with one
    ``os.pwritev`` per step into a fresh, preallocated file (page cache), nothing else."""

    def __init__(self, model: torch.nn.Module, path: str, n_rows: int) -> None:
        self.parts = [p.detach().numpy().reshape(-1) for p in model.parameters()]
        self.row = sum(p.nbytes for p in self.parts)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.posix_fallocate(self.fd, 0, n_rows * self.row)
        self.path, self.t = path, 0

    def step(self, **_: object) -> None:
        os.pwritev(self.fd, self.parts, self.t * self.row)
        self.t += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            os.unlink(self.path)
            self.fd = None


#: --writer choices -> Recorder arguments
WRITERS = {
    "auto": {},
    "thread": {"direct": False, "background": True},
    "sync": {"direct": False, "background": False},
}
WRITER_NAMES = {
    "direct": "direct (one compiled call per snapshot, from the parameters' memory)",
    "auto": "default",
    "thread": "copy + compiled background writer thread (direct=False)",
    "sync": "copy + synchronous append (direct=False, background=False)",
}


def rec_direct(model: torch.nn.Module) -> bool:
    """Whether a default Recorder on this model writes directly."""
    tmp = tempfile.mkdtemp(prefix="bench-recorder-probe-")
    try:
        with Recorder(model, os.path.join(tmp, "p.fdstore"), record_initial=False) as rec:
            return rec._direct
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def memory() -> None:
    D, T = 10**6, 10**4
    print(f"\nOnline accumulators, D = {D:,} parameters, T = {T:,} snapshots "
          f"(from the structure sizes)")
    print(f"{'accumulator':<52} {'levels':>6} {'memory':>12}")
    for p, m, coarsening, dt in ((16, 2, "sample", "float64"), (16, 2, "sample", "float32"),
                                 (16, 4, "sample", "float32"), (8, 2, "mean", "float32")):
        lv = MultipleTauMSD.n_levels_for(T, p, m, coarsening)
        mem = MultipleTauMSD.memory_bytes(D, T, p, m, coarsening, dt)
        name = f"MultipleTauMSD(block_size={p}, factor={m}, {coarsening}, {dt})"
        print(f"{name:<52} {lv:>6} {mib(mem):>12}")
    print(f"{'RunningDisplacement':<52} {'':>6} {mib(RunningDisplacement.memory_bytes(D, T)):>12}")
    print(f"{'OnlineBoxIds(n_scales=16)':<52} {'':>6} "
          f"{mib(OnlineBoxIds.memory_bytes(D, T, 16)):>12}")
    print(f"(for comparison: the snapshots themselves, float32: {T * D * 4 / 2**30:,.1f} GiB)")

    d, t = 20_000, 3_000
    print(f"\nMeasured, D = {d:,}, T = {t:,} (tracemalloc peak while updating, default "
          f"OnlineAccumulators + box ids)")
    rng = np.random.default_rng(0)
    x = rng.normal(size=d).astype(np.float32)
    steps = rng.normal(scale=1e-3, size=(64, d)).astype(np.float32)
    tracemalloc.start()
    acc = OnlineAccumulators(d, box_eps0=1e-4)
    t0 = time.perf_counter()
    for i in range(t):
        x = x + steps[i % 64]
        acc.update(x, step=i)
    el = time.perf_counter() - t0
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    state = (MultipleTauMSD.memory_bytes(d, t, 16, 2, "sample", "float64")
             + RunningDisplacement.memory_bytes(d, t)
             + OnlineBoxIds.memory_bytes(d, t, 16))
    print(f"predicted state {mib(state)}; held (nbytes) {mib(acc.nbytes)}; traced now "
          f"{mib(cur)}, peak {mib(peak)} (peak includes per-update temporaries); "
          f"{el / t * 1e3:.2f} ms per update; MSD levels {acc.msd.n_levels}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--block", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--digits-npz", default=None,
                    help="digits saved as x_train/y_train (for machines without sklearn)")
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--writer", choices=sorted(WRITERS), default="auto",
                    help="auto: the Recorder's default (direct writes on the CPU); thread: "
                         "direct=False (copy + compiled writer thread); sync: direct=False, "
                         "background=False")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval(seconds) before measuring (diagnostics)")
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}")
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if not args.skip_overhead:
        overhead(args.repeats, args.block, args.threads, args.device, args.digits_npz,
                 args.writer)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()

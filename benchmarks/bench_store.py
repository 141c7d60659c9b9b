"""Out-of-core analysis and snapshot writing, measured in one run.

1. MSD of a T x D float32 trajectory (default T = 4096, D = 500 000: 8 GB) stored as a `.npy` file
   and as a SnapshotStore, page cache warm, memory_limit = 256 MB, against the in-memory time on
   the same data; peak anonymous memory (RssAnon) of each run. Also the store read through
   copied, streamed column blocks (the path used by sources that cannot be memory-mapped).
2. Appending snapshots of D = 10**6 float32 to a SnapshotStore against np.save of the same bytes.

Needs about 2.2 x the data size free on disk (default 18 GB) and RAM for one in-memory copy.
Run:  python benchmarks/bench_store.py [--T 4096] [--D 500000] [--dir PATH] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import fractaldiff as fd  # noqa: E402

from _common import timeit, weight_like  # noqa: E402


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_anon_during(fn) -> tuple[object, int]:
    """Run fn(); return its result and the peak growth of RssAnon (sampled every 2 ms)."""
    base = rss_anon()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out = fn()
    finally:
        done.set()
        th.join()
    return out, peak[0] - base


def bench_msd(root: str, T: int, D: int, repeat: int) -> None:
    gb = T * D * 4 / 1e9
    print(f"\n## out-of-core MSD: T={T}, D={D} float32 ({gb:.1f} GB), memory_limit=256 MB")
    npy = os.path.join(root, "w.npy")
    t0 = time.perf_counter()
    mm = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(T, D))
    weight_like(T, D, 1e-3, seed=0, out=mm)
    mm.flush()
    store_path = os.path.join(root, "w.fdstore")
    with fd.SnapshotStore.create(store_path, n_params=D, dtype="float32") as st:
        for t in range(T):
            st.append(mm[t], step=t)
    del mm
    print(f"(wrote both copies in {time.perf_counter() - t0:.0f} s)")
    limit = 256 * 2**20

    in_memory = [np.load(npy)]  # the in-memory copy (anonymous memory), dropped below
    t_mem, _ = timeit(lambda: fd.msd(in_memory[0]), repeat=repeat)
    ref = fd.msd(in_memory[0])
    in_memory.clear()

    rows = [("in memory (numpy array)", t_mem, None, 0.0)]
    fd.msd(npy, memory_limit=limit)  # warm the page cache
    t_npy, _ = timeit(lambda: fd.msd(npy, memory_limit=limit), repeat=repeat, warmup=0)
    got, peak = peak_anon_during(lambda: fd.msd(npy, memory_limit=limit))
    rows.append((".npy file (memory-mapped)", t_npy, peak, float(np.max(np.abs(got - ref) /
                                                                        np.maximum(ref, 1e-300)))))
    store = fd.open_store(store_path)
    fd.msd(store, memory_limit=limit)
    t_st, _ = timeit(lambda: fd.msd(store, memory_limit=limit), repeat=repeat, warmup=0)
    got, peak = peak_anon_during(lambda: fd.msd(store, memory_limit=limit))
    rows.append(("SnapshotStore (memory-mapped)", t_st, peak,
                 float(np.max(np.abs(got - ref) / np.maximum(ref, 1e-300)))))
    streamed = fd.SlicedSource(store, name="store")  # copies column blocks, read-ahead thread
    t_str, _ = timeit(lambda: fd.msd(streamed, memory_limit=limit), repeat=repeat, warmup=1)
    got, peak = peak_anon_during(lambda: fd.msd(streamed, memory_limit=limit))
    rows.append(("SnapshotStore (streamed copies)", t_str, peak,
                 float(np.max(np.abs(got - ref) / np.maximum(ref, 1e-300)))))
    store.close()

    print("\n| source | median time (s) | / in-memory | peak RssAnon growth (MB) | max rel diff |")
    print("|---|---:|---:|---:|---:|")
    for name, t, peak, diff in rows:
        pk = "-" if peak is None else f"{peak / 2**20:.0f}"
        print(f"| {name} | {t:.2f} | {t / t_mem:.2f}x | {pk} | {diff:.1e} |")
    bound = (limit + 256 * 2**20) / 2**20
    for name, t, peak, _ in rows[1:]:
        ok_t = "MET" if t / t_mem <= 1.3 else "MISSED"
        ok_m = "MET" if peak <= limit + 256 * 2**20 else "MISSED"
        print(f"CONTRACT {name}: time <= 1.3x in-memory {ok_t} ({t / t_mem:.2f}x); "
              f"RssAnon <= {bound:.0f} MB {ok_m} ({peak / 2**20:.0f} MB)")


def bench_write(root: str, D: int, n: int, repeat: int) -> None:
    print(f"\n## writing: {n} snapshots of D={D} float32 ({n * D * 4 / 1e9:.2f} GB)")
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((n, D), dtype=np.float32)

    counter = iter(range(10**6))

    def fresh(name: str) -> str:
        """A new path per run; old runs are deleted outside the timed region."""
        for old in os.listdir(root):
            if old.startswith(("save-", "append-")):
                p = os.path.join(root, old)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        return os.path.join(root, f"{name}-{next(counter)}")

    def timed(make_path, write) -> float:
        times = []
        for _ in range(repeat + 1):  # first run is a warm-up
            path = make_path()
            t0 = time.perf_counter()
            write(path)
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:]))

    def save(path):
        np.save(path + ".npy", rows)

    def save_fsync(path):
        with open(path + ".npy", "wb") as f:
            np.save(f, rows)
            f.flush()
            os.fsync(f.fileno())

    def append_loop_time() -> float:
        """Time of the appends alone; the store is then closed (fsync) outside the timing."""
        times = []
        for _ in range(repeat + 1):
            st = fd.SnapshotStore.create(fresh("append"), n_params=D, dtype="float32")
            t0 = time.perf_counter()
            for t in range(n):
                st.append(rows[t], step=t, loss=0.5)
            times.append(time.perf_counter() - t0)
            st.close()
        return float(np.median(times[1:]))

    def append_close(path):
        with fd.SnapshotStore.create(path, n_params=D, dtype="float32") as st:
            for t in range(n):
                st.append(rows[t], step=t, loss=0.5)

    t_save = timed(lambda: fresh("save"), save)
    t_app = append_loop_time()
    t_save_sync = timed(lambda: fresh("save"), save_fsync)
    t_app_close = timed(lambda: fresh("append"), append_close)
    gbps = rows.nbytes / 1e9
    print("| writer | median time (s) | GB/s |")
    print("|---|---:|---:|")
    print(f"| np.save | {t_save:.3f} | {gbps / t_save:.2f} |")
    print(f"| SnapshotStore.append x {n} (sustained appends) | {t_app:.3f} | {gbps / t_app:.2f} |")
    print(f"| np.save + fsync | {t_save_sync:.3f} | {gbps / t_save_sync:.2f} |")
    print(f"| SnapshotStore appends + close (fsync) | {t_app_close:.3f} | "
          f"{gbps / t_app_close:.2f} |")
    ratio = t_save / t_app
    print(f"CONTRACT sustained append throughput >= 70% of np.save: {100 * ratio:.0f}% "
          f"{'MET' if ratio >= 0.7 else 'MISSED'}")
    print(f"(durable on both sides: appends + close vs np.save + fsync: "
          f"{100 * t_save_sync / t_app_close:.0f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--D", type=int, default=500_000)
    ap.add_argument("--write-D", type=int, default=1_000_000)
    ap.add_argument("--write-n", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--skip-msd", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the scratch files")
    args = ap.parse_args()
    info = fd.build_info()
    print(f"fractaldiff {info['version']}  simd={info['simd']}  threads={info['n_threads']}")
    root = tempfile.mkdtemp(prefix="fd-bench-", dir=args.dir)
    try:
        bench_write(root, args.write_D, args.write_n, args.repeat)
        if not args.skip_msd:
            bench_msd(root, args.T, args.D, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

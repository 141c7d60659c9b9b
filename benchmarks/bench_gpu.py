"""GPU benchmark (targets), ratios measured in one run on one card.

1. Ceilings of this card: a large device-to-device copy (bytes read + written per second) and a
   host-to-device copy from pinned memory.
2. All-lag MSD of a GPU-resident weight-like float32 array, T=4096 x D=2^20 (16 GiB):
   effective bandwidth (bytes of X / time) against the copy bandwidth; speed against the same
   algorithm written with torch.fft on the same GPU (centre, rfft, summed power, one irfft), in
   float32 (what a user would write for float32 data) and in float64; accuracy of all three on
   the issue-2 workload (T=4096, step 1e-5) against an exact float64 direct reference.
3. The same MSD from pinned host memory (default D=2^18, 4 GiB) against the H2D bandwidth.
4. Box counting with 16 scales of the same GPU-resident array: the box-id pass (one read of X)
   against the copy bandwidth; its ids are checked bit for bit against the CPU kernel on a
   column slice; the whole box_counts call (min/max pass, id pass, counting) as context.
5. Pairwise squared distances of a GPU-resident weight-like float32 array (T=4096, default
   D=2^18): the centred-Gram fold against torch.matmul(X, X.T) in float32 with TF32 off on the
   same data, and the largest relative error of the distances against a float64 reference
   (torch float64 on the device), next to torch's float32 error.

Prints one table; --out writes the numbers as JSON. Correctness is asserted, not assumed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

import fractaldiff as fd
from fractaldiff import _core

sys.path.insert(0, __file__.rsplit("/", 2)[0] + "/tests")
from reference import msd_direct, weight_like  # noqa: E402


def timed(fn, repeat=3, warmup=1):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def event_time(fn, repeat=5):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(repeat):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    return statistics.median(ts)


def copy_bandwidth(nbytes=4 << 30):
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    t = event_time(lambda: dst.copy_(src))
    return 2 * nbytes / t  # read + write


def h2d_bandwidth(nbytes=2 << 30):
    host = torch.empty(nbytes // 4, dtype=torch.float32).pin_memory()
    host.uniform_()
    dev = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    t = event_time(lambda: dev.copy_(host, non_blocking=True))
    return nbytes / t


def torch_fft_msd(X, dtype, chunk=1 << 16):
    """The same algorithm with torch.fft: centre, rfft, summed power, one irfft (column chunks
    so that the spectra fit in memory)."""
    T, D = X.shape
    n = 1 << (2 * T - 1).bit_length()
    power = torch.zeros(n // 2 + 1, dtype=torch.float64, device=X.device)
    sq = torch.zeros(T, dtype=torch.float64, device=X.device)
    for a in range(0, D, chunk):
        x = X[:, a:a + chunk].to(dtype)
        x = x - x[0]
        x = x - x.mean(0)
        f = torch.fft.rfft(x, n=n, dim=0)
        power += (f.real.square() + f.imag.square()).sum(1, dtype=torch.float64)
        sq += x.square().sum(1, dtype=torch.float64)
    s2 = torch.fft.irfft(power, n=n)[:T]
    csum = torch.cat([torch.zeros(1, dtype=torch.float64, device=X.device), torch.cumsum(sq, 0)])
    tau = torch.arange(T, device=X.device)
    out = (csum[T - tau] + (csum[T] - csum[tau]) - 2.0 * s2) / (T - tau)
    out[0] = 0.0
    return out.clamp_min(0.0).cpu().numpy()


def box_counting(X, args):
    """Time the 16-scale box-id pass over the GPU-resident X (one read of X) and the whole
    box_counts call; check the ids bit for bit against the CPU kernel on a column slice."""
    from fractaldiff.engine.accumulators import grid_offsets, key_seed

    T, D = X.shape
    n_scales = 16
    lo = X.amin(0).double()
    span = float((X.amax(0).double() - lo).max())
    eps0 = span / 2.0**20
    mins = lo.cpu().numpy()
    origin = mins - grid_offsets(np.arange(D), eps0 * 2.0 ** (n_scales - 1), 0, 0)
    ks = key_seed(0, 0)
    fold = _core.GpuBoxIdsFold(device=0, n_rows=T, n_scales=n_scales, key_seed=ks,
                                eps0=eps0, memory_limit=1 << 30)
    ids = np.zeros((T, n_scales, 2), dtype=np.uint64)

    def run(cols=D):
        fold.set_block(0, origin[:cols])
        fold.fold_device(X.data_ptr(), "float32", T, cols, X.stride(0), X.stride(1))
        ids[...] = 0
        assert fold.finish(ids) == _core.STATUS_OK

    t_box = timed(run)
    print("box ids", t_box, "s", X.numel() * 4 / t_box / 1e12, "TB/s", flush=True)
    # bit for bit against the CPU kernel on the first 8192 columns
    cols = min(8192, D)
    run(cols)
    cpu = np.zeros_like(ids)
    host = np.ascontiguousarray(X[:, :cols].cpu().numpy())
    assert _core.fold_box_ids(host, 0, origin[:cols], eps0, n_scales, ks, cpu) == _core.STATUS_OK
    equal = bool(np.array_equal(ids, cpu))
    t_all = timed(lambda: fd.box_counts(X, n_scales=n_scales), repeat=1)
    return {"t_box": t_box, "t_box_all": t_all, "box_ids_equal": equal}


def pairwise(args):
    """Gram fold vs torch.matmul float32 (TF32 off) on the same weight-like data; accuracy of
    the distances against a float64 reference."""
    T, D = args.T, 1 << args.log2_D_pair
    X = weight_like_gpu(T, D, 1e-3, seed=4)
    torch.backends.cuda.matmul.allow_tf32 = False
    t_mm = timed(lambda: torch.matmul(X, X.T), repeat=args.repeat)
    fold = _core.GpuGramFold(device=0, n_rows=T, memory_limit=1 << 30)
    G = np.zeros((T, T))

    def gram():
        fold.fold_device(X.data_ptr(), "float32", T, D, X.stride(0), X.stride(1))
        fold.synchronize()

    t_gram = timed(gram, repeat=args.repeat)
    fold.finish(G)  # drop the timed runs' sums
    t_all = timed(lambda: fd.pairwise_sqdist(X), repeat=1)
    ours = fd.pairwise_sqdist(X)
    # float64 reference on the device, centred like the kernel (exact algebra, float64 rounding)
    Xd = X.double()
    Xd -= Xd.mean(0)
    Gd = Xd @ Xd.T
    del Xd
    dg = Gd.diagonal()
    ref = (dg[:, None] + dg[None, :] - 2.0 * Gd).clamp_min(0.0).cpu().numpy()
    Xc = X - X.mean(0)
    G32 = (Xc @ Xc.T).double()
    d32 = G32.diagonal()
    t32 = (d32[:, None] + d32[None, :] - 2.0 * G32).clamp_min(0.0).cpu().numpy()
    off = ~np.eye(T, dtype=bool)
    err = float(np.max(np.abs(ours - ref)[off] / ref[off]))
    err32 = float(np.max(np.abs(t32 - ref)[off] / ref[off]))
    print("pairwise", {"t_gram": t_gram, "t_mm32": t_mm, "err": err, "err32": err32}, flush=True)
    return {"t_gram": t_gram, "t_mm32": t_mm, "t_pair_all": t_all, "err_pair": err,
            "err_pair_torch32": err32}


def weight_like_gpu(T, D, step, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    X = torch.randn(T, D, device="cuda", generator=g).mul_(step)
    X.cumsum_(0)
    X += torch.randn(D, device="cuda", generator=g)
    return X


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--log2-D", type=int, default=20)
    ap.add_argument("--log2-D-host", type=int, default=18)
    ap.add_argument("--log2-D-pair", type=int, default=18)
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each torch baseline")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    card = _core.cuda_device_name(0)
    res = {"card": card, "torch": torch.__version__}

    res["copy_Bps"] = copy_bandwidth()
    res["h2d_Bps"] = h2d_bandwidth()
    print("ceilings", {k: res[k] for k in ("card", "copy_Bps", "h2d_Bps")}, flush=True)

    # ---- accuracy on the issue-2 workload (hardest step 1e-5), on the host reference -------
    A = weight_like(args.T, 1024, 1e-5, seed=1)
    lags = np.unique(np.concatenate([np.arange(49), np.geomspace(49, args.T - 1, 60).astype(int)]))
    ref = msd_direct(A, lags)
    At = torch.from_numpy(A).cuda()

    def err(m):
        return float(np.max(np.abs(m[lags[1:]] - ref[1:]) / ref[1:]))

    ours_a = fd.msd(At)
    assert ours_a[0] == 0.0 and np.all(ours_a >= 0)
    res["err_ours"] = err(ours_a)
    res["err_torch32"] = err(torch_fft_msd(At, torch.float32))
    res["err_torch64"] = err(torch_fft_msd(At, torch.float64))
    res["err_cpu"] = err(fd.msd(A, device="cpu"))
    print("accuracy", {k: v for k, v in res.items() if k.startswith("err")}, flush=True)
    del At

    # ---- GPU-resident MSD --------------------------------------------------------------------
    D = 1 << args.log2_D
    X = weight_like_gpu(args.T, D, 1e-3, seed=2)
    nbytes = X.numel() * 4
    m_ours = fd.msd(X)
    t_ours = timed(lambda x=X: fd.msd(x))
    print("resident ours", t_ours, "s", nbytes / t_ours / 1e12, "TB/s", flush=True)
    t_t32 = timed(lambda x=X: torch_fft_msd(x, torch.float32), repeat=args.repeat)
    t_t64 = timed(lambda x=X: torch_fft_msd(x, torch.float64), repeat=args.repeat)
    m_t64 = torch_fft_msd(X, torch.float64)
    # the big run agrees with the float64 torch version (itself ~1e-9 here)
    res["agree_big_vs_torch64"] = float(np.max(np.abs(m_ours[1:] - m_t64[1:]) / m_t64[1:]))
    res.update(t_ours=t_ours, t_torch32=t_t32, t_torch64=t_t64, nbytes=nbytes)
    print("resident", {k: res[k] for k in ("t_ours", "t_torch32", "t_torch64",
                                           "agree_big_vs_torch64")}, flush=True)
    # ---- box counting, 16 scales, same array: the id pass -------------------------------------
    res.update(box_counting(X, args))
    del X
    torch.cuda.empty_cache()

    # ---- pairwise squared distances ------------------------------------------------------------
    res.update(pairwise(args))
    torch.cuda.empty_cache()

    # ---- from pinned host memory ---------------------------------------------------------------
    Dh = 1 << args.log2_D_host
    Xh = weight_like_gpu(args.T, Dh, 1e-3, seed=3).cpu().pin_memory()
    hb = Xh.numel() * 4
    mh = fd.msd(Xh, device="cuda", memory_limit="2GB")
    t_host = timed(lambda: fd.msd(Xh, device="cuda", memory_limit="2GB"), repeat=3)
    sub = Xh[:, :2048].numpy()
    res["agree_host_vs_cpu"] = float(np.max(np.abs(
        fd.msd(torch.from_numpy(sub).pin_memory(), device="cuda")[1:] - fd.msd(sub)[1:])
        / fd.msd(sub)[1:]))
    assert np.all(mh >= 0)
    res.update(t_host=t_host, host_nbytes=hb)

    # ---- table ---------------------------------------------------------------------------------
    eff = nbytes / t_ours
    effh = hb / t_host
    rows = [
        ("card", card, "", ""),
        ("ceiling: D2D copy (read+write)", f"{res['copy_Bps'] / 1e12:.2f} TB/s", "", ""),
        ("ceiling: H2D from pinned", f"{res['h2d_Bps'] / 1e9:.1f} GB/s", "", ""),
        (f"MSD GPU-resident T={args.T} D=2^{args.log2_D} f32",
         f"{t_ours * 1e3:.1f} ms, {eff / 1e12:.2f} TB/s",
         f"{100 * eff / res['copy_Bps']:.0f}% of copy", ">=30%"),
        ("  vs torch.fft float32 (same algorithm)", f"{t_t32 * 1e3:.1f} ms",
         f"{t_t32 / t_ours:.2f}x faster", ">=1.5x"),
        ("  vs torch.fft float64 (same algorithm)", f"{t_t64 * 1e3:.1f} ms",
         f"{t_t64 / t_ours:.2f}x faster", ""),
        ("accuracy T=4096 step 1e-5: ours", f"{res['err_ours']:.1e}", "max rel err", "<=1e-6"),
        ("  torch.fft f32 / f64 / CPU kernel",
         f"{res['err_torch32']:.1e} / {res['err_torch64']:.1e} / {res['err_cpu']:.1e}", "", ""),
        (f"MSD from pinned host T={args.T} D=2^{args.log2_D_host} f32",
         f"{t_host * 1e3:.0f} ms, {effh / 1e9:.1f} GB/s",
         f"{100 * effh / res['h2d_Bps']:.0f}% of H2D", ">=70%"),
        ("big-run agreement vs torch f64 / host vs CPU",
         f"{res['agree_big_vs_torch64']:.1e} / {res['agree_host_vs_cpu']:.1e}", "", ""),
        (f"box ids GPU-resident T={args.T} D=2^{args.log2_D} f32, 16 scales",
         f"{res['t_box'] * 1e3:.1f} ms, {nbytes / res['t_box'] / 1e12:.2f} TB/s",
         f"{100 * nbytes / res['t_box'] / res['copy_Bps']:.0f}% of copy", ">=50%"),
        ("  box_counts end-to-end (min/max, ids, counting)", f"{res['t_box_all'] * 1e3:.0f} ms",
         "ids == CPU" if res["box_ids_equal"] else "ids DIFFER", ""),
        (f"pairwise T={args.T} D=2^{args.log2_D_pair} f32: Gram fold",
         f"{res['t_gram'] * 1e3:.0f} ms", f"{res['t_mm32'] / res['t_gram']:.2f}x torch f32",
         ">=0.5x"),
        ("  torch.matmul f32 (TF32 off) / pairwise_sqdist",
         f"{res['t_mm32'] * 1e3:.0f} ms / {res['t_pair_all'] * 1e3:.0f} ms", "", ""),
        ("  distances vs float64: ours / torch f32",
         f"{res['err_pair']:.1e} / {res['err_pair_torch32']:.1e}", "max rel err", "<=1e-9"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    print("\n== fractaldiff GPU benchmark ==")
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    assert res["err_ours"] <= 1e-6, res["err_ours"]
    assert res["box_ids_equal"], "GPU box ids differ from the CPU kernel's"
    assert res["err_pair"] <= 1e-9, res["err_pair"]


if __name__ == "__main__":
    main()

"""Where the time of `fractaldiff run` goes: stage timings and a cProfile of one run.

    python benchmarks/profile_run.py [--quick] [--out DIR] [--top 25] [CONFIG]

Runs the main job in this process with one job (so the profile sees every training run),
prints the per-stage and per-run timings from results.json and the functions with the largest
cumulative time. On a shared machine absolute times are inflated; the shares are what matter.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import tempfile
import time
from pathlib import Path

from fractaldiff.cli import main


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="fd-profile-"))
    if out.exists():
        shutil.rmtree(out)
    cmd = ["run", "--out", str(out), "--no-progress", "--jobs", "1"]
    if args.quick:
        cmd.append("--quick")
    if args.config:
        cmd.insert(1, args.config)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    code = main(cmd)
    prof.disable()
    wall = time.perf_counter() - t0
    res = json.loads((out / "results.json").read_text())
    print(f"exit code {code}, wall {wall:.1f} s, output {out}")
    print("\nstages (s):")
    for k, v in res["timings"]["stages"].items():
        print(f"  {k:45s} {v:8.1f}")
    print("\nper run (s):")
    parts: dict[str, float] = {}
    for name, u in res["timings"]["units"].items():
        extra = {k: v for k, v in u.items() if k not in ("seconds", "cached")}
        print(f"  {name:32s} {u['seconds'] or 0:7.1f}  " +
              ", ".join(f"{k} {v:.1f}" for k, v in extra.items()))
        for k, v in extra.items():
            key = "train" if k.startswith("train") else k
            parts[key] = parts.get(key, 0.0) + v
    total = sum(parts.values()) or 1.0
    print("\nshare of the training runs' time:")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {k:12s} {v:8.1f} s  {100 * v / total:5.1f} %")
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(args.top)
    print("\n" + s.getvalue())


if __name__ == "__main__":
    run()

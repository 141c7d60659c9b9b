"""Command line: ``fractaldiff run`` (the main job), ``fractaldiff info``."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_run(args: argparse.Namespace) -> int:
    if args.config is not None:
        print(
            "fractaldiff run: experiment config files are not supported by this version; run "
            "without CONFIG for the built-in demo",
            file=sys.stderr,
        )
        return 2
    from .demo import run_demo

    run_demo(args.snapshots, args.params, step=args.step, seed=args.seed,
             n_threads=args.threads, plot=args.plot)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fractaldiff`` command."""
    parser = argparse.ArgumentParser(
        prog="fractaldiff",
        description="Measure how neural-network weights diffuse during training.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the main job (now: the built-in random-walk demo)")
    run.add_argument("config", nargs="?", default=None, help="experiment config (not yet)")
    run.add_argument("--snapshots", type=int, default=2048, help="T (default 2048)")
    run.add_argument("--params", type=int, default=20_000, help="D (default 20000)")
    run.add_argument("--step", type=float, default=1e-3, help="step size per parameter")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--threads", type=int, default=None, help="kernel threads")
    run.add_argument("--plot", default=None, metavar="PNG", help="save a log-log MSD plot")
    run.set_defaults(func=_cmd_run)

    info = sub.add_parser("info", help="print build information (paste it into bug reports)")
    info.set_defaults(func=_cmd_info)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"fractaldiff {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line (argument parsing only; the work is in :mod:`fractaldiff.pipeline`).

``fractaldiff run [CONFIG]``, ``fractaldiff analyze RUN``, ``fractaldiff report RESULTS_DIR``,
``fractaldiff info``. Bad input exits with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .pipeline.errors import PipelineError


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import load_config
    from .pipeline.config import DEFAULT_TOML, to_toml

    if args.print_config:
        if args.config is None and not args.quick:
            print(DEFAULT_TOML, end="")
        else:
            print(to_toml(load_config(args.config, quick=args.quick)), end="")
        return 0
    cfg = load_config(args.config, quick=args.quick)
    from .pipeline import run_pipeline

    out = args.out or ("fractaldiff-quick" if args.quick else "fractaldiff-results")
    jobs = args.jobs if args.jobs is not None else max(1, min(4, os.cpu_count() or 1))
    path = run_pipeline(cfg, out, jobs=jobs, resume=args.resume, force=args.force,
                        progress=not args.no_progress)
    print(path)
    failed = json.loads((path.parent / "results.json").read_text(encoding="utf-8"))["errors"]
    if failed:
        print(f"fractaldiff run: {len(failed)} run(s) failed (shown in the report; rerun the "
              f"same command to retry them): {', '.join(sorted(failed))}", file=sys.stderr)
        return 1
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from .pipeline import analyze_run

    if (args.model is None) != (args.data is None):
        raise PipelineError("give both --model and --data (or neither)")
    path = analyze_run(args.run, args.out, model=args.model, data=args.data, loss=args.loss,
                       late_window=args.late_window, force=args.force)
    print(path)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    print(render_report(args.results_dir, figures=True))
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from . import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def _late_window(text: str) -> object:
    if text == "auto":
        return "auto"
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--late-window must be 'auto' or 'LO,HI' (fractions of the run), got {text!r}"
        ) from None
    if not 0 <= lo < hi <= 1:
        raise argparse.ArgumentTypeError(f"--late-window needs 0 <= LO < HI <= 1, got {text!r}")
    return [lo, hi]


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fractaldiff",
        description="Measure how neural-network weights diffuse during training, and reproduce "
                    "'Almost Bayesian' (Hennick & De Baerdemacker) end to end.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train, record, analyse and write the report (the main job)")
    run.add_argument("config", nargs="?", default=None,
                     help="TOML config (default: the built-in one; see --print-config)")
    run.add_argument("--out", default=None,
                     help="output folder (default ./fractaldiff-results, or ./fractaldiff-quick)")
    run.add_argument("--quick", action="store_true",
                     help="reduced sizes: everything in about a minute")
    run.add_argument("--jobs", type=_positive_int, default=None,
                     help="parallel training processes (default: the CPU count, at most 4)")
    g = run.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="reuse finished runs of an output folder made with another config")
    g.add_argument("--force", action="store_true",
                   help="delete the output folder's results and start over")
    run.add_argument("--print-config", action="store_true",
                     help="print the (default or resolved) config as TOML and exit")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_cmd_run)

    an = sub.add_parser("analyze", help="analyse a recorded run (store, checkpoint folder, .npy)")
    an.add_argument("run", help="the recorded trajectory")
    an.add_argument("--out", default=None, help="output folder (default RUN.report)")
    an.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                    help="callable returning the torch model of the run (enables the LLC)")
    an.add_argument("--data", default=None, metavar="MODULE:FACTORY",
                    help="callable returning the training data (x, y) or a Dataset")
    an.add_argument("--loss", default="cross_entropy", choices=("cross_entropy", "mse"),
                    help="the model's loss for the LLC (default cross_entropy)")
    an.add_argument("--late-window", type=_late_window, default="auto",
                    help="'auto' (last regime of R(t)) or 'LO,HI' fractions of the run")
    an.add_argument("--force", action="store_true", help="overwrite an existing output folder")
    an.set_defaults(func=_cmd_analyze)

    rep = sub.add_parser("report", help="rebuild the report from saved results (no recomputing)")
    rep.add_argument("results_dir", help="folder with results.json")
    rep.set_defaults(func=_cmd_report)

    info = sub.add_parser("info", help="print build information (paste it into bug reports)")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fractaldiff`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except PipelineError as exc:
        print(f"fractaldiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover
        print(f"fractaldiff {args.command}: interrupted; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Jinja2 + matplotlib rendering of results.json (see :func:`render_report`)."""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["render_report", "fmt"]


def fmt(d: Any, digits: int = 3) -> str:
    """``value ± stderr`` of a result entry (or a plain number); "n/a" when missing."""
    if d is None:
        return "n/a"
    if isinstance(d, (int, float)):
        return "n/a" if not math.isfinite(d) else f"{d:.{digits}g}"
    if not isinstance(d, dict) or d.get("value") is None:
        return "n/a"
    v = d["value"]
    se = d.get("stderr")
    if se is None and d.get("ci") and None not in d["ci"]:
        lo, hi = d["ci"]
        return f"{v:.{digits}g} [{lo:.2g}, {hi:.2g}]"
    if se is None:
        se = d.get("sd")
        if se is not None:
            return f"{v:.{digits}g} (sd {se:.2g})"
        return f"{v:.{digits}g} (no error estimate)"
    return f"{v:.{digits}g} ± {se:.2g}"


def meansd(d: Any, digits: int = 3) -> str:
    """``mean (sd)`` of a group summary (sd over runs, as in the paper's Table 4)."""
    if not isinstance(d, dict) or d.get("value") is None:
        return "n/a"
    sd = d.get("sd")
    return f"{d['value']:.{digits}g} ({sd:.{digits}g})" if sd is not None else \
        f"{d['value']:.{digits}g} (one run)"


def pct(v: Any) -> str:
    if isinstance(v, dict):
        if v.get("value") is None:
            return "n/a"
        se = v.get("stderr")
        return f"{100 * v['value']:.1f} %" + (f" ± {100 * se:.1f}" if se else "")
    if v is None:
        return "n/a"
    return f"{100 * v:.1f} %"


def render_report(out: str | os.PathLike, results: dict[str, Any] | None = None, *,
                  results_name: str = "results.json", figures: bool = True) -> Path:
    """Write ``out/report.html`` (and the figures) from results; returns the report's path.

    Parameters
    ----------
    out : path
        The results folder.
    results : dict, optional
        The results (default: read ``out/results_name``).
    results_name : str, default "results.json"
        The results file read from ``out`` when ``results`` is not given.
    figures : bool, default True
        Redraw the PNGs (False: reuse the ones in ``out/figures``).

    Returns
    -------
    pathlib.Path
        ``out/report.html``.
    """
    from ..pipeline.errors import PipelineError

    out = Path(out)
    if results is None:
        src = out / results_name
        if not src.is_file():
            raise PipelineError(f"{str(out)!r} holds no {results_name}: not a results folder "
                                "of `fractaldiff run` / `fractaldiff analyze`")
        try:
            with open(src, encoding="utf-8") as fh:
                results = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise PipelineError(f"{str(src)!r} could not be read: {exc}") from None
        if not isinstance(results, dict) or not str(results.get("format", "")).startswith(
                "fractaldiff-results/"):
            raise PipelineError(f"{str(src)!r} is not a fractaldiff results file")
    try:
        import jinja2
    except ImportError:
        raise PipelineError("the report needs Jinja2: pip install 'fractaldiff[run]'") from None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PipelineError("the report needs matplotlib: pip install 'fractaldiff[run]'") \
            from None
    figdir = out / "figures"
    if figures or not figdir.is_dir():
        from .figures import make_figures

        figs = make_figures(results, figdir)
    else:
        figs = {k: v for k, v in (results.get("_figures") or {}).items()
                if (figdir / v).is_file()}
        if not figs:
            from .figures import make_figures

            figs = make_figures(results, figdir)
    results["_figures"] = figs
    images = {}
    for key, name in figs.items():
        images[key] = "data:image/png;base64," + base64.b64encode(
            (figdir / name).read_bytes()).decode("ascii")
    env = jinja2.Environment(loader=jinja2.PackageLoader("fractaldiff.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]))
    env.filters["fmt"] = fmt
    env.filters["pct"] = pct
    env.filters["meansd"] = meansd
    env.filters["tojson_pretty"] = lambda o: json.dumps(o, indent=1, default=str)
    html = env.get_template("report.html.j2").render(r=results, img=images, figs=figs)
    path = out / "report.html"
    tmp = out / f"report.html.tmp{os.getpid()}"
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path

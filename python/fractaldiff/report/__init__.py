"""Render saved results (results.json) as a self-contained HTML report with PNG figures.

The report computes nothing: every number comes from results.json. ``render_report(OUT)``
rebuilds ``OUT/report.html`` and ``OUT/figures/*.png`` from ``OUT/results.json``.
"""

from __future__ import annotations

from .render import render_report

__all__ = ["render_report"]

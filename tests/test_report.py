"""The report: rebuilt from results.json alone, self-contained, and rendered by a real browser."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fractaldiff.cli import main

pytest.importorskip("torch")
pytest.importorskip("jinja2")
pytest.importorskip("matplotlib")

from test_pipeline import quick  # noqa: E402,F401  (the session's one --quick run)


def test_report_is_self_contained(quick):  # noqa: F811
    out, res = quick
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="summary-table"' in html and 'id="claims-table"' in html
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(srcs) >= 4
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        assert base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" not in html  # readable without JavaScript
    assert not re.search(r'(src|href)="https?://', html)  # nothing fetched
    for name in res["_figures"].values():
        assert (out / "figures" / name).stat().st_size > 1000
    # the paper's numbers beside ours, config, versions, build info, timings
    for text in ("TinyStories-1M", "21.422", "94.1 %", "0.009", "Resolved config",
                 "fd.build_info()", "Timings", "total (wall)"):
        assert text in html, text
    # where a part is missing, a visible line says so (and no invented number)
    if not res["posterior"].get("available"):
        assert "Posterior comparison not available" in html


def test_report_command_rebuilds_without_recomputing(quick, tmp_path):  # noqa: F811
    src, _ = quick
    out = tmp_path / "rebuilt"
    shutil.copytree(src, out)
    (out / "report.html").unlink()
    shutil.rmtree(out / "figures")
    shutil.rmtree(out / "cache")  # nothing to recompute from: the report must not need it
    t0 = time.perf_counter()
    assert main(["report", str(out)]) == 0
    assert time.perf_counter() - t0 < 60
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="summary-table"' in html
    assert not (out / "cache").exists()
    assert json.loads((out / "results.json").read_text()) is not None


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


_PROBE = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var widths = imgs.map(function (i) { return i.complete ? i.naturalWidth : -1; });
  var el = document.createElement('pre');
  el.id = 'fd-probe';
  el.textContent = JSON.stringify({widths: widths,
                                   summary: !!document.getElementById('summary-table'),
                                   rows: document.querySelectorAll('#summary-table tr').length});
  document.body.appendChild(el);
});
</script>
"""


def test_report_renders_in_headless_chromium(quick, tmp_path):  # noqa: F811
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    out, res = quick
    # a copy of the page with a probe that writes the images' natural widths into the DOM
    page = tmp_path / "probe.html"
    html = (out / "report.html").read_text(encoding="utf-8")
    page.write_text(html.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<pre id="fd-probe">(.*?)</pre>', dom.stdout, re.S)
    assert m, "the page did not finish loading in chromium"
    probe = json.loads(m.group(1).replace("&quot;", '"'))
    assert probe["summary"] and probe["rows"] >= 2
    assert len(probe["widths"]) >= 4
    assert all(w > 0 for w in probe["widths"]), probe["widths"]
    # screenshot of the real report, kept as a test artifact
    shot = Path(os.environ.get("FRACTALDIFF_SCREENSHOT_DIR", tmp_path)) / "report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(flags + ["--window-size=1200,2400", f"--screenshot={shot}",
                                (out / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.stat().st_size > 10_000, r.stderr[-2000:]
    print(f"\nreport screenshot: {shot}")

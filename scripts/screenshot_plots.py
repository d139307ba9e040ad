#!/usr/bin/env python3
"""Screenshot a ``dvc plots show/diff`` page in headless Chromium (e.g. docs/plots_diff.png).

Background networking is off and the profile is fresh, so a page that needs a CDN comes out
blank.  Debian: ``apt-get install -y chromium``.  Also used by tests/test_plots_offline.py.

    python scripts/screenshot_plots.py dvc_plots/index.html docs/plots_diff.png
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def find_chromium() -> str | None:
    """$CHROMIUM, else chromium / chromium-browser / google-chrome on PATH."""
    names = (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    return next((found for n in names if n and (found := shutil.which(n))), None)


def screenshot(html: Path, png: Path, *, size: str = "1200,1600", timeout_s: float = 120) -> Path:
    """Render ``html`` into ``png``; RuntimeError when Chromium is missing or writes nothing."""
    chromium, png = find_chromium(), Path(png).resolve()
    if chromium is None:
        raise RuntimeError("chromium not found (apt-get install -y chromium)")
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={png}",
            f"--window-size={size}", "--virtual-time-budget=5000", Path(html).resolve().as_uri(),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if not png.is_file() or png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return png


#: Put first in the page: records uncaught errors and console.error / console.warn into an attribute of <html>,
#: which --dump-dom then shows (headless Chromium does not log the page's console to stderr).
RECORDER = """<script>(function () {
  var seen = [], root = document.documentElement;
  function note(kind, text) { seen.push(kind + ": " + text); root.setAttribute("data-console", JSON.stringify(seen)); }
  window.addEventListener("error", function (e) { note("uncaught", e.message); });
  window.addEventListener("unhandledrejection", function (e) { note("unhandled rejection", String(e.reason)); });
  ["error", "warn"].forEach(function (kind) {
    var original = console[kind];
    console[kind] = function () { note(kind, Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
  });
})();</script>"""


def dom_and_console(html: Path, *, timeout_s: float = 180) -> tuple[str, list[str]]:
    """The DOM of ``html`` after its scripts ran (``--dump-dom``) and what they reported: uncaught errors,
    rejected promises, ``console.error`` and ``console.warn`` (vega-embed's way of reporting a failed chart)."""
    import html as html_lib
    import json
    import re

    chromium, html = find_chromium(), Path(html).resolve()
    if chromium is None:
        raise RuntimeError("chromium not found (apt-get install -y chromium)")
    page = html.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", page, re.IGNORECASE)
    at = head.end() if head else 0
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, \
            tempfile.NamedTemporaryFile("w", suffix=".html", dir=html.parent, encoding="utf-8") as probe:
        probe.write(page[:at] + RECORDER + page[at:])  # beside the page: its relative image paths still resolve
        probe.flush()
        cmd = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
            Path(probe.name).as_uri(),
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    if proc.returncode != 0 or "<html" not in proc.stdout.lower():
        raise RuntimeError(f"chromium rendered nothing (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    recorded = re.search(r'<html[^>]*\bdata-console="([^"]*)"', proc.stdout, re.IGNORECASE)
    return proc.stdout, json.loads(html_lib.unescape(recorded.group(1))) if recorded else []


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"wrote {screenshot(Path(sys.argv[1]), Path(sys.argv[2]))}")

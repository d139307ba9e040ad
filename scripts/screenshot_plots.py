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


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(f"wrote {screenshot(Path(sys.argv[1]), Path(sys.argv[2]))}")

#!/usr/bin/env python3
"""Render a ``dvc plots show/diff`` HTML page in headless Chromium and write a PNG.

Meant for checking the offline template (labelbench.ops.plots_template): it runs as root,
with background networking off and a fresh profile, so a page that needs the CDN shows
up blank.  Debian: ``apt-get update && apt-get install -y chromium``.

    python scripts/screenshot_plots.py dvc_plots/index.html plots.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium binary: ``explicit``, $CHROMIUM, /usr/bin/chromium, or PATH."""
    for candidate in (explicit, os.environ.get("CHROMIUM"), DEFAULT_CHROMIUM):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(
    chromium: str,
    html: Path,
    png: Path,
    user_data_dir: Path,
    *,
    window_size: tuple[int, int] = (1200, 1600),
    virtual_time_budget_ms: int = 5000,
) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",  # needed as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={user_data_dir}",
        f"--screenshot={png}",
        f"--window-size={window_size[0]},{window_size[1]}",
        f"--virtual-time-budget={virtual_time_budget_ms}",
        html.resolve().as_uri(),
    ]


def screenshot(
    html: Path,
    png: Path,
    *,
    chromium: str | None = None,
    window_size: tuple[int, int] = (1200, 1600),
    virtual_time_budget_ms: int = 5000,
    timeout_s: float = 60,
) -> Path:
    """Screenshot ``html`` into ``png``; raise RuntimeError when no PNG comes out."""
    html, png = Path(html), Path(png).resolve()
    if not html.is_file():
        raise FileNotFoundError(html)
    binary = find_chromium(chromium)
    if binary is None:
        raise FileNotFoundError("chromium not found (apt-get install -y chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = chromium_command(
            binary,
            html,
            png,
            Path(profile),
            window_size=window_size,
            virtual_time_budget_ms=virtual_time_budget_ms,
        )
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"chromium timed out after {timeout_s}s") from exc
    if not png.is_file() or png.stat().st_size == 0:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise RuntimeError(f"chromium wrote no screenshot (exit {proc.returncode}):\n{tail}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="dvc plots page, e.g. dvc_plots/index.html")
    parser.add_argument("png", type=Path, help="screenshot to write")
    parser.add_argument("--chromium", help=f"browser binary (default {DEFAULT_CHROMIUM})")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--budget-ms", type=int, default=5000, help="virtual time budget")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    try:
        out = screenshot(
            args.html,
            args.png,
            chromium=args.chromium,
            window_size=(args.width, args.height),
            virtual_time_budget_ms=args.budget_ms,
            timeout_s=args.timeout,
        )
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

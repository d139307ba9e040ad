"""Offline HTML template for ``dvc plots show/diff``: vega, vega-lite and vega-embed inlined.

DVC's default page (``dvc_render.html.PAGE_HTML``) puts CDN ``<script src>`` tags in
``{scripts}``, then each plot div runs ``vegaEmbed('#id', spec)`` inline.  This page has no
``{scripts}``; ``vl_convert.javascript_bundle()``, a plain script setting ``window.vegaEmbed``,
``window.vega`` and ``window.vegaLite``, is inlined in ``<head>``, before ``{plot_divs}``.
``.dvc/config`` names it (``plots.html_template``, relative to ``.dvc/``); ``make setup`` runs
``python -m labelbench.ops.plots_template --if-needed --out .dvc/plots_template.html``.
"""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version
from pathlib import Path

import vl_convert

from labelbench.data.files import write_text

MARKER = f"labelbench offline plots template, vl-convert-python {version('vl-convert-python')}"
PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- MARKER -->
    <script type="text/javascript">
BUNDLE
    </script>
    <style>table { border-spacing: 15px; }</style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def render(bundle: str | None = None) -> str:
    """The template page with ``bundle`` (default: vl-convert's) inlined."""
    bundle = vl_convert.javascript_bundle() if bundle is None else bundle
    # dvc_render str.replace()s these over the whole page; "<!--" can hide our "</script>"
    for bad in ("{plot_divs}", "{scripts}", "{refresh_tag}", "<!--"):
        if bad in bundle:
            raise ValueError(f"the vega bundle contains {bad!r}")
    bundle = re.sub(r"</(script)", r"<\\/\1", bundle, flags=re.IGNORECASE)  # same in JS
    return PAGE.replace("MARKER", MARKER).replace("BUNDLE", bundle)


def is_offline_template(path: Path, *, current: bool = False) -> bool:
    """True when ``path`` is a template that loads nothing from a CDN (and, with
    ``current``, was built by this module for the installed vl-convert)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return "{plot_divs}" in text and "{scripts}" not in text and (not current or f"<!-- {MARKER} -->" in text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelbench.ops.plots_template",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".dvc/plots_template.html"))
    parser.add_argument("--if-needed", action="store_true", help="skip when --out is already current")
    args = parser.parse_args(argv)
    if args.if_needed and is_offline_template(args.out, current=True):
        return 0
    write_text(args.out, render())
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

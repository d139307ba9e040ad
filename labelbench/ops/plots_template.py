"""Build an offline HTML template for ``dvc plots show`` / ``dvc plots diff``.

DVC's default plots page (``dvc_render.html.PAGE_HTML`` filled with
``dvc_render.vega.VegaRenderer.SCRIPTS``) loads Vega, Vega-Lite and vega-embed from
cdn.jsdelivr.net, so without network the page is blank.  This module fetches the same
major versions from the npm registry with ``npm pack``, reads the minified UMD builds
out of the tarballs and writes a page template with the three builds inlined as
``<script>`` elements.  The result needs no network at all.

How DVC uses the template (dvc 3.67 / dvc_render 1.0):

* ``dvc plots show --html-template PATH`` (also ``plots diff``): PATH is used as given,
  i.e. relative to the current directory.  Careful: if PATH is not an existing file
  dvc_render treats the *string itself* as the template and fails with
  "HTML template has to contain '{plot_divs}'".
* ``.dvc/config``::

      [plots]
          html_template = plots_template.html

  A relative ``plots.html_template`` is resolved against the ``.dvc/`` directory
  (``dvc/commands/plots.py: os.path.join(repo.dvc_dir, path)``), not the repo root.
  Set it with ``dvc config plots.html_template plots_template.html``.
* The template must contain ``{plot_divs}``; ``{scripts}`` (where DVC would put the CDN
  ``<script src=...>`` tags) is deliberately left out, and ``{refresh_tag}`` is kept.
  Placeholders are substituted with ``str.replace`` over the whole page, so the inlined
  JavaScript is checked not to contain any of them.

Build it with::

    python -m labelbench.ops.plots_template --out .dvc/plots_template.html
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Majors matched to dvc_render's default page (VegaRenderer.SCRIPTS loads
# vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2; its specs use the vega-lite v5
# schema).  Order matters: vega-lite needs the ``vega`` global, vega-embed both.
PACKAGES: tuple[tuple[str, str], ...] = (
    ("vega", "5"),
    ("vega-lite", "5"),
    ("vega-embed", "6"),
)

# Substituted by dvc_render.html.HTML.embed() anywhere in the page.
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")

NPM_TIMEOUT_S = 180
MAX_BUILD_BYTES = 32 * 1024 * 1024

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC Plot</title>
    <!-- Offline template built by labelbench.ops.plots_template: {versions}.
         The libraries are inlined below; this page loads nothing from the network. -->
{inline_scripts}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class TemplateBuildError(RuntimeError):
    """npm is missing or failed, or a tarball does not hold the expected build."""


@dataclass(frozen=True)
class Library:
    name: str
    version: str
    code: str


_VERSION_RE = r"(\d+)\.(\d+)\.(\d+)"


def _tarball_version(tgz: Path, name: str) -> tuple[int, int, int] | None:
    """``vega-lite-5.23.0.tgz`` -> (5, 23, 0) for name ``vega-lite``; None otherwise.

    Anchored so ``vega`` does not match ``vega-lite-*.tgz``; pre-releases don't match.
    """
    m = re.fullmatch(re.escape(name) + "-" + _VERSION_RE + r"\.tgz", tgz.name)
    return tuple(int(g) for g in m.groups()) if m else None  # type: ignore[return-value]


def _cached_tarball(cache_dir: Path, name: str, major: str) -> Path | None:
    best: tuple[tuple[int, int, int], Path] | None = None
    for tgz in cache_dir.glob(f"{name}-*.tgz"):
        version = _tarball_version(tgz, name)
        if version is None or str(version[0]) != major:
            continue
        if best is None or version > best[0]:
            best = (version, tgz)
    return best[1] if best else None


def _npm_pack(specs: list[str], cache_dir: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise TemplateBuildError("npm is not on PATH")
    cmd = [npm, "pack", *specs, "--json", "--pack-destination", str(cache_dir)]
    try:
        proc = subprocess.run(
            cmd,
            cwd=cache_dir,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TemplateBuildError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise TemplateBuildError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")


def fetch_tarballs(cache_dir: Path) -> dict[str, Path]:
    """Tarball per package name in ``cache_dir``; ``npm pack`` only the missing ones."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    missing = [(n, m) for n, m in PACKAGES if _cached_tarball(cache_dir, n, m) is None]
    if missing:
        _npm_pack([f"{n}@{m}" for n, m in missing], cache_dir)
    found = {}
    for name, major in PACKAGES:
        tgz = _cached_tarball(cache_dir, name, major)
        if tgz is None:
            raise TemplateBuildError(
                f"npm pack {name}@{major} left no {name}-{major}.x.y.tgz in {cache_dir}"
            )
        found[name] = tgz
    return found


def read_build(tgz: Path, name: str) -> Library:
    """Read ``package/build/<name>.min.js`` (and the version) out of an npm tarball.

    Nothing is written to disk: only the regular-file members we name are read, so
    absolute paths, ``..`` and links in the archive cannot escape anywhere.
    """
    member_js = f"package/build/{name}.min.js"
    try:
        with tarfile.open(tgz, mode="r:gz") as tar:
            js = _read_member(tar, member_js)
            meta = json.loads(_read_member(tar, "package/package.json"))
    except (tarfile.TarError, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TemplateBuildError(f"{tgz}: {exc}") from exc
    if meta.get("name") != name:
        raise TemplateBuildError(f"{tgz}: package.json names {meta.get('name')!r}, not {name!r}")
    return Library(name=name, version=str(meta.get("version")), code=js)


def _read_member(tar: tarfile.TarFile, path: str) -> str:
    try:
        member = tar.getmember(path)
    except KeyError:
        raise TemplateBuildError(f"{tar.name}: no member {path}") from None
    if not member.isreg():
        raise TemplateBuildError(f"{tar.name}: {path} is not a regular file")
    if member.size > MAX_BUILD_BYTES:
        raise TemplateBuildError(f"{tar.name}: {path} is {member.size} bytes")
    fh = tar.extractfile(member)
    assert fh is not None  # regular file
    with fh:
        return fh.read().decode("utf-8")


def inline_script(lib: Library) -> str:
    """``<script>`` element holding ``lib.code``, safe to embed in the HTML page."""
    code = lib.code
    for placeholder in DVC_PLACEHOLDERS:
        if placeholder in code:
            raise TemplateBuildError(
                f"{lib.name} {lib.version} contains DVC placeholder {placeholder}"
            )
    # "<!--" + "<script" would put the HTML parser into the double-escaped state and
    # swallow our "</script>"; the builds have neither, so refuse rather than rewrite.
    if "<!--" in code:
        raise TemplateBuildError(f"{lib.name} {lib.version} contains '<!--'")
    # "</script" would end the element early; "<\/script" means the same in JS strings
    # and regular expressions, the only places it can occur.
    code = re.sub(r"</(script)", r"<\\/\1", code, flags=re.IGNORECASE)
    return (
        f'    <script type="text/javascript" data-lib="{lib.name}@{lib.version}">\n'
        f"{code}\n    </script>"
    )


def render_template(libs: list[Library]) -> str:
    versions = ", ".join(f"{lib.name} {lib.version}" for lib in libs)
    page = PAGE.replace("{versions}", versions)
    page = page.replace("{inline_scripts}", "\n".join(inline_script(lib) for lib in libs))
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    return page


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def build_template(*, out: Path, cache_dir: Path) -> Path:
    """Write the offline plots template to ``out`` and return ``out``.

    ``npm pack`` downloads the tarballs into ``cache_dir`` unless matching ones are
    already there.  Raises :class:`TemplateBuildError` when npm is missing or fails.
    """
    # absolute: npm runs inside cache_dir and would resolve a relative destination twice
    out, cache_dir = Path(out), Path(cache_dir).resolve()
    tarballs = fetch_tarballs(cache_dir)
    libs = [read_build(tarballs[name], name) for name, _ in PACKAGES]
    _write_atomic(out, render_template(libs))
    return out


#: Written when the offline page cannot be built (no npm, no registry): DVC's own page, which
#: loads the libraries from a CDN through ``{scripts}``. `.dvc/config` names the template, so a
#: missing file would break `dvc plots` altogether; this keeps it working where there is network.
FALLBACK_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC Plot</title>
    {scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    <!-- labelbench: online fallback; rebuild with `python -m labelbench.ops.plots_template` -->
    {plot_divs}
</body>
</html>
"""


def is_offline_template(path: Path) -> bool:
    """True when ``path`` holds the inlined (offline) page rather than the fallback."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return "{plot_divs}" in text and "{scripts}" not in text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labelbench.ops.plots_template",
        description="Build an offline HTML template for `dvc plots show/diff`.",
    )
    parser.add_argument("--out", type=Path, default=Path(".dvc/plots_template.html"))
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(".cache/plots_template"),
        help="where `npm pack` puts the tarballs (reused when present)",
    )
    parser.add_argument("--if-needed", action="store_true", help="do nothing when the offline page is already there")
    args = parser.parse_args(argv)
    if args.if_needed and is_offline_template(args.out):
        return 0
    try:
        out = build_template(out=args.out, cache_dir=args.cache_dir)
    except TemplateBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not args.out.exists():
            _write_atomic(args.out, FALLBACK_TEMPLATE)
            print(f"wrote the online fallback {args.out}: dvc plots pages will load Vega from a CDN", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    if out.resolve().parent.name == ".dvc":
        print(f"use it with: dvc config plots.html_template {out.name}")
    else:
        print(f"use it with: dvc plots show --html-template {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The offline `dvc plots` template: built from npm, used by real `dvc plots show`,
and (when Chromium is installed) actually drawing a chart with no network."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from labelbench.ops import plots_template as pt

REPO_ROOT = Path(__file__).resolve().parents[1]
NPM_CACHE = REPO_ROOT / ".cache" / "plots_template"  # git-ignored, reused across runs
CHROMIUM = "/usr/bin/chromium"
LINE_RGB = (0x94, 0x5D, 0xD6)  # dvc_render's first line colour (#945dd6)


# --------------------------------------------------------------------------- helpers


def _make_tgz(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


def _fake_package(tmp: Path, name: str, version: str, js: str) -> Path:
    meta = json.dumps({"name": name, "version": version}).encode()
    return _make_tgz(
        tmp / f"{name}-{version}.tgz",
        {"package/package.json": meta, f"package/build/{name}.min.js": js.encode()},
    )


def _load_screenshot_module():
    path = REPO_ROOT / "scripts" / "screenshot_plots.py"
    spec = importlib.util.spec_from_file_location("screenshot_plots", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(repo / ".site"))
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _image_stats(png: Path) -> dict:
    from PIL import Image

    with Image.open(png) as im:
        rgb = im.convert("RGB")
    # The chart sits top-left (about 500x400 CSS px); look there.
    area = rgb.crop((0, 0, min(rgb.width, 700), min(rgb.height, 500)))
    pixels = list(area.getdata())
    non_white = sum(1 for p in pixels if min(p) < 235)
    line = sum(1 for p in pixels if all(abs(a - b) <= 40 for a, b in zip(p, LINE_RGB)))
    colours = area.getcolors(maxcolors=1 << 20) or []
    return {
        "non_white_frac": non_white / len(pixels),
        "line_pixels": line,
        "distinct_colours": len(colours),
    }


# --------------------------------------------------------------------- unit, no npm


def test_majors_match_dvc_render_default_page():
    from dvc_render.vega import VegaRenderer

    cdn = dict(re.findall(r"npm/(vega(?:-lite|-embed)?)@(\d+)\.", VegaRenderer.SCRIPTS))
    assert cdn == dict(pt.PACKAGES)


def test_cached_tarball_picks_highest_matching_major(tmp_path):
    for name in [
        "vega-5.2.0.tgz",
        "vega-5.33.1.tgz",
        "vega-6.0.0.tgz",
        "vega-lite-5.99.0.tgz",
        "vega-5.40.0-rc.1.tgz",
    ]:
        (tmp_path / name).write_bytes(b"")
    assert pt._cached_tarball(tmp_path, "vega", "5").name == "vega-5.33.1.tgz"
    assert pt._cached_tarball(tmp_path, "vega-lite", "5").name == "vega-lite-5.99.0.tgz"
    assert pt._cached_tarball(tmp_path, "vega-embed", "6") is None


def test_template_from_cached_tarballs_without_npm(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    _fake_package(cache, "vega", "5.1.0", 'var vega={s:"</script>",t:"</SCRIPT"};')
    _fake_package(cache, "vega-lite", "5.2.0", "var vegaLite={};")
    _fake_package(cache, "vega-embed", "6.3.0", "function vegaEmbed(){}")
    monkeypatch.setenv("PATH", "")  # npm must not be needed when all are cached

    out = pt.build_template(out=tmp_path / "sub" / "tpl.html", cache_dir=cache)

    page = out.read_text(encoding="utf-8")
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    assert "src=" not in page
    assert page.index("var vega=") < page.index("var vegaLite=") < page.index("vegaEmbed")
    assert "</script>\"" not in page and "</SCRIPT" not in page
    assert r"<\/script>" in page and r"<\/SCRIPT" in page
    assert "vega 5.1.0, vega-lite 5.2.0, vega-embed 6.3.0" in page
    assert [p.name for p in out.parent.iterdir()] == ["tpl.html"]  # no temp left over


def test_missing_npm_raises_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(pt.TemplateBuildError, match="npm"):
        pt.build_template(out=tmp_path / "tpl.html", cache_dir=tmp_path / "empty")
    assert not (tmp_path / "tpl.html").exists()


@pytest.mark.parametrize(
    "files, links, match",
    [
        ({"package/package.json": b"{}"}, {}, "no member package/build/vega.min.js"),
        (
            {"package/package.json": b'{"name": "vega"}'},
            {"package/build/vega.min.js": "/etc/passwd"},
            "not a regular file",
        ),
        (
            {"package/package.json": b'{"name": "vega-lite"}', "package/build/vega.min.js": b""},
            {},
            "names 'vega-lite'",
        ),
    ],
)
def test_read_build_rejects_bad_tarballs(tmp_path, files, links, match):
    tgz = _make_tgz(tmp_path / "vega-5.0.0.tgz", files, links)
    with pytest.raises(pt.TemplateBuildError, match=match):
        pt.read_build(tgz, "vega")


def test_placeholder_in_library_code_is_refused():
    lib = pt.Library("vega", "5.0.0", 'x="{plot_divs}"')
    with pytest.raises(pt.TemplateBuildError, match="placeholder"):
        pt.inline_script(lib)


# ------------------------------------------------------ integration: npm, dvc, chromium


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tpl") / "plots_template.html"
    try:
        return pt.build_template(out=out, cache_dir=NPM_CACHE)
    except pt.TemplateBuildError as exc:
        pytest.skip(f"cannot build the template from npm: {exc}")


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    rows = [f"{i},{math.exp(-i / 6) + 0.05 * math.sin(i):.4f}" for i in range(20)]
    (repo / "loss.csv").write_text("step,loss\n" + "\n".join(rows) + "\n")
    (repo / "dvc.yaml").write_text(
        "plots:\n  - loss.csv:\n      x: step\n      y: loss\n      title: Training loss\n"
    )
    return repo


def _assert_offline_page(index: Path) -> str:
    page = index.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE), "external script"
    assert not re.search(r"""src\s*=\s*["']?https?://""", page, re.IGNORECASE)
    assert "cdn.jsdelivr.net" not in page
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert f'data-lib="{lib}@' in page
    assert "vegaEmbed=" in page and "vegaLite=" in page  # the UMD globals, inlined
    assert "vegaEmbed('#" in page and '"loss"' in page  # dvc's plot div and data
    return page


@pytest.mark.slow
def test_dvc_plots_show_offline(template, plots_repo, tmp_path):
    # 1. --html-template PATH (relative to cwd, here absolute)
    _dvc(plots_repo, "plots", "show", "--html-template", str(template), "-o", "out")
    page = _assert_offline_page(plots_repo / "out" / "index.html")

    # 2. plots.html_template in .dvc/config, relative to .dvc/
    shutil.copyfile(template, plots_repo / ".dvc" / "plots_template.html")
    _dvc(plots_repo, "config", "plots.html_template", "plots_template.html")
    assert "html_template = plots_template.html" in (plots_repo / ".dvc/config").read_text()
    _dvc(plots_repo, "plots", "show", "-o", "out_cfg")
    _assert_offline_page(plots_repo / "out_cfg" / "index.html")

    if not os.access(CHROMIUM, os.X_OK):
        return  # rendering check below needs `apt-get install -y chromium`
    pytest.importorskip("PIL")
    shots = _load_screenshot_module()

    png = shots.screenshot(plots_repo / "out" / "index.html", tmp_path / "plot.png")
    stats = _image_stats(png)
    assert stats["non_white_frac"] > 0.01, stats
    assert stats["distinct_colours"] > 20, stats
    assert stats["line_pixels"] > 100, stats  # the purple loss line was drawn

    # Control: the same page without the inlined libraries renders blank, so the
    # checks above really tell a drawn chart from an empty page.
    bare = re.sub(r"<script[^>]*data-lib=.*?</script>", "", page, flags=re.DOTALL)
    (tmp_path / "bare.html").write_text(bare, encoding="utf-8")
    blank = _image_stats(shots.screenshot(tmp_path / "bare.html", tmp_path / "bare.png"))
    assert blank["line_pixels"] == 0 and blank["non_white_frac"] < 0.001, blank


def test_fallback_when_npm_is_missing_keeps_dvc_plots_working(tmp_path, monkeypatch):
    from labelbench.ops import plots_template

    out = tmp_path / "plots_template.html"
    monkeypatch.setenv("PATH", "")
    assert plots_template.main(["--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 1
    text = out.read_text()
    assert "{plot_divs}" in text and "{scripts}" in text  # DVC fills {scripts} with its CDN tags
    assert not plots_template.is_offline_template(out)


def test_if_needed_skips_a_built_offline_page(tmp_path, monkeypatch):
    from labelbench.ops import plots_template

    out = tmp_path / "plots_template.html"
    out.write_text("<html>{refresh_tag}<script>vega</script>{plot_divs}</html>")
    assert plots_template.is_offline_template(out)
    monkeypatch.setenv("PATH", "")  # npm unreachable: must not be needed
    assert plots_template.main(["--out", str(out), "--if-needed"]) == 0

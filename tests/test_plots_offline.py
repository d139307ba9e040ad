"""The offline `dvc plots` template (vl-convert's bundle inlined): its page, its CLI, a real
`dvc plots show` in a tiny repo of its own, and (when Chromium is installed) a drawn chart."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import vl_convert

from labelbench.data.files import write_text
from labelbench.ops import plots_template as pt

REPO_ROOT = Path(__file__).resolve().parents[1]
LINE_RGB = (0x94, 0x5D, 0xD6)  # dvc_render's first line colour (#945dd6)
MARK = f"<!-- {pt.MARKER} -->"
CHART_BOXES = [(0, 0, 470, 500), (470, 0, 940, 500)]  # loss.csv, acc.csv: side by side, top


@pytest.fixture(scope="module")
def bundle() -> str:
    return vl_convert.javascript_bundle()  # a few seconds: once per module


@pytest.fixture
def fast_bundle(bundle, monkeypatch):
    """main() builds from the real bundle without recomputing it."""
    monkeypatch.setattr(pt.vl_convert, "javascript_bundle", lambda: bundle)


def _assert_no_network(page: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE), "external script"
    assert not re.search(r"""\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert "cdn.jsdelivr.net" not in page


# ------------------------------------------------------------------------ the template


def test_template_inlines_the_bundle_before_one_plot_divs(bundle):
    page = pt.render(bundle)
    _assert_no_network(page)
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    assert page.count("{refresh_tag}") == 1 and page.count(MARK) == 1
    for name in ("vegaEmbed", "vega", "vegaLite"):
        assert f"window.{name}=" in page
    # dvc's plot divs call vegaEmbed inline, so the library must come first
    assert page.index(bundle[-200:]) < page.index("</script>") < page.index("{plot_divs}")


def test_render_escapes_script_end_tags():
    page = pt.render('var a="</script>",b="</SCRIPT";')
    assert r'var a="<\/script>",b="<\/SCRIPT";' in page
    assert page.count("</script>") == 1  # ours


@pytest.mark.parametrize("bad", ["{plot_divs}", "{scripts}", "{refresh_tag}", "<!--"])
def test_render_refuses_what_dvc_or_html_would_misread(bad):
    with pytest.raises(ValueError, match="bundle contains"):
        pt.render(f'var s="{bad}";')


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_builds_missing_template_atomically_with_umask_mode(tmp_path, fast_bundle, umask, mode):
    out = tmp_path / "sub" / "plots_template.html"
    old = os.umask(umask)
    try:
        assert pt.main(["--if-needed", "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == mode
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left over
    assert pt.is_offline_template(out, current=True)
    assert out.read_text(encoding="utf-8") == pt.render()


def test_if_needed_leaves_a_current_template_alone(tmp_path, fast_bundle, monkeypatch):
    out = tmp_path / "plots_template.html"
    assert pt.main(["--out", str(out)]) == 0
    os.utime(out, ns=(10**18, 10**18))
    before = out.stat()

    def not_needed():
        raise AssertionError("rebuilt a current template")

    monkeypatch.setattr(pt.vl_convert, "javascript_bundle", not_needed)
    assert pt.main(["--if-needed", "--out", str(out)]) == 0
    after = out.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)


@pytest.mark.parametrize(
    "stale",
    [
        "<html>{refresh_tag}<script>/* npm-built vega */</script>{plot_divs}</html>",
        "<html><!-- labelbench offline plots template, vl-convert-python 0.1 -->{plot_divs}</html>",
        "<html>{refresh_tag}{scripts}{plot_divs}</html>",  # the old online fallback
        "",
    ],
)
def test_if_needed_rebuilds_a_stale_template(tmp_path, fast_bundle, stale):
    out = tmp_path / "plots_template.html"
    out.write_text(stale, encoding="utf-8")
    assert not pt.is_offline_template(out, current=True)
    assert pt.main(["--if-needed", "--out", str(out)]) == 0
    assert pt.is_offline_template(out, current=True)


# ------------------------------------------------------- a real dvc plots show, Chromium


def _dvc(repo: Path, *args: str) -> None:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(repo / ".site"))
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def plots_page(tmp_path_factory, bundle) -> Path:
    """index.html of `dvc plots show` in a fresh git+dvc repo whose .dvc/config names the
    template, as this project's does."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    repo = tmp_path_factory.mktemp("plots") / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(repo, "init", "-q")
    write_text(repo / ".dvc" / "plots_template.html", pt.render(bundle))
    _dvc(repo, "config", "plots.html_template", "plots_template.html")
    rows = [f"{i},{math.exp(-i / 6) + 0.05 * math.sin(i):.4f}" for i in range(20)]
    (repo / "loss.csv").write_text("step,loss\n" + "\n".join(rows) + "\n")
    (repo / "acc.csv").write_text("step,acc\n" + "\n".join(f"{i},{1 - math.exp(-i / 4):.4f}" for i in range(20)))
    (repo / "dvc.yaml").write_text(
        "plots:\n  - loss.csv:\n      x: step\n      y: loss\n  - acc.csv:\n      x: step\n      y: acc\n"
    )
    _dvc(repo, "plots", "show", "-o", "out")
    return repo / "out" / "index.html"


@pytest.mark.slow
def test_dvc_plots_show_uses_the_inlined_bundle(plots_page, bundle):
    page = plots_page.read_text(encoding="utf-8")
    _assert_no_network(page)
    assert MARK in page and bundle in page
    assert page.count("vegaEmbed('#") == 2 and '"loss"' in page and '"acc"' in page  # dvc's divs
    assert page.index("window.vegaEmbed=") < page.index("vegaEmbed('#")


def _screenshots():
    spec = importlib.util.spec_from_file_location("screenshot_plots", REPO_ROOT / "scripts" / "screenshot_plots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if module.find_chromium() is None:
        pytest.skip("Chromium not installed (apt-get install -y chromium)")
    return module


def _image_stats(png: Path, box: tuple[int, int, int, int]) -> dict:
    from PIL import Image

    with Image.open(png) as im:
        area = im.convert("RGB").crop(box)
    pixels = list(area.getdata())
    return {
        "non_white_frac": sum(min(p) < 235 for p in pixels) / len(pixels),
        "line_pixels": sum(all(abs(a - b) <= 40 for a, b in zip(p, LINE_RGB)) for p in pixels),
        "distinct_colours": len(area.getcolors(maxcolors=1 << 20) or []),
    }


@pytest.mark.slow
def test_chromium_draws_the_chart_offline(plots_page, bundle, tmp_path):
    shots = _screenshots()
    pytest.importorskip("PIL")
    png = shots.screenshot(plots_page, tmp_path / "plot.png")
    for box in CHART_BOXES:
        stats = _image_stats(png, box)
        assert stats["non_white_frac"] > 0.01, (box, stats)
        assert stats["distinct_colours"] > 20, (box, stats)
        assert stats["line_pixels"] > 100, (box, stats)  # its purple line was drawn

    # Control: the same page without the bundle stays blank, so the checks above really
    # tell a drawn chart from an empty page.
    bare = plots_page.with_name("bare.html")
    bare.write_text(plots_page.read_text(encoding="utf-8").replace(bundle, ""), encoding="utf-8")
    blank = _image_stats(shots.screenshot(bare, tmp_path / "bare.png"), (0, 0, 1200, 600))
    assert blank["line_pixels"] == 0 and blank["non_white_frac"] < 0.001, blank


@pytest.mark.slow
def test_the_projects_plots_diff_page_draws_every_plot_without_a_script_error(tmp_path):
    """This repository's own `dvc plots diff` page (the evaluation half run on roman-numeral, against the committed
    plots): every plot is a chart with a spec or an image that exists, every spec compiles, Chromium draws one chart
    per spec and its console shows no error (an apostrophe in a title once broke the page's script)."""
    from conftest import roman_numeral_clone, run

    shots = _screenshots()
    root = roman_numeral_clone(tmp_path / "repo")
    run(["dvc", "repro"], root)
    run(["dvc", "plots", "diff", "-o", "out"], root)
    page = root / "out" / "index.html"
    text = page.read_text(encoding="utf-8")
    ids = re.findall(r"vegaEmbed\('#([^']*)'", text)
    assert len(ids) >= 10 and len(set(ids)) == len(ids), ids  # pr, roc, lift per dataset, the tables, the issues
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]+", i) for i in ids), ids  # safe as a JS string and a CSS selector
    assert "var spec = {}" not in text and "file type error" not in text
    for src in re.findall(r'<img src="([^"$]+)"', text):
        assert (page.parent / src).is_file() and (page.parent / src).stat().st_size > 0, src
    dom, console = shots.dom_and_console(page)
    # The only messages allowed: DVC's templates say Vega-Lite v5 and the inlined bundle is v6, which draws them and
    # says so; DVC fills its built-in templates' optional channels (shape, strokeDash) with {} when nothing varies
    harmless = re.compile(r"^warn: (The input spec uses Vega-Lite v5, but the current version of Vega-Lite is v6|"
                          r'WARN Dropping \{\} from channel "(shape|strokeDash)" since it does not contain any data)')
    unexpected = [line for line in console if not harmless.match(line)]
    assert unexpected == [], "\n".join(unexpected)
    drawn = re.findall(r'<div id="([^"]+)"[^>]*class="[^"]*vega-embed', dom)
    assert sorted(drawn) == sorted(ids), (set(ids) - set(drawn))
    assert dom.count('class="marks"') >= len(ids)  # each chart's canvas

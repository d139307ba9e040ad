"""README's line count of ``labelbench/`` is the one its command prints today (it went stale once: 7,136 quoted
while the package had 7,147 lines)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

from conftest import REPO_ROOT


def test_readme_quotes_the_line_count_that_its_command_prints():
    printed = subprocess.run([sys.executable, "benchmarks/line_count.py"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout
    total, code, docstring, comment, blank, floor, floor_code, floor_blank = re.fullmatch(
        r"labelbench/: ([\d,]+) lines: code ([\d,]+), docstring ([\d,]+), comment ([\d,]+), blank ([\d,]+)\n"
        r"code and PEP 8's blank lines around definitions only: ([\d,]+) lines \(code ([\d,]+), blank ([\d,]+)\)\n",
        printed).groups()
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    quoted = re.search(r"`labelbench/` is ([\d,]+) lines \(`find labelbench -name '\*\.py' \| xargs wc -l`; "
                       r"`python benchmarks/line_count.py` splits them: code ([\d,]+), docstrings ([\d,]+), "
                       r"comments ([\d,]+), blank ([\d,]+)", readme)
    assert quoted, "README no longer quotes the line count in the form this test reads"
    assert quoted.groups() == (total, code, docstring, comment, blank), printed
    assert floor_code == code
    floor_quoted = re.search(r"the package would still be ([\d,]+) lines \(`python benchmarks/line_count\.py`, its "
                             r"second line: code ([\d,]+) and the ([\d,]+) blank lines around definitions\)", readme)
    assert floor_quoted, "README no longer quotes the floor in the form this test reads"
    assert floor_quoted.groups() == (floor, code, floor_blank), printed
    wc = subprocess.run("find labelbench -name '*.py' | xargs wc -l | tail -1", shell=True, cwd=REPO_ROOT,
                        capture_output=True, text=True, check=True).stdout.split()[0]
    assert f"{int(wc):,}" == total


def test_pep8_floor_counts_the_blank_lines_around_definitions():
    spec = importlib.util.spec_from_file_location("line_count", REPO_ROOT / "benchmarks" / "line_count.py")
    line_count = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(line_count)
    source = '''"""A module."""
import os


def first():
    """Docstring."""
    return os.sep


class Thing:
    """A class: the docstring goes, so the first method needs no blank line before it."""

    def one(self):
        return 1

    def two(self):
        return 2
'''
    # two before `first` (imports precede it), two before `Thing`, one before `two`
    assert line_count.pep8_blank_lines(source) == 5
    assert line_count.pep8_blank_lines("def only():\n    pass\n") == 0

"""README's line count of ``labelbench/`` is the one its command prints today (it went stale once: 7,136 quoted
while the package had 7,147 lines)."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO_ROOT


def test_readme_quotes_the_line_count_that_its_command_prints():
    printed = subprocess.run([sys.executable, "benchmarks/line_count.py"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout
    total, code, docstring, comment, blank = re.fullmatch(
        r"labelbench/: ([\d,]+) lines: code ([\d,]+), docstring ([\d,]+), comment ([\d,]+), blank ([\d,]+)\n",
        printed).groups()
    readme = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    quoted = re.search(r"`labelbench/` is ([\d,]+) lines \(`find labelbench -name '\*\.py' \| xargs wc -l`; "
                       r"`python benchmarks/line_count.py` splits them: code ([\d,]+), docstrings ([\d,]+), "
                       r"comments ([\d,]+), blank ([\d,]+)", readme)
    assert quoted, "README no longer quotes the line count in the form this test reads"
    assert quoted.groups() == (total, code, docstring, comment, blank), printed
    wc = subprocess.run("find labelbench -name '*.py' | xargs wc -l | tail -1", shell=True, cwd=REPO_ROOT,
                        capture_output=True, text=True, check=True).stdout.split()[0]
    assert f"{int(wc):,}" == total

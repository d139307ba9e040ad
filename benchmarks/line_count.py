"""Lines of the ``labelbench/`` package: the total that ``find labelbench -name '*.py' | xargs wc -l`` prints, and
how it splits into code, docstrings, comments and blank lines, per file and in all.

    python benchmarks/line_count.py [--files]

A line is a docstring line when it lies inside the docstring of a module, class or function (``ast``); a comment
line when it holds only a comment; code otherwise (a code line with a trailing comment is code).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "labelbench"
KINDS = ("code", "docstring", "comment", "blank")


def kinds_of(source: str) -> Counter:
    """Count of each kind of line in one module's ``source``."""
    docstring_lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    counts = Counter(dict.fromkeys(KINDS, 0))
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.strip()
        kind = ("blank" if not text else "docstring" if number in docstring_lines
                else "comment" if text.startswith("#") else "code")
        counts[kind] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", action="store_true", help="one row per file too")
    args = parser.parse_args()
    per_file = {path: kinds_of(path.read_text(encoding="utf-8")) for path in sorted(PACKAGE.rglob("*.py"))}
    if args.files:
        for path, counts in per_file.items():
            print(f"{sum(counts.values()):6d} {path.relative_to(PACKAGE.parent)}  "
                  + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS))
    print(summary(sum(per_file.values(), Counter())))
    return 0


def summary(total: Counter) -> str:
    """One line: the total and its split, as README quotes it."""
    return f"labelbench/: {sum(total.values()):,} lines: " + ", ".join(f"{kind} {total[kind]:,}" for kind in KINDS)


if __name__ == "__main__":
    sys.exit(main())

"""Lines of the ``labelbench/`` package: the total that ``find labelbench -name '*.py' | xargs wc -l`` prints, and
how it splits into code, docstrings, comments and blank lines, per file and in all.

    python benchmarks/line_count.py [--files]

A line is a docstring line when it lies inside the docstring of a module, class or function (``ast``); a comment
line when it holds only a comment; code otherwise (a code line with a trailing comment is code).

A second line gives the floor of the package as written: its code lines plus the blank lines that PEP 8 asks for
around definitions (two before each top-level function or class, one before each method, none before a module's
or a class's first statement once docstrings are left out): its length with every docstring, comment and other
blank line removed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "labelbench"
KINDS = ("code", "docstring", "comment", "blank")


def is_docstring(statement: ast.stmt) -> bool:
    """Whether ``statement``, the first of a body, is its docstring."""
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(
        statement.value.value, str)


def kinds_of(source: str) -> Counter:
    """Count of each kind of line in one module's ``source``."""
    docstring_lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            if is_docstring(first := node.body[0]):
                docstring_lines.update(range(first.lineno, first.end_lineno + 1))
    counts = Counter(dict.fromkeys(KINDS, 0))
    for number, line in enumerate(source.splitlines(), start=1):
        text = line.strip()
        kind = ("blank" if not text else "docstring" if number in docstring_lines
                else "comment" if text.startswith("#") else "code")
        counts[kind] += 1
    return counts


def pep8_blank_lines(source: str) -> int:
    """The blank lines PEP 8 asks for around the definitions of one module's ``source`` (see the module docstring)."""
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

    def statements(body: list) -> list:  # without the docstring, which the floor removes
        return body[1:] if body and is_docstring(body[0]) else body

    count = 0
    for index, node in enumerate(statements(ast.parse(source).body)):
        if isinstance(node, definitions):
            count += 2 if index else 0
            if isinstance(node, ast.ClassDef):
                count += sum(isinstance(item, definitions[:2]) for item in statements(node.body)[1:])
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", action="store_true", help="one row per file too")
    args = parser.parse_args()
    sources = {path: path.read_text(encoding="utf-8") for path in sorted(PACKAGE.rglob("*.py"))}
    per_file = {path: kinds_of(source) for path, source in sources.items()}
    if args.files:
        for path, counts in per_file.items():
            print(f"{sum(counts.values()):6d} {path.relative_to(PACKAGE.parent)}  "
                  + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS))
    total = sum(per_file.values(), Counter())
    print(summary(total))
    pep8 = sum(pep8_blank_lines(source) for source in sources.values())
    print(f"code and PEP 8's blank lines around definitions only: {total['code'] + pep8:,} lines "
          f"(code {total['code']:,}, blank {pep8:,})")
    return 0


def summary(total: Counter) -> str:
    """One line: the total and its split, as README quotes it."""
    return f"labelbench/: {sum(total.values()):,} lines: " + ", ".join(f"{kind} {total[kind]:,}" for kind in KINDS)


if __name__ == "__main__":
    sys.exit(main())

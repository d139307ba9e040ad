"""DVC's public CLI, called one way: ``python -m dvc`` of this interpreter, in a repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def dvc(root: os.PathLike | str, *args: str, check: bool = True, capture: bool = True,
        echo: bool = False) -> subprocess.CompletedProcess:
    """``dvc <args>`` in ``root``, output captured unless ``capture`` is False (then shown as it runs; ``echo``
    prints the command first), in :func:`environment`. With ``check``, RuntimeError naming the command and the end
    of its output."""
    if echo:
        print("$ dvc " + " ".join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=environment(root),
                            capture_output=capture, text=True)
    if check and result.returncode:
        output = (result.stdout or "") + (result.stderr or "")
        raise RuntimeError(f"dvc {' '.join(args)} failed ({result.returncode})"
                           + (f":\n{output[-4000:]}" if output else ""))
    return result


def environment(root: os.PathLike | str) -> dict[str, str]:
    """This process's environment for a command in ``root``: the stages it runs import ``root``'s labelbench and find
    this interpreter's ``python`` first on PATH."""
    return {**os.environ, "PYTHONPATH": str(Path(root).resolve()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def config(root: os.PathLike | str, *flags: str) -> dict[str, str]:
    """``dvc config --list [flags]`` in ``root`` as {option: value} (every level or the one named; the later wins)."""
    return dict(line.partition("=")[::2] for line in dvc(root, "config", "--list", *flags).stdout.splitlines())

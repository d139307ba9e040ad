"""Cross-host check of the evaluation stages without a second machine: each stage's own command rerun under
environments that make numpy, OpenBLAS and glibc's libm take the paths another x86-64 host would take, and its
outputs compared byte for byte with this workspace's, which are first checked against the hashes in ``dvc.lock``.

    python benchmarks/host_environments.py [--stages evaluate benchmark issues multiannotator report]
                                           [--emulate Nehalem-v1 ...]

What each environment changes (every one is read when the process starts, before any project code runs):

* ``OPENBLAS_NUM_THREADS``: how many threads OpenBLAS splits a product over (one per core unless set);
* ``OPENBLAS_CORETYPE``: OpenBLAS's kernels for another processor (only ones this host can execute);
* ``NPY_DISABLE_CPU_FEATURES``: numpy's SIMD loops as on a processor without those instruction sets;
* ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-...``: glibc's libm (exp, log, pow, ...) takes the variants of a processor
  without AVX, AVX2 and FMA, as on one made before 2013;
* ``NUMBA_CPU_NAME``: numba compiles the bootstrap's pass for another processor.

``--emulate CPU`` also runs each stage under QEMU user-mode emulation of that ``qemu -cpu`` model (Debian's
``qemu-user``), which presents another processor to every library, also those with no switch of their own (the
zlib-ng inside Pillow that compresses the PNGs picks its deflate routines by processor). Emulation is slow: about
40x here, so give it the short stages (``--stages issues report``). AVX-512 paths cannot be taken on a host without
AVX-512 (nor emulated by QEMU 7.2): an AVX-512 host runs this script to cover them. Needs the committed code
(``git status`` clean) and the outputs ``dvc.lock`` records in the workspace (``make reproduce``). Each environment
runs in its own copy of the workspace (without ``.git``, ``.venv`` and the DVC cache, about 100 MB); nothing
here is written to. Prints, per environment and stage, the exit status, the seconds and which outputs differ.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ("evaluate", "benchmark", "issues", "multiannotator", "report")  # in dependency order
NUMPY_SIMD = "SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_ICL"
ENVIRONMENTS = {
    "this host": {},
    "16 cores, Sandy Bridge": {"OPENBLAS_NUM_THREADS": "16", "OPENBLAS_CORETYPE": "Sandybridge",
                               "NPY_DISABLE_CPU_FEATURES": "FMA3 AVX2 AVX512F AVX512CD AVX512_SKX AVX512_CLX "
                                                           "AVX512_ICL"},
    "3 cores, Nehalem, libm without AVX or FMA": {
        "OPENBLAS_NUM_THREADS": "3", "OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": NUMPY_SIMD,
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX,-AVX2,-FMA,-F16C,-AVX512F", "NUMBA_CPU_NAME": "nehalem"},
}


def workspace_copy(folder: Path) -> Path:
    """A copy of the workspace in ``folder`` without ``.git``, ``.venv`` and the DVC cache, where stages can run."""
    return Path(shutil.copytree(REPO, folder / "repo", symlinks=True,
                                ignore=lambda at, _: [".git", ".venv"] if Path(at) == REPO else
                                ["cache", "tmp"] if Path(at) == REPO / ".dvc" else []))


def outputs(stage: dict) -> list[str]:
    """Paths a dvc.yaml stage writes (outs, metrics, plots), each as listed."""
    return [next(iter(o)) if isinstance(o, dict) else o
            for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]


def differing(ours: Path, theirs: Path) -> list[str]:
    """Files under ``ours`` (a file or folder) missing from or not byte-identical to the same path under
    ``theirs``, and files only ``theirs`` has."""
    if ours.is_file() or theirs.is_file():
        return [] if ours.is_file() and theirs.is_file() and filecmp.cmp(ours, theirs, shallow=False) else [str(ours)]
    names = {p.relative_to(ours) for p in ours.rglob("*") if p.is_file()}
    names |= {p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file()}
    return sorted(str(ours / n) for n in names
                  if not ((ours / n).is_file() and (theirs / n).is_file()
                          and filecmp.cmp(ours / n, theirs / n, shallow=False)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--emulate", nargs="+", default=[], metavar="CPU", help="qemu -cpu models, e.g. Nehalem-v1")
    args = parser.parse_args()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True,
                           text=True).stdout
    if dirty:
        sys.exit(f"error: tracked files differ from the commit (git status):\n{dirty}commit or stash them: the stages "
                 "must run the committed code")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    from labelbench.data.files import DataError
    from labelbench.data.verify import verify

    try:  # what each run is compared with: the bytes dvc.lock records, not a stale or damaged workspace
        for stage in args.stages:
            for path in outputs(stages[stage]):
                verify(REPO / path)
    except DataError as exc:
        sys.exit(f"error: {exc}")
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "NPY_", "GLIBC_", "NUMBA_"))}
    python = str(Path(sys.prefix) / "bin" / "python")  # the venv's, unresolved, so that QEMU runs it as the venv
    same = True
    environments = {name: (None, changes) for name, changes in ENVIRONMENTS.items()}
    environments.update({f"QEMU {cpu}": (cpu, {}) for cpu in args.emulate})
    for name, (emulate, changes) in environments.items():
        with tempfile.TemporaryDirectory() as tmp:
            copy = workspace_copy(Path(tmp))
            print(f"{name}: {' '.join(f'{k}={v}' for k, v in changes.items()) or 'nothing set'}", flush=True)
            for stage in args.stages:
                for path in outputs(stages[stage]):  # what the stage writes must come from this run
                    target = copy / path
                    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
                start = time.perf_counter()
                command = stages[stage]["cmd"]
                if emulate:  # the stage's `python` run by QEMU (which follows forks, not execs)
                    command = f"qemu-x86_64 -cpu {emulate} {python} {command.removeprefix('python ')}"
                done = subprocess.run(command, shell=True, cwd=copy, capture_output=True, text=True,
                                      env={**base, **changes, "PATH": env_path})
                seconds = time.perf_counter() - start
                diff = [d for path in outputs(stages[stage]) for d in differing(copy / path, REPO / path)]
                same &= done.returncode == 0 and not diff
                verdict = "same bytes" if not diff else "DIFFERENT: " + ", ".join(
                    str(Path(d).relative_to(copy)) for d in diff)
                print(f"  {stage:15s} exit {done.returncode}  {seconds:6.1f} s  {verdict}", flush=True)
                if done.returncode:
                    print(done.stderr[-2000:], flush=True)
    print("every output the same bytes under every environment" if same else "outputs differ: see above")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

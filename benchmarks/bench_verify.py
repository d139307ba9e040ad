"""What checking stage inputs against DVC's recorded md5s (labelbench.data.verify) costs a stage.

Builds a quick trained clone of this checkout (``small_clone``: digits trained, 3 folds of 1 epoch at
8 px, roman-numeral evaluated), then times three stages from process start to outputs written, the
same command with verification and without it, alternating, in the same run:

* ``crossval@digits-test_resnet-0`` (reads data/raw/digits: 1,797 images + classes.txt, labels.csv, folds.csv);
* ``assemble@digits`` (reads 3 fold folders and labels.csv);
* ``evaluate`` (loads data/trained/digits; published data stay guarded by SHA256SUMS, not by this).

"Without" is the same command with dvc.lock moved aside, so that no output is recorded and
``verify`` finds nothing to check (one upward search for dvc.yaml). Also times the md5 alone of the
digits images and of data/trained/digits, and one read of dvc.lock (once per process), in this process.

    python benchmarks/bench_verify.py [--repeat 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import run, small_clone, venv_env  # noqa: E402

STAGES = {
    "crossval (one fold, 1 epoch at 8 px)": (
        "python stages/crossval.py --dataset digits --model test_resnet --fold 0 --images data/raw/digits/images "
        "--labels data/noisy/digits/labels.csv --folds data/folds/digits.csv --out {tmp}/fold"),
    "assemble": ("python stages/assemble.py --dataset digits --labels data/noisy/digits/labels.csv "
                 "--crossval-root data/crossval --out {tmp}/trained"),
    "evaluate": "python stages/evaluate.py --scores {tmp}/scores --metrics {tmp}/metrics --plots {tmp}/plots",
}


def timed(command: str, root: Path) -> float:
    env = venv_env()
    env["PYTHONPATH"] = str(root)
    started = time.perf_counter()
    subprocess.run(command, shell=True, cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_verify.") as tmp:
        root = small_clone(Path(tmp) / "clone", published=["roman-numeral"])
        run(["dvc", "pull", "-q", "data/published"], root)
        run(["dvc", "repro", "-q"], root)
        lock, aside = root / "dvc.lock", root / "dvc.lock.aside"
        sys.path.insert(0, str(root))
        from labelbench.data.verify import dir_listing

        for name, folder in (("md5 of data/raw/digits (1,797 images)", "data/raw/digits"),
                             ("md5 of data/trained/digits (npy files)", "data/trained/digits")):
            started = time.perf_counter()
            entries = dir_listing(root / folder)
            print(f"{name}: {len(entries)} files, {1000 * (time.perf_counter() - started):.1f} ms")
        # files.parse_yaml's own calls (a stage imports numpy with labelbench.data.files anyway)
        for name, code in (("ruamel.yaml safe, as files.parse_yaml and DVC",
                            "from ruamel.yaml import YAML; YAML(typ='safe').load(open('dvc.lock').read())"),
                           ("PyYAML CSafeLoader (before)",
                            "import yaml; yaml.load(open('dvc.lock').read(), Loader=yaml.CSafeLoader)")):
            timing = "import time; t = time.perf_counter(); " + code + "; print(time.perf_counter() - t)"
            took = statistics.median(float(subprocess.run([sys.executable, "-c", timing], cwd=root, check=True,
                                                          capture_output=True, text=True).stdout) for _ in range(5))
            print(f"dvc.lock read once (import included, fresh process, median of 5) by {name}: {1000 * took:.1f} ms")
        print(f"{'stage':40s} {'with (s)':>9s} {'without (s)':>11s} {'ratio':>6s}  (median of {args.repeat})")
        for name, command in STAGES.items():
            command = command.format(tmp=tmp)
            with_, without = [], []
            for _ in range(args.repeat):
                with_.append(timed(command, root))
                lock.rename(aside)
                try:
                    without.append(timed(command, root))
                finally:
                    aside.rename(lock)
            a, b = statistics.median(with_), statistics.median(without)
            print(f"{name:40s} {a:9.2f} {b:11.2f} {a / b:6.3f}  (+{1000 * (a - b):.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

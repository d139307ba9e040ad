"""Ray overhead per fold and the speed-up of two nodes over one, side by side in one run (docs/cluster.md).

    python benchmarks/bench_distribute.py [--folds 5] [--epochs 1] [--image-size 8]

On one machine, with the file-backed S3 server of `labelbench.ops.storage` as `storage` and small clones of this
checkout (digits, ``--folds`` folds, ``--epochs`` epochs at ``--image-size`` px):

* direct: in a clone whose upstream stages are done, ``dvc repro --single-item crossval@digits-test_resnet-<f>``
  for every fold, one after the other, each timed from process start to the outputs written (the baseline);
* 1 node: ``python -m labelbench.ops.distribute`` against a one-node ``ray.cluster_utils.Cluster`` (1 CPU), every
  fold trained (a fresh prefix of the bucket): the task phase's wall time (first submit to last result) as the
  driver prints it;
* 2 nodes: the same against a two-node cluster (1 CPU each), another fresh prefix.

Overhead per task = (1-node task phase) / folds - (direct mean): with one CPU, the tasks run one after the other, so
this is what a task adds to the same `dvc repro` (clone, the remote set up with `dvc remote modify --local`, its
inputs restored from `storage` into the node's shared DVC cache by the node's first task and checked out by every
task, pushes, the driver merging the task's dvc.lock entry, Ray scheduling); each task's phases are printed as the
driver reports them.
Both nodes share this machine's cores: the 2-node speed-up is bounded by the cores, not by the cluster.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import run, small_clone, venv_env  # noqa: E402
from labelbench.ops import storage  # noqa: E402


def clone(dest: Path, s3: Path, prefix: str, folds: int, epochs: int, image_size: int) -> Path:
    import yaml

    repo = small_clone(dest, published=["roman-numeral"], folds=folds)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(epochs=epochs, image_size=image_size)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "bench configuration", "--allow-empty"], repo)
    run(["dvc", "pull", "-q", "data/published"], repo)
    storage.configure(repo, s3)
    run(["dvc", "remote", "modify", "--local", "storage", "url", f"s3://{storage.BUCKET}/{prefix}"], repo)
    return repo


def on_cluster(repo: Path, nodes: int) -> dict:
    from ray.cluster_utils import Cluster

    args = {"num_cpus": 1, "object_store_memory": 80 * 1024**2}
    cluster = Cluster(initialize_head=True, head_node_args={**args, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**args)
        cluster.wait_for_nodes()
        start = time.perf_counter()
        done = run([sys.executable, "-m", "labelbench.ops.distribute", "--address", cluster.address], repo)
        total = time.perf_counter() - start
    finally:
        cluster.shutdown()
    text = done.stdout + done.stderr
    phase = float(re.search(r"cluster: .* in ([\d.]+) s", text).group(1))
    tasks = [float(t) for t in re.findall(r"^done crossval@\S+: trained on node \w+ in ([\d.]+) s", text, re.M)]
    loops = [float(t) for t in re.findall(r"training loop ([\d.]+) s", text)]
    lines = re.findall(r"^done crossval@.*$", text, re.M)  # each task's phases, as the driver prints them
    return {"phase": phase, "driver": total, "tasks": tasks, "loops": loops, "lines": lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=8)
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT)  # the Ray workers import labelbench.ops.distribute from this checkout
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    base = Path(tempfile.mkdtemp(prefix="bench-distribute-"))
    s3 = base / "s3"
    storage.start(s3)
    try:
        shape = (args.folds, args.epochs, args.image_size)
        direct_repo = clone(base / "direct", s3, "direct", *shape)
        run(["dvc", "repro", "-q", "folds@digits"], direct_repo)  # the upstream stages, not timed
        direct = []
        for fold in range(args.folds):
            start = time.perf_counter()
            run(["dvc", "repro", "--single-item", f"crossval@digits-test_resnet-{fold}"], direct_repo,
                env=venv_env())
            direct.append(time.perf_counter() - start)
        one = on_cluster(clone(base / "one", s3, "one", *shape), nodes=1)
        two = on_cluster(clone(base / "two", s3, "two", *shape), nodes=2)
    finally:
        storage.stop(s3)
        shutil.rmtree(base, ignore_errors=True)
    mean = sum(direct) / len(direct)
    per_task = one["phase"] / args.folds
    print(f"digits, {args.folds} folds, {args.epochs} epoch(s) at {args.image_size} px, test_resnet; "
          f"{os.cpu_count()} cores on this machine (load average {os.getloadavg()[0]:.1f})")
    print(f"direct `dvc repro --single-item crossval@…` (process start to outputs written): "
          f"mean {mean:.1f} s per fold, {sum(direct):.1f} s for all {args.folds}")
    print(f"1 node : task phase {one['phase']:.1f} s = {per_task:.1f} s per fold; inside the tasks "
          f"{sum(one['tasks']) / len(one['tasks']):.1f} s mean (training loop "
          f"{sum(one['loops']) / len(one['loops']):.1f} s); whole driver {one['driver']:.1f} s")
    for line in one["lines"]:
        print(f"  {line}")
    print(f"2 nodes: task phase {two['phase']:.1f} s; whole driver {two['driver']:.1f} s")
    for line in two["lines"]:
        print(f"  {line}")
    print(f"overhead per task: {per_task - mean:.1f} s over the direct `dvc repro` (1-node task phase / folds "
          f"minus the direct mean); speed-up of 2 nodes over 1: {one['phase'] / two['phase']:.2f}x "
          f"(task phases; both nodes share these {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""numpy's and OpenBLAS's numerics pinned before numpy loads (labelbench/evaluation/numerics.py): GLAD and cleanlab's
filters give the same bytes however the host would otherwise run them (threads, OpenBLAS kernels, numpy's instruction
sets)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import PUBLISHED, REPO_ROOT
from labelbench.evaluation.numerics import PINS

# GLAD on 12,000 synthetic images of 3 annotators: long enough vectors that OpenBLAS splits its dot products
# over threads (it does from 10,000 elements on), so both the thread count and the kernels reach the bytes.
GLAD_FIT = """
import hashlib
{first}
import numpy as np, pandas as pd
from labelbench.evaluation.multiannotator import glad
rng = np.random.default_rng(0)
truth = rng.integers(0, 10, 12000)
noisy = lambda p: np.where(rng.random(truth.size) < p, rng.integers(0, 10, truth.size), truth)
annotations = pd.DataFrame({{"a": noisy(0.2), "b": noisy(0.4), "c": noisy(0.6)}})
result = glad(annotations, max_iter=2)
print(hashlib.md5(result.annotator_quality.tobytes() + result.quality.tobytes()).hexdigest())
"""
# The benchmark stage's filters on roman-numeral: how many examples each flags (AVX2 vs baseline loops: 349 vs 350).
FILTERS = """
{first}
from labelbench.data.io import load_dataset
from labelbench.evaluation.benchmark import FILTER_BY, _find_label_issues
data = load_dataset("{published}", "roman-numeral", models=["resnet50d", "swin_base_patch4_window7_224"])
print([int(_find_label_issues(data.given_labels, probs, f).sum())
       for probs in data.pred_probs.values() for f in FILTER_BY])
"""
# How other hosts would run it: other thread counts, OpenBLAS's kernels for other processors, numpy's SIMD on.
HOSTS = [{"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Haswell"},
         {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Sandybridge"},
         {"OPENBLAS_NUM_THREADS": "2", "OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": "AVX2"}]


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in PINS}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**clean, **env},
                          capture_output=True, text=True)


def result(script: str, env: dict[str, str], *, pinned: bool) -> str:
    first = "from labelbench.evaluation import numerics; numerics.check()" if pinned else ""
    done = python(script.format(first=first, published=PUBLISHED), env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_glad_gives_the_same_bytes_however_the_host_would_run_it():
    hashes = {result(GLAD_FIT, env, pinned=True) for env in HOSTS}
    assert len(hashes) == 1, hashes


def test_without_the_pins_these_hosts_give_other_bytes():
    """The planted difference is real: unpinned, the same fit differs between the hosts above."""
    assert len({result(GLAD_FIT, env, pinned=False) for env in HOSTS[:2]}) == 2


def test_filters_flag_the_same_examples_however_the_host_would_run_them():
    assert len({result(FILTERS, env, pinned=True) for env in HOSTS}) == 1


def test_without_the_pins_filters_flag_other_examples_without_avx2():
    """numpy's AVX2 loops (here; AVX-512's agree) and its baseline ones (a processor without AVX2) flag others."""
    assert result(FILTERS, HOSTS[0], pinned=False) != result(FILTERS, HOSTS[2], pinned=False)


@pytest.mark.parametrize("env", HOSTS)
def test_the_pins_take_effect_whatever_the_environment_says(env):
    done = python("from labelbench.evaluation import numerics\nimport numpy\nnumerics.check()", env)
    assert done.returncode == 0, done.stderr


def test_check_refuses_numpy_loaded_first():
    done = python("import numpy\nfrom labelbench.evaluation import numerics\nnumerics.check()", HOSTS[0])
    assert done.returncode == 1
    assert "RuntimeError: numpy and SciPy need host-independent numerics, but numpy uses " in done.stderr
    assert "runs 2 threads of Haswell kernels" in done.stderr
    assert "numpy was loaded before labelbench.evaluation.numerics" in done.stderr


@pytest.mark.parametrize("stage", ["evaluate", "benchmark", "issues", "multiannotator", "report"])
def test_every_evaluation_stage_imports_the_pins_before_anything_else(stage):
    source = (REPO_ROOT / "stages" / f"{stage}.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    first_project = next(line for line in imports if "labelbench" in line)
    assert first_project.startswith("from labelbench.evaluation import numerics"), first_project
    assert "numerics.check()" in source

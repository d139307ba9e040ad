"""The same bytes on any x86-64 host for numpy and SciPy: pins set before numpy is loaded.

crowd-kit's GLAD fits ~50,000 parameters by SciPy's conjugate gradients, whose dot products go through
OpenBLAS: it picks its kernels by processor (Haswell, SkylakeX, ...) and splits long vectors over as many
threads as the host has cores, and numpy dispatches its ufuncs (float64 exp and log among them) by
instruction set. Each path rounds differently, and GLAD's iterations carry the difference on: on an AMD
EPYC (AVX2, 2 cores) its annotator alphas differed from the maintainers' Intel Xeon (AVX-512) by ~1e-9,
and with one thread or other kernels its AUROC moved in the fourth decimal. The benchmark stage's cleanlab
filters flagged other examples with numpy's baseline loops than with its AVX2 and AVX-512 ones (a processor
without AVX2: ``benchmarks/host_environments.py``). Every evaluation stage imports this module before numpy,
which fixes all three: one thread, OpenBLAS's SSE3 kernels (which every x86-64 has) and numpy's baseline
loops. :func:`check` refuses a process where they did not take effect.
"""

import functools
import os
import sys

#: numpy's optional instruction sets (its build's ``__cpu_dispatch__``, numpy 2.3): all of them off.
NUMPY_DISPATCH = ("SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2 AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX "
                  "AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR")
#: Read once by numpy and by each OpenBLAS (numpy's and SciPy's) when it loads. OpenBLAS names the SSE3
#: kernel set that Prescott and Core2 map to "Katmai".
PINS = {"OPENBLAS_NUM_THREADS": "1", "OPENBLAS_CORETYPE": "Katmai", "NPY_DISABLE_CPU_FEATURES": NUMPY_DISPATCH}

if "numpy" not in sys.modules:
    os.environ.update(PINS)


@functools.cache  # once passed, it holds for the process (a failure is not cached)
def check() -> None:
    """Raise RuntimeError unless numpy and every loaded OpenBLAS run with :data:`PINS`."""
    import scipy.linalg  # noqa: F401  loads SciPy's own OpenBLAS, so that it is checked too
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__  # what np.show_runtime reads
    from threadpoolctl import threadpool_info

    simd = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    unpinned = [f"numpy uses {', '.join(simd)}"] if simd else []
    unpinned += [f"{os.path.basename(p['filepath'])} runs {p['num_threads']} threads of {p['architecture']} kernels"
                 for p in threadpool_info() if p["internal_api"] == "openblas"
                 and (p["num_threads"] != 1 or p["architecture"] != PINS["OPENBLAS_CORETYPE"])]
    if unpinned:
        wanted = " ".join(f"{k}='{v}'" for k, v in PINS.items())
        raise RuntimeError(
            f"numpy and SciPy need host-independent numerics, but {'; '.join(unpinned)}: numpy was loaded before "
            f"labelbench.evaluation.numerics. Import it first, or start the process with {wanted}; otherwise the "
            f"outputs would differ from one host to another."
        )

"""The same bytes on any x86-64 host: pins for torch's CPU numerics, set before torch is loaded.

By default ATen dispatches its kernels by the host's instruction set (AVX2, AVX-512, ...), MKL picks its code
path by processor and oneDNN its kernels by instruction set and cache sizes, and each path rounds
differently, so CPU training gave other bytes on another machine. Importing this module before torch fixes
ATen's and MKL's paths; :func:`labelbench.train.crossval.torch_settings` adds one thread and oneDNN off, and
calls :func:`check` so that no CPU training runs in a process where the pins did not take effect.
"""

import os
import sys

#: Read once by each library when it initialises: ATen's portable kernels, MKL's conditional numerical
#: reproducibility at its SSE2-compatible path, oneDNN at SSE4.1 (for any op that still reaches it).
PINS = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}

if "torch" not in sys.modules:
    os.environ.update(PINS)


def check() -> None:
    """Raise RuntimeError unless torch runs with :data:`PINS` (CPU training would differ by host)."""
    import torch

    differ = {k: os.environ.get(k) for k, v in PINS.items() if os.environ.get(k) != v}
    capability = torch.backends.cpu.get_cpu_capability()
    if differ or capability != "DEFAULT":
        wanted = " ".join(f"{k}={v}" for k, v in PINS.items())
        raise RuntimeError(
            f"CPU training needs host-independent kernels, but this process has {differ or {}} and ATen capability "
            f"{capability}: torch was loaded before labelbench.train.host. Import it first, or start the process "
            f"with {wanted}; otherwise the outputs would differ from one host to another."
        )

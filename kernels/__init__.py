"""Triton kernels and their plain-PyTorch references. This package never imports `model/`.

Kernel modules are imported lazily (they decorate functions with `@triton.jit`, which reads
`TRITON_INTERPRET` at that moment), so importing `kernels` itself is cheap and has no side effects.
"""

from __future__ import annotations

import os


def triton_status() -> tuple[bool, str]:
    """Can Triton kernels run here? Returns (usable, reason). They run on a CUDA GPU, or anywhere under
    Triton's CPU interpreter (`TRITON_INTERPRET=1`, slow: for tests)."""
    try:
        import triton  # noqa: F401
    except Exception as err:  # ImportError on macOS/Windows, or a broken install
        return False, f"triton is not importable ({type(err).__name__}: {err})"
    import torch

    if torch.cuda.is_available():
        return True, f"CUDA device {torch.cuda.get_device_name()}"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return True, "Triton CPU interpreter (TRITON_INTERPRET=1)"
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels in Triton's slow CPU interpreter)"

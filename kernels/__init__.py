"""Triton kernels and their plain-PyTorch references. This package never imports `model/`.

The public API, at the package:

    from kernels import flash_attention          # flash_attention(q, k, v, causal=True, sm_scale=None)
    from kernels import rms_norm, layer_norm, apply_rotary, swiglu, fused_linear_cross_entropy

Files: reference.py (attention by its definition: the oracle), flash_kernels.py (FlashAttention-2 device code),
flash.py (its host code: launches, autograd, custom ops), norms.py, rope.py, glu.py, cross_entropy.py (the
fused LM kernels), bench/ (benchmarks and the compile report).

Kernel modules are imported lazily, on first use of one of these names (they decorate functions with
`@triton.jit`, which reads `TRITON_INTERPRET` at that moment), so importing `kernels` itself is cheap and has no
side effects.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "flash_attention": "kernels.flash",
    "attention_reference": "kernels.reference",
    "rms_norm": "kernels.norms",
    "layer_norm": "kernels.norms",
    "apply_rotary": "kernels.rope",
    "swiglu": "kernels.glu",
    "fused_linear_cross_entropy": "kernels.cross_entropy",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kernels' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


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
        if problem := interpreter_problem():
            return False, problem
        return True, "Triton CPU interpreter (TRITON_INTERPRET=1)"
    return False, "no CUDA device (set TRITON_INTERPRET=1 to run the kernels in Triton's slow CPU interpreter)"


def interpreter_problem(triton_version: str | None = None, numpy_version: str | None = None) -> str | None:
    """Why Triton's CPU interpreter cannot run our kernels with these versions, or None. Triton before 3.7
    turns a scalar kernel argument into a Python int with `int(array)`, which NumPy 2.4 and later refuse for
    one-element arrays ("only 0-dimensional arrays can be converted to Python scalars"); Triton 3.7 fixed it.
    Compiled kernels on a GPU are not affected."""
    import numpy
    import triton

    triton_version = triton_version or triton.__version__
    numpy_version = numpy_version or numpy.__version__
    if _release(triton_version) < (3, 7) and _release(numpy_version) >= (2, 4):
        return (
            f"Triton {triton_version}'s CPU interpreter fails with NumPy {numpy_version} (Triton < 3.7 needs "
            f"NumPy < 2.4): pip install 'numpy<2.4', or triton>=3.7"
        )
    return None


def _release(version: str) -> tuple[int, int]:
    """'3.6.0+git1234' -> (3, 6)."""
    major, minor = (version.split("+")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)

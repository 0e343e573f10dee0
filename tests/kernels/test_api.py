"""The public kernel API lives at the package: `from kernels import flash_attention` is the function (not the
module), likewise the fused LM kernels; importing `kernels` alone loads no kernel module."""

from __future__ import annotations

import inspect
import subprocess
import sys

import torch

from tests.kernels import DEVICE
from tests.paths import REPO


def test_importing_kernels_is_lazy() -> None:
    code = "import sys, kernels\nassert not [m for m in sys.modules if m.startswith('kernels.')], sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_flash_attention_is_the_function_and_runs() -> None:
    from kernels import attention_reference, flash_attention

    params = list(inspect.signature(flash_attention).parameters)
    assert params[:5] == ["q", "k", "v", "causal", "sm_scale"]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 8, 16, generator=g).to(DEVICE) for _ in range(3))
    torch.testing.assert_close(flash_attention(q, k, v), attention_reference(q, k, v), rtol=1e-4, atol=1e-5)


def test_fused_lm_kernels_are_functions() -> None:
    import kernels

    for name in ("rms_norm", "layer_norm", "apply_rotary", "swiglu", "fused_linear_cross_entropy"):
        assert inspect.isfunction(getattr(kernels, name)), name

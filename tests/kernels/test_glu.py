"""SwiGLU kernel against the float64 PyTorch definition: output and both input gradients, per dtype."""

from __future__ import annotations

import pytest
import torch

from kernels.glu import swiglu, swiglu_reference
from tests.kernels import DEVICE

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-6)
    assert err <= tol * scale, f"{name}: max error {err:.3e} > {tol} x {scale:.3e}"


def check_swiglu(gate: torch.Tensor, up: torch.Tensor, tol: float) -> None:
    out = swiglu(gate, up)
    assert out.dtype == gate.dtype and out.shape == gate.shape
    dout = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.device, out.dtype)
    dgate, dup = torch.autograd.grad(out, [gate, up], dout)

    gate64, up64 = (t.detach().double().requires_grad_(True) for t in (gate, up))
    out64 = swiglu_reference(gate64, up64)
    dgate64, dup64 = torch.autograd.grad(out64, [gate64, up64], dout.double())
    assert_close(out, out64, tol, "out")
    assert_close(dgate, dgate64, tol, "dgate")
    assert_close(dup, dup64, tol, "dup")


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", [(1, 32), (7, 100), (2, 16, 768), (3, 5000)])  # 5000: several blocks a row
def test_swiglu_matches_float64_reference(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    gate = (3 * torch.randn(shape, generator=g)).to(DEVICE, dtype).requires_grad_(True)
    up = torch.randn(shape, generator=g).to(DEVICE, dtype).requires_grad_(True)
    check_swiglu(gate, up, TOL[dtype])


def test_halves_of_one_fused_projection_need_no_copy() -> None:
    gu = torch.randn(2, 5, 2 * 48, generator=torch.Generator().manual_seed(1)).to(DEVICE).requires_grad_(True)
    gate, up = gu.chunk(2, dim=-1)  # row-strided views
    check_swiglu(gate, up, TOL[torch.float32])


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # the interpreter's numpy
def test_large_gates_stay_finite() -> None:
    gate = torch.tensor([[-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4]], device=DEVICE, requires_grad=True)
    up = torch.ones_like(gate, requires_grad=True)
    out = swiglu(gate, up)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(gate.grad).all() and torch.isfinite(up.grad).all()
    check_swiglu(gate, up, TOL[torch.float32])


def test_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="match"):
        swiglu(torch.randn(2, 4), torch.randn(2, 5))
    with pytest.raises(ValueError, match="match"):
        swiglu(torch.randn(2, 4), torch.randn(2, 4, dtype=torch.float16))

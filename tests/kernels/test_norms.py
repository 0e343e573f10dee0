"""RMSNorm / LayerNorm kernels against the float64 PyTorch definition: output and all gradients, per dtype."""

from __future__ import annotations

import pytest
import torch

from kernels.norms import MAX_C, layer_norm, layer_norm_reference, rms_norm, rms_norm_reference
from tests.kernels import DEVICE

# max |ours - float64| / max |float64|; bf16 is looser still because the interpreter truncates on casts
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}
DTYPES = list(TOL)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-6)
    assert err <= tol * scale, f"{name}: max error {err:.3e} > {tol} x {scale:.3e}"


def check_norm(
    kind: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, tol: float, eps: float = 1e-5
) -> None:
    """Run ours and the float64 reference on the same values; compare y, dx, dw (and db)."""
    leaves = [t for t in (x, w, b) if t is not None]
    for t in leaves:
        t.requires_grad_(True)
    y = rms_norm(x, w, eps) if kind == "rms" else layer_norm(x, w, b, eps)
    assert y.dtype == x.dtype and y.shape == x.shape
    dy = torch.randn(y.shape, dtype=y.dtype, device=y.device)
    grads = torch.autograd.grad(y, leaves, dy)

    leaves64 = [t.detach().double().requires_grad_(True) for t in leaves]
    x64, w64, b64 = leaves64[0], leaves64[1], (leaves64[2] if b is not None else None)
    y64 = rms_norm_reference(x64, w64, eps) if kind == "rms" else layer_norm_reference(x64, w64, b64, eps)
    grads64 = torch.autograd.grad(y64, leaves64, dy.double())

    assert_close(y, y64, tol, "y")
    for name, g, g64, leaf in zip(("dx", "dw", "db")[: len(leaves)], grads, grads64, leaves, strict=True):
        assert g.dtype == leaf.dtype, f"{name} dtype {g.dtype} != {leaf.dtype}"
        assert_close(g, g64, tol, name)


@pytest.mark.parametrize("kind", ["rms", "layer", "layer_nobias"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 32), (7, 100), (2, 16, 768)])
def test_norm_matches_float64_reference(kind: str, dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    C = shape[-1]
    x = (torch.randn(shape, generator=g) * 2 + 0.5).to(DEVICE, dtype)  # non-zero mean: exercises the centring
    w = (1 + 0.5 * torch.randn(C, generator=g)).to(DEVICE, dtype)
    b = torch.randn(C, generator=g).to(DEVICE, dtype) if kind == "layer" else None
    check_norm("rms" if kind == "rms" else "layer", x, w, b, TOL[dtype])


@pytest.mark.parametrize("kind", ["rms", "layer"])
def test_wide_rows_and_fp32_weight_with_bf16_activations(kind: str) -> None:
    g = torch.Generator().manual_seed(1)
    C = 8192
    x = torch.randn(3, C, generator=g).to(DEVICE, torch.bfloat16)
    w, b = (1 + 0.1 * torch.randn(C, generator=g)).to(DEVICE), (0.1 * torch.randn(C, generator=g)).to(DEVICE)  # fp32
    check_norm(kind, x, w, b if kind == "layer" else None, TOL[torch.bfloat16])


def test_strided_input_and_many_rows_per_backward_program() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 3, 40, generator=g).to(DEVICE).transpose(0, 1)  # (3, 10, 40), not contiguous
    w, b = (torch.randn(40, generator=g).to(DEVICE) for _ in range(2))
    check_norm("layer", x, w, b, TOL[torch.float32])


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="weight"):
        rms_norm(torch.randn(4, 8), torch.randn(9))
    with pytest.raises(ValueError, match="MAX_C"):
        rms_norm(torch.randn(1, MAX_C + 1), torch.randn(MAX_C + 1))

"""Rotary embedding kernel against the float64 PyTorch definition: output and input gradient, per layout."""

from __future__ import annotations

import pytest
import torch

from kernels.rope import apply_rotary, apply_rotary_reference
from tests.kernels import DEVICE

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-6)
    assert err <= tol * scale, f"{name}: max error {err:.3e} > {tol} x {scale:.3e}"


def rope_tables(T: int, D: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, D/2) fp32 cos and sin tables, as a model builds them."""
    inv_freq = theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # (D/2,)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, D/2)
    return angles.cos().float(), angles.sin().float()


def check_rotary(x: torch.Tensor, tol: float) -> torch.Tensor:
    """x: a (B, H, T, D) leaf of any layout. Compares out and dx with float64; returns out."""
    T, D = x.shape[2], x.shape[3]
    cos, sin = (t.to(x.device) for t in rope_tables(T, D))
    out = apply_rotary(x, cos, sin)
    g = torch.Generator().manual_seed(99)
    dout = torch.randn(x.shape[0], T, x.shape[1], D, generator=g).to(x.device, x.dtype).transpose(1, 2)  # strided
    (dx,) = torch.autograd.grad(out, [x], dout)

    x64 = x.detach().double().requires_grad_(True)
    out64 = apply_rotary_reference(x64, cos.double(), sin.double())
    (dx64,) = torch.autograd.grad(out64, [x64], dout.double())
    assert out.dtype == x.dtype and dx.dtype == x.dtype
    assert_close(out, out64, tol, "out")
    assert_close(dx, dx64, tol, "dx")
    return out


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize("shape", [(1, 1, 1, 32), (2, 3, 7, 100), (2, 4, 64, 128)])
@pytest.mark.parametrize("layout", ["bhtd", "bthd_transposed"])
def test_rotary_matches_float64_reference(dtype: torch.dtype, shape: tuple[int, ...], layout: str) -> None:
    B, H, T, D = shape
    g = torch.Generator().manual_seed(0)
    if layout == "bhtd":
        x = torch.randn(B, H, T, D, generator=g).to(DEVICE, dtype)
    else:  # how attention usually gets q: a (B, T, H, D) projection viewed as (B, H, T, D)
        x = torch.randn(B, T, H, D, generator=g).to(DEVICE, dtype).transpose(1, 2)
    x.requires_grad_(True)
    out = check_rotary(x, TOL[dtype])
    assert out.stride() == x.stride(), "a dense input's layout is kept (no hidden copy to contiguous)"


def test_non_dense_view_of_a_fused_qkv_projection() -> None:
    B, T, H, D = 2, 9, 3, 16
    qkv = torch.randn(B, T, 3 * H * D, generator=torch.Generator().manual_seed(1)).to(DEVICE).requires_grad_(True)
    q = qkv[..., : H * D].view(B, T, H, D).transpose(1, 2)  # (B, H, T, D), row stride 3 * H * D
    check_rotary(q, TOL[torch.float32])


def test_rotation_keeps_pair_norms_and_position_zero() -> None:
    x = torch.randn(1, 2, 5, 8, device=DEVICE)
    out = apply_rotary(x, *(t.to(DEVICE) for t in rope_tables(5, 8)))
    pair_norm = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # (B, H, T, D/2)
    torch.testing.assert_close(pair_norm(out), pair_norm(x))
    torch.testing.assert_close(out[:, :, 0], x[:, :, 0])  # angle 0 at position 0


def test_rejects_bad_shapes() -> None:
    cos, sin = rope_tables(4, 8)
    with pytest.raises(ValueError, match="cos and sin"):
        apply_rotary(torch.randn(1, 1, 5, 8), cos, sin)
    with pytest.raises(ValueError, match="D even"):
        apply_rotary(torch.randn(1, 1, 4, 7), cos, sin)

"""Fused linear + cross-entropy against the float64 definition, and proof that it never holds N x V logits."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kernels.cross_entropy import (
    MAX_BLOCK_V,
    MIN_CHUNK,
    default_chunk_size,
    fused_linear_cross_entropy,
    fused_linear_cross_entropy_reference,
)
from tests.kernels import DEVICE

# max |ours - float64| / max |float64|, for the loss and both gradients
TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = (actual.double() - expected).abs().max().item()
    scale = max(expected.abs().max().item(), 1e-6)
    assert err <= tol * scale, f"{name}: max error {err:.3e} > {tol} x {scale:.3e}"


def make_inputs(
    N: int, C: int, V: int, dtype: torch.dtype, n_ignored: int = 0, ignore_index: int = -100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, generator=g).to(DEVICE, dtype).requires_grad_(True)
    w = (torch.randn(V, C, generator=g) / C**0.5).to(DEVICE, dtype).requires_grad_(True)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[torch.randperm(N, generator=g)[:n_ignored]] = ignore_index
    return x, w, targets.to(DEVICE)


def check_loss(
    x: torch.Tensor,
    w: torch.Tensor,
    targets: torch.Tensor,
    tol: float,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Loss and both gradients (through a non-unit grad_output) against float64; returns the loss."""
    loss = fused_linear_cross_entropy(x, w, targets, ignore_index=ignore_index, chunk_size=chunk_size)
    assert loss.dtype == torch.float32 and loss.shape == ()
    dx, dw = torch.autograd.grad(2.5 * loss, [x, w])
    x64, w64 = (t.detach().double().requires_grad_(True) for t in (x, w))
    loss64 = fused_linear_cross_entropy_reference(x64, w64, targets, ignore_index)
    dx64, dw64 = torch.autograd.grad(2.5 * loss64, [x64, w64])
    assert_close(loss, loss64, tol, "loss")
    assert dx.dtype == x.dtype and dw.dtype == w.dtype
    assert_close(dx, dx64, tol, "dx")
    assert_close(dw, dw64, tol, "dw")
    return loss


@pytest.mark.parametrize("dtype", list(TOL))
@pytest.mark.parametrize(
    "N, C, V, chunk_size, n_ignored",
    [
        (1, 32, 100, None, 0),  # one row, V inside one block with a masked tail
        (7, 100, 1000, 3, 2),  # chunks of 3 do not divide 7; ignored rows
        (24, 32, MAX_BLOCK_V + 100, 10, 5),  # V spans two blocks, not a multiple of the block
        (64, 768, 1000, None, 3),
    ],
)
def test_matches_float64_reference(
    dtype: torch.dtype, N: int, C: int, V: int, chunk_size: int | None, n_ignored: int
) -> None:
    x, w, targets = make_inputs(N, C, V, dtype, n_ignored)
    check_loss(x, w, targets, TOL[dtype], chunk_size=chunk_size)


def test_custom_ignore_index_and_leading_dims() -> None:
    x, w, targets = make_inputs(12, 16, 50, torch.float32, n_ignored=4, ignore_index=7)
    x3 = x.detach().view(3, 4, 16).requires_grad_(True)  # (B, T, C) with targets (B, T)
    loss = fused_linear_cross_entropy(x3, w, targets.view(3, 4), ignore_index=7, chunk_size=5)
    expected = fused_linear_cross_entropy_reference(x.double(), w.double(), targets, ignore_index=7)
    torch.testing.assert_close(loss.double(), expected, rtol=1e-6, atol=0)
    loss.backward()
    assert x3.grad.shape == (3, 4, 16)


def test_all_rows_ignored_gives_zero_loss_and_zero_grads() -> None:
    x, w, targets = make_inputs(5, 16, 50, torch.float32, n_ignored=5)
    loss = fused_linear_cross_entropy(x, w, targets, chunk_size=2)
    loss.backward()
    assert loss.item() == 0.0
    assert (x.grad == 0).all() and (w.grad == 0).all()


def test_frozen_head_no_grad_mode_and_out_of_range_targets() -> None:
    x, w, targets = make_inputs(9, 16, 40, torch.float32, n_ignored=2)
    w.requires_grad_(False)  # a frozen LM head: only x gets a gradient
    loss = fused_linear_cross_entropy(x, w, targets, chunk_size=4)
    loss.backward()
    assert w.grad is None and x.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(fused_linear_cross_entropy(x, w, targets, chunk_size=4), loss.detach())
    targets[0] = 40  # out of range: a NaN loss rather than a silently wrong number
    assert torch.isnan(fused_linear_cross_entropy(x.detach(), w, targets))


def test_autocast_casts_like_linear_and_mismatched_dtypes_raise() -> None:
    x, w, targets = make_inputs(8, 16, 40, torch.float32)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        loss = fused_linear_cross_entropy(x, w, targets)
    loss.backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32  # back through the casts
    expected = fused_linear_cross_entropy_reference(x.bfloat16().double(), w.bfloat16().double(), targets)
    assert abs(loss.item() - expected.item()) < 1e-2 * expected.item()
    with pytest.raises(ValueError, match="dtype"):
        fused_linear_cross_entropy(x, w.detach().half(), targets)


class _LargestTensor(TorchDispatchMode):
    """Records the bytes of the largest tensor any aten op produces (allocations included)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN201 (torch's protocol)
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.max_bytes = max(self.max_bytes, t.numel() * t.element_size())
        return out


def test_never_materialises_all_logits() -> None:
    N, C, V, chunk = 64, 8, 512, 16  # N x V is 4x one chunk, 8x x and 64x the weight
    x, w, targets = make_inputs(N, C, V, torch.float32, n_ignored=10)
    with _LargestTensor() as largest:
        fused_linear_cross_entropy(x, w, targets, chunk_size=chunk).backward()
    assert largest.max_bytes <= chunk * V * 4, f"largest tensor {largest.max_bytes} B > one chunk of logits"
    assert largest.max_bytes < N * V * 2, "even a bf16 N x V tensor would be caught"
    with _LargestTensor() as largest:  # the check itself: the PyTorch path does allocate N x V
        fused_linear_cross_entropy_reference(x.detach(), w.detach(), targets)
    assert largest.max_bytes >= N * V * 4


def test_default_chunk_keeps_logits_about_the_size_of_x() -> None:
    for N, C, V in [(16384, 768, 50304), (16384, 2048, 32768), (65536, 512, 50304), (100, 64, 50304)]:
        chunk = default_chunk_size(N, C, V)
        assert 1 <= chunk <= N
        assert chunk * V <= max(2 * N * C, MIN_CHUNK * V), (N, C, V, chunk)
    assert default_chunk_size(16384, 768, 50304) == MIN_CHUNK == 1024


def test_traced_low_precision_weight_gradient_accumulates_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path torch.compile traces on a GPU, on meta tensors: bf16 operands, an fp32 (V, C) sum, without
    addmm(out_dtype=), whose fake-tensor rule torch 2.11 gets wrong (eager CUDA runs the real kernel: the
    tests above cover it on a GPU)."""
    from kernels.cross_entropy import _accumulate_grad_weight

    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    acc = torch.zeros(300, 32, device="meta")
    dz = torch.empty(9, 300, dtype=torch.bfloat16, device="meta")
    out = _accumulate_grad_weight(acc, dz, torch.empty(9, 32, dtype=torch.bfloat16, device="meta"))
    assert out.shape == (300, 32) and out.dtype == torch.float32 and out.device.type == "meta"

"""Rotary position embedding (RoPE; Su et al. 2021, "RoFormer"), forward and backward, in Triton.

The "rotate-half" convention of GPT-NeoX and LLaMA: a head vector of size D is split into halves
x1 = x[..., :D/2] and x2 = x[..., D/2:], and pair i = (x1[i], x2[i]) is rotated by the angle t * theta_i of
its position t:

    out = cat(x1 * cos - x2 * sin,  x2 * cos + x1 * sin)          cos, sin: (T, D/2), fp32

A rotation is orthogonal, so the backward pass is the rotation by -theta (the same kernel with sin negated):

    dx1 = g1 * cos + g2 * sin,   dx2 = g2 * cos - g1 * sin

There is no gradient for cos / sin: they are a fixed table (the caller builds it once from rope_theta).

Legend: B batch, H heads, T positions, D head size. x may be any strided (B, H, T, D) view - typically the
transpose of a (B, T, H, D) projection - so the kernel takes all four strides of its input and of its output
instead of forcing a copy. One program rotates a (BLOCK_T, D/2) tile of one (batch, head).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

TILE_ELEMENTS = 4096  # BLOCK_T * BLOCK_HALF per program: enough work per program, few registers


# ----------------------------------------------------------------------------------------------------------
# The definition in PyTorch: the test oracle (pass float64 tensors).


def apply_rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE by the definition; x (B, H, T, D), cos / sin (T, D/2). Computes in at least fp32."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    x1, x2 = xf.chunk(2, dim=-1)  # (B, H, T, D/2) each
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# Kernel


@triton.jit
def _rotary_kernel(
    X, COS, SIN, OUT,
    stride_xb, stride_xh, stride_xt, stride_xd,
    stride_ob, stride_oh, stride_ot, stride_od,
    H, T, HALF,
    BACKWARD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_HALF: tl.constexpr,
):  # fmt: skip
    pid_bh = tl.program_id(0)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)  # (BLOCK_T,)
    d = tl.arange(0, BLOCK_HALF)  # (BLOCK_HALF,)
    mask = (t[:, None] < T) & (d[None, :] < HALF)  # (BLOCK_T, BLOCK_HALF)

    cs = t[:, None] * HALF + d[None, :]  # cos / sin are contiguous (T, HALF)
    cos = tl.load(COS + cs, mask=mask, other=0.0)
    sin = tl.load(SIN + cs, mask=mask, other=0.0)
    if BACKWARD:
        sin = -sin

    x1_ptrs = X + b * stride_xb + h * stride_xh + t[:, None] * stride_xt + d[None, :] * stride_xd
    x1 = tl.load(x1_ptrs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x1_ptrs + HALF * stride_xd, mask=mask, other=0.0).to(tl.float32)

    o1_ptrs = OUT + b * stride_ob + h * stride_oh + t[:, None] * stride_ot + d[None, :] * stride_od
    tl.store(o1_ptrs, (x1 * cos - x2 * sin).to(OUT.dtype.element_ty), mask=mask)
    tl.store(o1_ptrs + HALF * stride_od, (x2 * cos + x1 * sin).to(OUT.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launch configuration


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    """Launch the kernel on a strided (B, H, T, D) x; the output keeps x's layout when x is dense."""
    B, H, T, D = x.shape
    out = torch.empty_like(x)  # preserves a dense permuted layout (e.g. the transpose of (B, T, H, D))
    if out.numel() == 0:
        return out
    BLOCK_HALF = triton.next_power_of_2(D // 2)
    BLOCK_T = max(1, min(triton.next_power_of_2(T), TILE_ELEMENTS // BLOCK_HALF))
    grid = (B * H, triton.cdiv(T, BLOCK_T))
    _rotary_kernel[grid](
        x, cos, sin, out, *x.stride(), *out.stride(), H, T, D // 2,
        BACKWARD=backward, BLOCK_T=BLOCK_T, BLOCK_HALF=BLOCK_HALF, num_warps=8,
    )  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------
# Autograd


class _RotaryFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        if x.dim() != 4 or x.shape[-1] % 2 != 0:
            raise ValueError(f"x must be (B, H, T, D) with D even, got shape {tuple(x.shape)}")
        T, D = x.shape[2], x.shape[3]
        if cos.shape != (T, D // 2) or sin.shape != (T, D // 2):
            raise ValueError(
                f"cos and sin must be (T, D/2) = ({T}, {D // 2}), got {tuple(cos.shape)} and {tuple(sin.shape)}"
            )
        if not (cos.device == sin.device == x.device):
            raise ValueError("x, cos and sin must be on one device")
        cos = cos.to(torch.float32).contiguous()
        sin = sin.to(torch.float32).contiguous()
        ctx.save_for_backward(cos, sin)
        return _rotate(x, cos, sin, backward=False)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        cos, sin = ctx.saved_tensors
        return _rotate(grad, cos, sin, backward=True), None, None


# ----------------------------------------------------------------------------------------------------------
# Public function


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on x (B, H, T, D) with cos / sin (T, D/2) (cast to fp32). Any strides; computes in
    fp32 and returns x.dtype, laid out like x when x is dense. No gradient flows to cos / sin."""
    return _RotaryFunction.apply(x, cos, sin)

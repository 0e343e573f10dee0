"""RMSNorm and LayerNorm over the last dimension, forward and backward, in Triton.

    LayerNorm (Ba et al. 2016):        y = (x - mean(x)) * rstd * w + b,   rstd = 1 / sqrt(var(x) + eps)
    RMSNorm (Zhang & Sennrich 2019):   y = x * rstd * w,                   rstd = 1 / sqrt(mean(x^2) + eps)

Legend: N rows (every leading dimension flattened), C the normalised width (n_embd).

Forward: one program per row holds the whole row (BLOCK_C = next_power_of_2(C)), computes the statistics in
fp32, writes y in x's dtype and saves rstd (and the mean) per row - 4 to 8 bytes a row, so the backward pass
needs no second reduction over x.

Backward, with xhat = (x - mean) * rstd (mean = 0 for RMSNorm) and wdy = w * dy:

    dx = rstd * (wdy - mean(wdy * xhat) * xhat - mean(wdy))     # the last term only for LayerNorm
    dw = sum over rows of dy * xhat,   db = sum over rows of dy

A fixed number of programs each walk a contiguous range of rows, accumulate their dw / db partial sums in fp32
registers and write them to a (programs, C) buffer that PyTorch sums: deterministic, no atomics. This is the
layout of Liger-Kernel's norm backward; the Triton tutorial's layer-norm uses locks and atomics instead.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_C = 16384  # one row lives in registers; wider rows would spill heavily


# ----------------------------------------------------------------------------------------------------------
# The definitions in PyTorch: the test oracle (pass float64 tensors) and a readable statement of the math.


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """y = x / sqrt(mean(x^2) + eps) * weight over the last dim, in at least fp32; returns x.dtype."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * rstd * weight.to(xf.dtype)).to(x.dtype)


def layer_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5
) -> torch.Tensor:
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased var, as nn.LayerNorm)."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    xc = xf - xf.mean(-1, keepdim=True)
    y = xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps) * weight.to(xf.dtype)
    if bias is not None:
        y = y + bias.to(xf.dtype)
    return y.to(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _norm_fwd_kernel(
    X, W, B, Y, MEAN, RSTD,  # pointers; B and MEAN are unused when HAS_BIAS / not RMS say so
    stride_x, stride_y, C, eps,
    RMS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_C)
    mask = cols < C
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if RMS:
        xc = x
    else:
        mean = tl.sum(x, axis=0) / C
        xc = tl.where(mask, x - mean, 0.0)
        tl.store(MEAN + row, mean)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / C + eps)
    tl.store(RSTD + row, rstd)
    y = xc * rstd * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y += tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _norm_bwd_kernel(
    X, W, DY, DX, MEAN, RSTD, DW_PARTIAL, DB_PARTIAL,  # DW/DB_PARTIAL: (programs, C) fp32
    stride_x, stride_dy, stride_dx, N, C, rows_per_program,
    RMS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_C)
    mask = cols < C
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    db_acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, N)
    first = row_start.to(tl.int64)  # pointers advance by one row per trip; int64 so N * C may pass 2^31
    x_ptrs = X + first * stride_x + cols
    dy_ptrs = DY + first * stride_dy + cols
    dx_ptrs = DX + first * stride_dx + cols
    for row in range(row_start, row_end):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptrs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        if RMS:
            xhat = x * rstd
        else:
            xhat = tl.where(mask, (x - tl.load(MEAN + row)) * rstd, 0.0)
        wdy = w * dy
        dx = wdy - xhat * (tl.sum(wdy * xhat, axis=0) / C)
        if not RMS:
            dx -= tl.sum(wdy, axis=0) / C
        tl.store(dx_ptrs, (dx * rstd).to(DX.dtype.element_ty), mask=mask)
        dw_acc += dy * xhat
        if HAS_BIAS:
            db_acc += dy
        x_ptrs += stride_x
        dy_ptrs += stride_dy
        dx_ptrs += stride_dx
    tl.store(DW_PARTIAL + pid * C + cols, dw_acc, mask=mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid * C + cols, db_acc, mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launch configurations


def _row_config(C: int) -> tuple[int, int]:
    """(BLOCK_C, num_warps) for a kernel that keeps one row of width C in registers."""
    if C > MAX_C:
        raise ValueError(f"normalised width C={C} is above the fused kernels' limit MAX_C={MAX_C}")
    block = triton.next_power_of_2(C)
    # sm_90, bf16 LayerNorm backward: 80-130 registers a thread, no spills up to 8192 (some at 16384)
    num_warps = 16 if block >= 4096 else 8 if block >= 2048 else 4
    return block, num_warps


def _backward_programs(n_rows: int, device: torch.device) -> tuple[int, int]:
    """(programs, rows_per_program) for the backward pass: a few programs per SM on a GPU, 4 on CPU."""
    target = 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
    rows_per_program = triton.cdiv(n_rows, min(target, n_rows))
    return triton.cdiv(n_rows, rows_per_program), rows_per_program


def _as_rows(t: torch.Tensor, C: int) -> torch.Tensor:
    """(..., C) -> (N, C) with unit stride along C (a view when possible)."""
    t = t.reshape(-1, C)
    return t if t.stride(-1) == 1 else t.contiguous()


# ----------------------------------------------------------------------------------------------------------
# Autograd


class _NormFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        eps: float,
        rms: bool,
    ) -> torch.Tensor:
        C = x.shape[-1]
        if weight.shape != (C,) or (bias is not None and bias.shape != (C,)):
            raise ValueError(f"weight/bias must have shape ({C},) for x of shape {tuple(x.shape)}")
        if not (x.device == weight.device and (bias is None or bias.device == x.device)):
            raise ValueError("x, weight and bias must be on one device")
        BLOCK_C, num_warps = _row_config(C)
        x2 = _as_rows(x, C)  # (N, C)
        weight = weight.contiguous()
        bias = bias.contiguous() if bias is not None else None
        N = x2.shape[0]
        y = torch.empty((N, C), dtype=x.dtype, device=x.device)
        rstd = torch.empty(N, dtype=torch.float32, device=x.device)
        mean = rstd if rms else torch.empty(N, dtype=torch.float32, device=x.device)
        if N > 0:
            _norm_fwd_kernel[(N,)](
                x2, weight, bias if bias is not None else weight, y, mean, rstd,
                x2.stride(0), y.stride(0), C, eps,
                RMS=rms, HAS_BIAS=bias is not None, BLOCK_C=BLOCK_C, num_warps=num_warps,
            )  # fmt: skip
        ctx.save_for_backward(x2, weight, mean, rstd)
        ctx.rms, ctx.has_bias, ctx.x_shape = rms, bias is not None, x.shape
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y.view(x.shape)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, None, None]:
        x2, weight, mean, rstd = ctx.saved_tensors
        N, C = x2.shape
        BLOCK_C, num_warps = _row_config(C)
        dy2 = _as_rows(dy, C)
        dx = torch.empty_like(x2, memory_format=torch.contiguous_format)
        programs, rows_per_program = _backward_programs(max(N, 1), x2.device)
        dw_partial = torch.zeros((programs, C), dtype=torch.float32, device=x2.device)
        db_partial = torch.zeros((programs, C), dtype=torch.float32, device=x2.device) if ctx.has_bias else None
        if N > 0:
            _norm_bwd_kernel[(programs,)](
                x2, weight, dy2, dx, mean, rstd, dw_partial, db_partial if ctx.has_bias else dw_partial,
                x2.stride(0), dy2.stride(0), dx.stride(0), N, C, rows_per_program,
                RMS=ctx.rms, HAS_BIAS=ctx.has_bias, BLOCK_C=BLOCK_C, num_warps=num_warps,
            )  # fmt: skip
        dw = dw_partial.sum(0).to(weight.dtype)
        db = db_partial.sum(0).to(ctx.bias_dtype) if ctx.has_bias else None
        return dx.view(ctx.x_shape), dw, db, None, None


# ----------------------------------------------------------------------------------------------------------
# Public functions


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm over the last dim of x (any leading shape), fused forward + backward. Computes in fp32 and
    returns x.dtype; weight may have another dtype (e.g. fp32 parameters with bf16 activations)."""
    return _NormFunction.apply(x, weight, None, eps, True)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last dim of x (any leading shape), bias optional, fused forward + backward. Computes
    in fp32 and returns x.dtype."""
    return _NormFunction.apply(x, weight, bias, eps, False)

"""SwiGLU, the gated MLP activation of LLaMA (Shazeer 2020, "GLU Variants Improve Transformer"), in Triton.

    h = silu(gate) * up,          silu(a) = a * sigmoid(a)

with gate = x W_gate and up = x W_up computed by the caller's matmuls. Fusing the elementwise part saves
the round trip of silu(gate) through memory in the forward pass and of three intermediates in the backward:

    d up   = g * silu(gate)
    d gate = g * up * sigmoid(gate) * (1 + gate * (1 - sigmoid(gate)))

Nothing extra is saved: the backward pass recomputes sigmoid(gate) from gate, which it reads anyway.

Legend: N rows (every leading dimension flattened), F the hidden width. Rows may be strided, so a gate / up
pair produced by chunking one fused projection, (N, 2F).chunk(2, -1), needs no copy. One program handles
BLOCK_F columns of one row; all math is fp32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_F = 2048


# ----------------------------------------------------------------------------------------------------------
# The definition in PyTorch: the test oracle (pass float64 tensors).


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, computed in at least fp32, returned in gate.dtype."""
    dtype = torch.promote_types(gate.dtype, torch.float32)
    return (torch.nn.functional.silu(gate.to(dtype)) * up.to(dtype)).to(gate.dtype)


# ----------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _swiglu_fwd_kernel(
    GATE, UP, OUT, stride_g, stride_u, stride_o, F,
    BLOCK_F: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = cols < F
    a = tl.load(GATE + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    silu = a / (1.0 + tl.exp(-a))
    tl.store(OUT + row * stride_o + cols, (silu * u).to(OUT.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(
    GATE, UP, DOUT, DGATE, DUP, stride_g, stride_u, stride_do, stride_dg, stride_du, F,
    BLOCK_F: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    mask = cols < F
    a = tl.load(GATE + row * stride_g + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_u + cols, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(DOUT + row * stride_do + cols, mask=mask, other=0.0).to(tl.float32)
    sig = 1.0 / (1.0 + tl.exp(-a))  # exp overflows to inf for a << 0: sig -> 0, still finite
    silu = a * sig
    dgate = g * u * sig * (1.0 + a * (1.0 - sig))
    tl.store(DGATE + row * stride_dg + cols, dgate.to(DGATE.dtype.element_ty), mask=mask)
    tl.store(DUP + row * stride_du + cols, (g * silu).to(DUP.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launch configuration


def _config(F: int) -> tuple[int, int]:
    """(BLOCK_F, num_warps): up to MAX_BLOCK_F columns per program, 8 per thread at most."""
    block = min(triton.next_power_of_2(F), MAX_BLOCK_F)
    return block, max(1, min(8, block // 256))


def _as_rows(t: torch.Tensor, F: int) -> torch.Tensor:
    """(..., F) -> (N, F) with unit stride along F (a view when possible)."""
    t = t.reshape(-1, F)
    return t if t.stride(-1) == 1 else t.contiguous()


# ----------------------------------------------------------------------------------------------------------
# Autograd


class _SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        if gate.shape != up.shape or gate.dtype != up.dtype or gate.device != up.device:
            raise ValueError(
                f"gate and up must match in shape, dtype and device: {tuple(gate.shape)} {gate.dtype} "
                f"{gate.device} vs {tuple(up.shape)} {up.dtype} {up.device}"
            )
        F = gate.shape[-1]
        g2, u2 = _as_rows(gate, F), _as_rows(up, F)  # (N, F)
        out = torch.empty(g2.shape, dtype=gate.dtype, device=gate.device)
        if out.numel() > 0:
            BLOCK_F, num_warps = _config(F)
            grid = (g2.shape[0], triton.cdiv(F, BLOCK_F))
            _swiglu_fwd_kernel[grid](
                g2,
                u2,
                out,
                g2.stride(0),
                u2.stride(0),
                out.stride(0),
                F,
                BLOCK_F=BLOCK_F,
                num_warps=num_warps,
            )
        ctx.save_for_backward(g2, u2)
        ctx.shape = gate.shape
        return out.view(gate.shape)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dout: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g2, u2 = ctx.saved_tensors
        F = g2.shape[-1]
        do2 = _as_rows(dout, F)
        dgate = torch.empty(g2.shape, dtype=g2.dtype, device=g2.device)
        dup = torch.empty(g2.shape, dtype=g2.dtype, device=g2.device)
        if dgate.numel() > 0:
            BLOCK_F, num_warps = _config(F)
            grid = (g2.shape[0], triton.cdiv(F, BLOCK_F))
            _swiglu_bwd_kernel[grid](
                g2, u2, do2, dgate, dup,
                g2.stride(0), u2.stride(0), do2.stride(0), dgate.stride(0), dup.stride(0), F,
                BLOCK_F=BLOCK_F, num_warps=num_warps,
            )  # fmt: skip
        return dgate.view(ctx.shape), dup.view(ctx.shape)


# ----------------------------------------------------------------------------------------------------------
# Public function


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, elementwise, fused forward + backward; gate and up of one shape and dtype (row-strided
    views such as the two halves of one projection are fine). Computes in fp32, returns gate.dtype."""
    return _SwiGLUFunction.apply(gate, up)

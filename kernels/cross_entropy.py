"""Fused linear + cross-entropy: the LM head's loss without ever holding all (tokens x vocab) logits.

    loss = mean over rows n with targets[n] != ignore_index of  logsumexp(z_n) - z_n[targets[n]],
    z = x W^T                                                     x: (N, C), W: (V, C), z: (N, V)

For a small model with a big vocabulary the logits are the largest tensor of the whole step: at N = 16k
tokens and V = 50k they take 3.3 GB in fp32 (plus as much for their gradient), against 25 MB for x at C = 768.
Following Liger-Kernel's FusedLinearCrossEntropy (Hsu et al. 2024), the forward pass walks the tokens in
chunks:

    z_c   = x_c W^T                          (n, V)  one matmul in the input dtype (torch / cuBLAS)
    kernel: per row, an online logsumexp over V in blocks (fp32; Milakov & Gimelshein 2018), the row's loss,
            then dz = (softmax(z) - onehot(target)) / n_valid written over z_c in place
    dx_c  = dz W                             (n, C)
    dW   += dz^T x_c                         (V, C)  accumulated in fp32, rounded to W's dtype once

so the gradient is done by the end of the forward pass and the backward pass only scales it by the incoming
grad_output. Peak extra memory is one chunk of logits (chunk_size x V, in x's dtype) plus dx and dW, which
backpropagation needs anyway (dW in fp32 while it accumulates). n_valid stays on the device (no host sync);
when no row is valid the loss is 0 with zero gradients (PyTorch's mean over nothing is NaN).

Legend: N tokens (rows), C hidden size (n_embd), V vocabulary size, n rows in one chunk.
Numerics: the logits and their gradient are rounded to x's dtype (as in the PyTorch path, whose matmul
output has that dtype), but the logsumexp, softmax and loss are fp32. dW is accumulated across chunks in fp32:
summing bf16 partial products instead (one rounding per chunk, as Liger-Kernel does) measured ~4% max error at
64 chunks against 0.3% for one matmul. On CUDA that is cuBLAS's bf16-in / fp32-out GEMM
(torch.addmm(out_dtype=), torch >= 2.8). The default chunk has at least MIN_CHUNK rows, so each chunk's dW
matmul stays compute-bound despite reading and writing the fp32 accumulator.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_BLOCK_V = 8192  # vocabulary columns per loop trip
MIN_CHUNK = 1024  # smallest default chunk: keeps each chunk's matmuls large enough to run near peak


# ----------------------------------------------------------------------------------------------------------
# The definition in PyTorch: the test oracle (pass float64 tensors).


def fused_linear_cross_entropy_reference(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100
) -> torch.Tensor:
    """F.cross_entropy(x @ weight.T, targets) in at least fp32, all N x V logits at once; 0 if no target."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    logits = x.to(dtype) @ weight.to(dtype).T  # (N, V)
    loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    return loss / (targets != ignore_index).sum().clamp(min=1)


# ----------------------------------------------------------------------------------------------------------
# Kernel


@triton.jit
def _cross_entropy_chunk_kernel(
    LOGITS,  # (n, V) in: logits z; out: d loss / d z
    TARGETS, LOSS, INV_N,  # (n,) int, (n,) fp32 out, () fp32 = 1 / max(n_valid, 1)
    stride_row, V, ignore_index,
    BLOCK_V: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    z_row = LOGITS + row * stride_row
    target = tl.load(TARGETS + row)
    cols = tl.arange(0, BLOCK_V)
    if target == ignore_index:  # no loss, zero gradient
        for start in range(0, V, BLOCK_V):
            zeros = tl.zeros((BLOCK_V,), dtype=LOGITS.dtype.element_ty)
            tl.store(z_row + start + cols, zeros, mask=start + cols < V)
        tl.store(LOSS + row, 0.0)
    else:
        # Pass 1: online logsumexp. m_i: running max, l_i: running sum of exp(z - m_i).
        m_i = float("-inf")
        l_i = 0.0
        for start in range(0, V, BLOCK_V):
            z = tl.load(z_row + start + cols, mask=start + cols < V, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m_i, tl.max(z, axis=0))  # finite: every block holds at least one column
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
            m_i = m_new
        lse = m_i + tl.log(l_i)
        # An out-of-range target reads NaN, so the loss says so instead of being silently wrong.
        in_range = (target >= 0) & (target < V)
        z_target = tl.load(z_row + target, mask=in_range, other=float("nan")).to(tl.float32)
        tl.store(LOSS + row, lse - z_target)
        # Pass 2: overwrite the logits with (softmax - onehot) / n_valid.
        inv_n = tl.load(INV_N)
        for start in range(0, V, BLOCK_V):
            offs = start + cols
            mask = offs < V
            z = tl.load(z_row + offs, mask=mask, other=0.0).to(tl.float32)
            dz = (tl.exp(z - lse) - tl.where(offs == target, 1.0, 0.0)) * inv_n
            tl.store(z_row + offs, dz.to(LOGITS.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------------------------------------
# Launch configuration and the chunk loop


def default_chunk_size(N: int, C: int, V: int) -> int:
    """Rows per chunk so that one chunk of logits (rows, V) is about as large as x (N, C); a power of two,
    at least MIN_CHUNK (for matmul efficiency) and at most N."""
    rows = triton.next_power_of_2(triton.cdiv(N, triton.cdiv(V, C)))
    return max(1, min(N, max(rows, MIN_CHUNK)))


def _kernel_config(V: int) -> tuple[int, int]:
    """(BLOCK_V, num_warps) for the per-row kernel: 16 fp32 values per thread at the largest block."""
    block = min(triton.next_power_of_2(V), MAX_BLOCK_V)
    return block, max(1, min(16, block // 512))


def _accumulate_grad_weight(acc: torch.Tensor, dz: torch.Tensor, x_c: torch.Tensor) -> torch.Tensor:
    """acc + dz^T x_c with acc (V, C) fp32 and dz, x_c possibly fp16 / bf16 (fp32 accumulation throughout)."""
    if dz.dtype == torch.float32:
        return acc.addmm_(dz.t(), x_c)
    if dz.device.type == "cpu":  # CPU (tests): the same sum, upcast operands (no low-precision-in, fp32-out mm)
        return acc.addmm_(dz.t().float(), x_c.float())
    if torch.compiler.is_compiling():  # traced: torch 2.11's fake-tensor rule for addmm(out_dtype=) is broken
        return acc + torch.mm(dz.t(), x_c, out_dtype=torch.float32)
    return torch.addmm(acc, dz.t(), x_c, out_dtype=torch.float32)  # tensor cores in, fp32 sum out, one pass


def _loss_and_grads(
    x: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    chunk_size: int,
    need_dx: bool,
    need_dw: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The chunk loop: (loss, d loss / d x or None, d loss / d weight or None)."""
    N, V = x.shape[0], weight.shape[0]
    BLOCK_V, num_warps = _kernel_config(V)
    inv_n = 1.0 / (targets != ignore_index).sum().clamp(min=1).to(torch.float32)  # () on the device
    loss_rows = torch.empty(N, dtype=torch.float32, device=x.device)
    grad_x = torch.empty(x.shape, dtype=x.dtype, device=x.device) if need_dx else None
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_dw else None
    logits = torch.empty((min(chunk_size, N), V), dtype=x.dtype, device=x.device)  # the only (rows, V) buffer
    for start in range(0, N, chunk_size):
        x_c = x[start : start + chunk_size]  # (n, C)
        n = x_c.shape[0]
        z = torch.mm(x_c, weight.t(), out=logits[:n])  # (n, V)
        _cross_entropy_chunk_kernel[(n,)](
            z, targets[start : start + n], loss_rows[start : start + n], inv_n, z.stride(0), V, ignore_index,
            BLOCK_V=BLOCK_V, num_warps=num_warps,
        )  # fmt: skip
        if need_dx:
            torch.mm(z, weight, out=grad_x[start : start + n])  # (n, C)
        if need_dw:
            grad_w = _accumulate_grad_weight(grad_w, z, x_c)  # (V, C)
    grad_w = grad_w.to(weight.dtype) if need_dw else None
    return loss_rows.sum() * inv_n, grad_x, grad_w


# ----------------------------------------------------------------------------------------------------------
# Autograd


def _check_inputs(x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int) -> None:
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"x must be (N, C) and weight (V, C); got {tuple(x.shape)} and {tuple(weight.shape)}")
    if targets.shape != (x.shape[0],) or targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"targets must be int64 or int32 of shape ({x.shape[0]},); got {targets.dtype} {tuple(targets.shape)}"
        )
    if x.dtype != weight.dtype:
        raise ValueError(f"x and weight must share a dtype (outside autocast); got {x.dtype} and {weight.dtype}")
    if not (x.device == weight.device == targets.device):
        raise ValueError("x, weight and targets must be on one device")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")


class _FusedLinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        chunk_size: int,
    ) -> torch.Tensor:
        need_dx, need_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, grad_x, grad_w = _loss_and_grads(x, weight, targets, ignore_index, chunk_size, need_dx, need_dw)
        ctx.save_for_backward(grad_x, grad_w)
        return loss

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        grad_x, grad_w = ctx.saved_tensors  # d loss / d (x, weight) from the forward pass
        grad_x = grad_x * grad_loss if grad_x is not None else None
        grad_w = grad_w * grad_loss if grad_w is not None else None
        return grad_x, grad_w, None, None, None


# ----------------------------------------------------------------------------------------------------------
# Public function


def fused_linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the logits x @ weight.T against targets, never materialising all of them.

    x: (N, C) hidden states (or (..., C) with targets (...)), weight: (V, C) the LM head without bias,
    targets: int64 class indices, `ignore_index` rows skipped. Returns an fp32 scalar equal to
    F.cross_entropy(x @ weight.T, targets, ignore_index=ignore_index) (0.0 when no row is valid). Under
    autocast x and weight are cast to the autocast dtype first, as F.linear would do; otherwise they must
    share a dtype. The gradients are computed during the forward pass: it costs three matmuls, not one,
    unless grad mode is off (or neither x nor weight requires grad).
    """
    C = x.shape[-1]
    x, targets = x.reshape(-1, C), targets.reshape(-1).contiguous()  # the kernel reads targets densely
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x, weight = x.to(dtype), weight.to(dtype)
    chunk_size = default_chunk_size(x.shape[0], C, weight.shape[0]) if chunk_size is None else chunk_size
    _check_inputs(x, weight, targets, chunk_size)
    if not torch.is_grad_enabled():  # evaluation: only the loss (the gradient matmuls are skipped)
        return _loss_and_grads(x, weight, targets, ignore_index, chunk_size, False, False)[0]
    return _FusedLinearCrossEntropyFunction.apply(x, weight, targets, ignore_index, chunk_size)

"""FlashAttention-2 in Triton: exact attention, fused, forward and backward, in O(T) memory.

Dao, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning" (2023), after
Dao et al., "FlashAttention" (2022) and the Triton fused-attention tutorial (Tillet et al.). Forward: one
program per (query block, batch x head), online softmax in base 2 (scale folded with log2(e): exp2, not exp):

    for each key block j:
        s = q k_j^T * scale * log2(e)                        (BLOCK_M, BLOCK_N)
        m_new = max(m_i, rowmax(s));  p = exp2(s - m_new);  alpha = exp2(m_i - m_new)
        l_i = l_i * alpha + rowsum(p);  acc = acc * alpha + p v_j;  m_i = m_new
    o = acc / l_i;  lse = m_i + log2(l_i)                    (the row log-sum-exp, saved for the backward)

With a causal mask the key blocks that every row of the query block may see run unmasked; only the block(s)
crossing the diagonal pay for the mask. Backward: delta = rowsum(o * do) (preprocess kernel), then with
p = exp2(s - lse): dv = p^T do, dp = do v^T, ds = p (dp - delta), dk = ds^T q * scale, dq = ds k * scale.
dK/dV keep a key block resident and loop over query blocks (and over the query heads of a GQA group); dQ keeps
a query block resident and loops over key blocks. No atomics: results are deterministic.

Legend: B batch, H query heads, Hkv key/value heads (grouped-query attention: query head h reads kv head
h // (H // Hkv)), Tq, Tk query and key lengths, D head size. Queries are the *last* Tq positions, so the
causal mask is bottom-right aligned - query i sees key j <= i + Tk - Tq - exactly as `kernels/reference.py`.
A query row that sees no key (only when Tq > Tk) gets output 0 and gradient 0: masks are -inf, with guards.

Numerics: fp32, fp16 and bf16 inputs, fp32 accumulation. fp32 inputs get fp32-accurate dots (tf32x3) unless
`torch.backends.cuda.matmul.allow_tf32` asks for tf32, as PyTorch's own matmuls do (Triton's default would be
tf32, about 3 significant digits, silently). fp32 is for checking, not speed: it runs one small fixed tile
config (fp32 tiles of the autotuned sizes overflow shared memory at D = 128). The interpreter computes bf16
`tl.dot` wrongly (triton#11584), so off the GPU bf16 dot operands are upcast to fp32 (DOT="upcast"); on the
GPU the 16-bit dots run natively on the tensor cores.
"""

import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl
from torch import Tensor

SUPPORTED_HEAD_DIMS: tuple[int, ...] = (16, 32, 64, 128)
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
LOG2E: float = math.log2(math.e)
INTERPRETER_CONFIG: dict[str, int] = {"BLOCK_M": 64, "BLOCK_N": 64}  # big blocks: the interpreter is serial
# fp32 on a GPU: fp32 tiles take twice the shared memory; at D = 128 this one needs at most 104 KiB (sm_90)
FP32_CONFIG: dict[str, int] = {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
AUTOTUNE_MIN_WORK: int = 512 * 512  # Tq * Tk below this: no autotuning on the GPU


def supported_head_dims() -> tuple[int, ...]:
    """The head sizes D the kernels are compiled for (`tl.arange` needs a power of two; 128 is the largest
    that keeps a query tile and its accumulator in registers). No tensor or GPU needed to ask."""
    return SUPPORTED_HEAD_DIMS


# Kernels keep the Triton tutorial's dense argument lists (one argument per line would double the file).
# fmt: off
@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    """a @ b in fp32, `a` cast to b's dtype (p and ds are fp32, v and q are not). DOT: "tensor" (tensor cores:
    16-bit operands natively, fp32 ones as tf32), "fp32" (fp32 operands as three tf32 products, Triton's
    tf32x3: about fp32 accuracy, still on the tensor cores) or "upcast" (both operands to fp32: the
    interpreter's bf16 dot is wrong; it ignores input_precision and is exact in fp32)."""
    if DOT == "upcast":
        out = tl.dot(a.to(tl.float32), b.to(tl.float32))
    elif DOT == "fp32":
        out = tl.dot(a.to(b.dtype), b, input_precision="tf32x3")
    else:
        out = tl.dot(a.to(b.dtype), b)
    return out


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, offs_m, lo, hi, qk_scale, seqlen_k, diag,
                    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                    DOT: tl.constexpr):
    """Fold key blocks [lo, hi) into the running (acc, l_i, m_i). MASKED blocks check bounds and causality."""
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        kT_ptrs = K + offs_n[None, :] * stride_kn + offs_d[:, None]  # (D, BLOCK_N)
        v_ptrs = V + offs_n[:, None] * stride_vn + offs_d[None, :]  # (BLOCK_N, D)
        if MASKED:
            kT = tl.load(kT_ptrs, mask=offs_n[None, :] < seqlen_k, other=0.0)
            v = tl.load(v_ptrs, mask=offs_n[:, None] < seqlen_k, other=0.0)
        else:
            kT = tl.load(kT_ptrs)
            v = tl.load(v_ptrs)
        s = _dot(q, kT, DOT) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASKED:
            visible = offs_n[None, :] < seqlen_k
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + diag)
            s = tl.where(visible, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_sub = tl.where(m_new == float("-inf"), 0.0, m_new)  # no visible key yet: avoid -inf - -inf
        else:
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_sub = m_new
        p = tl.math.exp2(s - m_sub[:, None])
        alpha = tl.math.exp2(m_i - m_sub)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p, v, DOT)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _kv_range(start_m, seqlen_k, diag, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    """Key ranges for a query block: [0, n_full) every row sees; [n_full, n_end) needs the mask."""
    if CAUSAL:
        n_full = tl.maximum(start_m + diag + 1, 0) // BLOCK_N * BLOCK_N  # row start_m sees j <= start_m+diag
        n_end = tl.minimum(tl.maximum(start_m + BLOCK_M + diag, 0), seqlen_k)
    else:
        n_full = seqlen_k // BLOCK_N * BLOCK_N
        n_end = seqlen_k
    return n_full, n_end


@triton.jit
def _attn_fwd(Q, K, V, Out, LSE,
              stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
              stride_vb, stride_vh, stride_vn,
              qk_scale, n_heads, n_rep, seqlen_q, seqlen_k, q_bucket, k_bucket,  # buckets: autotune key only
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
              DOT: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1)
    off_b = (off_bh // n_heads).to(tl.int64)
    off_h = off_bh % n_heads
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    diag = seqlen_k - seqlen_q  # bottom-right causal alignment
    row_ok = offs_m[:, None] < seqlen_q
    q_ptrs = Q + off_b * stride_qb + off_h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok, other=0.0)  # (BLOCK_M, D)
    K += off_b * stride_kb + (off_h // n_rep) * stride_kh
    V += off_b * stride_vb + (off_h // n_rep) * stride_vh
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_full, n_end = _kv_range(start_m, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, offs_m, 0, n_full, qk_scale,
                                    seqlen_k, diag, HEAD_DIM, BLOCK_N, False, CAUSAL, DOT)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, stride_kn, stride_vn, offs_m, n_full, n_end,
                                    qk_scale, seqlen_k, diag, HEAD_DIM, BLOCK_N, True, CAUSAL, DOT)
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # a row with no visible key: output 0, lse +inf (so p = 0)
    lse = tl.where(l_i == 0.0, float("inf"), m_i + tl.math.log2(l_safe))
    o_ptrs = Out + off_bh.to(tl.int64) * seqlen_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(o_ptrs, (acc / l_safe[:, None]).to(Out.dtype.element_ty), mask=row_ok)
    tl.store(LSE + off_bh * seqlen_q + offs_m, lse, mask=offs_m < seqlen_q)


@triton.jit
def _attn_bwd_preprocess(Out, DO, DELTA, seqlen_q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
    """delta = rowsum(o * do): the softmax-Jacobian term shared by every key block of a row."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    off_bh = tl.program_id(1)
    offs_d = tl.arange(0, HEAD_DIM)
    offs = off_bh.to(tl.int64) * seqlen_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    row_ok = offs_m[:, None] < seqlen_q
    o = tl.load(Out + offs, mask=row_ok, other=0.0).to(tl.float32)
    do = tl.load(DO + offs, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(DELTA + off_bh * seqlen_q + offs_m, tl.sum(o * do, axis=1), mask=offs_m < seqlen_q)


@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, offs_n, lo, hi, qk_scale, seqlen_q, diag,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr,
                         DOT: tl.constexpr):
    """Accumulate dk, dv of one resident key block over query blocks [lo, hi) of one query head."""
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_m in range(lo, hi, BLOCK_M):
        offs_m = start_m + offs_m0
        row_ok = offs_m < seqlen_q  # rows past Tq load q = do = 0 and lse = +inf: they add nothing
        qT = tl.load(Q + offs_m[None, :] * HEAD_DIM + offs_d[:, None], mask=row_ok[None, :], other=0.0)
        do = tl.load(DO + offs_m[:, None] * HEAD_DIM + offs_d[None, :], mask=row_ok[:, None], other=0.0)
        lse = tl.load(LSE + offs_m, mask=row_ok, other=float("inf"))
        delta = tl.load(DELTA + offs_m, mask=row_ok, other=0.0)
        sT = _dot(k, qT, DOT) * qk_scale  # (BLOCK_N, BLOCK_M)
        if MASKED:
            sT = tl.where(offs_n[:, None] <= offs_m[None, :] + diag, sT, float("-inf"))
        pT = tl.math.exp2(sT - lse[None, :])
        dv += _dot(pT, do, DOT)
        dpT = _dot(v, tl.trans(do), DOT)
        dsT = pT * (dpT - delta[None, :])
        dk += _dot(dsT, tl.trans(qT), DOT)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, LSE, DELTA, sm_scale, qk_scale, n_heads, n_rep, seqlen_q, seqlen_k,
                   q_bucket, k_bucket, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, DOT: tl.constexpr):
    start_n = tl.program_id(0) * BLOCK_N
    off_bhkv = tl.program_id(1).to(tl.int64)  # b * Hkv + hkv; every tensor here is contiguous
    off_b = off_bhkv // (n_heads // n_rep)
    off_hkv = off_bhkv % (n_heads // n_rep)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv_offs = off_bhkv * seqlen_k * HEAD_DIM + offs_n[:, None] * HEAD_DIM + offs_d[None, :]
    col_ok = offs_n[:, None] < seqlen_k  # keys past Tk only pollute their own (unstored) rows of dk, dv
    k = tl.load(K + kv_offs, mask=col_ok, other=0.0)  # (BLOCK_N, D)
    v = tl.load(V + kv_offs, mask=col_ok, other=0.0)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    diag = seqlen_k - seqlen_q
    if CAUSAL:  # query i sees key j iff i >= j - diag
        m_lo = tl.maximum(start_n - diag, 0) // BLOCK_M * BLOCK_M
        m_full = tl.minimum((tl.maximum(start_n + BLOCK_N - 1 - diag, 0) + BLOCK_M - 1) // BLOCK_M * BLOCK_M,
                            seqlen_q)  # rows from here on see the whole key block
        m_open = tl.maximum(m_full, m_lo)
    else:
        m_lo = 0
        m_full = 0
        m_open = 0
    for g in range(0, n_rep):  # the query heads sharing this key/value head, summed in registers
        off_bh = off_b * n_heads + off_hkv * n_rep + g
        q_base = off_bh * seqlen_q * HEAD_DIM
        Qh, DOh, LSEh, DELTAh = Q + q_base, DO + q_base, LSE + off_bh * seqlen_q, DELTA + off_bh * seqlen_q
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Qh, DOh, LSEh, DELTAh, offs_n, m_lo, m_full, qk_scale,
                                      seqlen_q, diag, HEAD_DIM, BLOCK_M, True, DOT)
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, Qh, DOh, LSEh, DELTAh, offs_n, m_open, seqlen_q, qk_scale,
                                      seqlen_q, diag, HEAD_DIM, BLOCK_M, False, DOT)
    tl.store(DK + kv_offs, (dk * sm_scale).to(DK.dtype.element_ty), mask=col_ok)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=col_ok)


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, lo, hi, qk_scale, seqlen_k, diag,
                       HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
                       CAUSAL: tl.constexpr, DOT: tl.constexpr):
    """Accumulate dq of one resident query block over key blocks [lo, hi)."""
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for start_n in range(lo, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        t_offs = offs_n[None, :] * HEAD_DIM + offs_d[:, None]  # (D, BLOCK_N)
        if MASKED:
            kT = tl.load(K + t_offs, mask=offs_n[None, :] < seqlen_k, other=0.0)
            vT = tl.load(V + t_offs, mask=offs_n[None, :] < seqlen_k, other=0.0)
        else:
            kT = tl.load(K + t_offs)
            vT = tl.load(V + t_offs)
        s = _dot(q, kT, DOT) * qk_scale  # (BLOCK_M, BLOCK_N)
        if MASKED:
            visible = offs_n[None, :] < seqlen_k
            if CAUSAL:
                visible = visible & (offs_n[None, :] <= offs_m[:, None] + diag)
            s = tl.where(visible, s, float("-inf"))
        p = tl.math.exp2(s - lse[:, None])
        ds = p * (_dot(do, vT, DOT) - delta[:, None])
        dq += _dot(ds, tl.trans(kT), DOT)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA, sm_scale, qk_scale, n_heads, n_rep, seqlen_q, seqlen_k,
                 q_bucket, k_bucket, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr, DOT: tl.constexpr):
    start_m = tl.program_id(0) * BLOCK_M
    off_bh = tl.program_id(1).to(tl.int64)
    off_bhkv = (off_bh // n_heads) * (n_heads // n_rep) + (off_bh % n_heads) // n_rep
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = offs_m < seqlen_q
    q_offs = off_bh * seqlen_q * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    q = tl.load(Q + q_offs, mask=row_ok[:, None], other=0.0)  # (BLOCK_M, D)
    do = tl.load(DO + q_offs, mask=row_ok[:, None], other=0.0)
    lse = tl.load(LSE + off_bh * seqlen_q + offs_m, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + off_bh * seqlen_q + offs_m, mask=row_ok, other=0.0)
    K += off_bhkv * seqlen_k * HEAD_DIM
    V += off_bhkv * seqlen_k * HEAD_DIM
    diag = seqlen_k - seqlen_q
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_full, n_end = _kv_range(start_m, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, 0, n_full, qk_scale, seqlen_k, diag,
                            HEAD_DIM, BLOCK_N, False, CAUSAL, DOT)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, n_full, n_end, qk_scale, seqlen_k, diag,
                            HEAD_DIM, BLOCK_N, True, CAUSAL, DOT)
    tl.store(DQ + q_offs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


# fmt: on


# ----------------------------------------------------------------------------- launch configs
def _configs(candidates: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) -> triton.Config, for the autotuner on a GPU."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm, bn, w, s in candidates
    ]


def _prune(resident: str, streamed: str, acc_tiles: int) -> Callable[..., list[triton.Config]]:
    """Drop configs whose tiles overflow shared memory (Hopper: 227 KiB per block) or whose fp32
    accumulators (acc_tiles x resident rows x D) need more than 64 registers per thread with 4 warps, or 128
    with 8 (the budgets under which no 16-bit config spilled when compiled for sm_90 by Triton 3.6 and read
    with cuobjdump; over them, two did). Small problems (decode steps, tests) keep only the first config
    left: one compile, no tuning."""

    def prune(configs: list[triton.Config], named_args: dict, **kwargs: object) -> list[triton.Config]:
        args = {**named_args, **kwargs}  # the launch's arguments, by name
        head_dim, elem = args["HEAD_DIM"], args["Q"].element_size()
        kept = []
        for c in configs:
            rows, cols = c.kwargs[resident], c.kwargs[streamed]
            smem = elem * head_dim * (2 * rows + 2 * cols * c.num_stages)  # an upper bound
            registers = acc_tiles * rows * head_dim / (32 * c.num_warps)  # per thread
            if smem <= 200 * 1024 and registers <= (64 if c.num_warps < 8 else 128):
                kept.append(c)
        small = args["seqlen_q"] * args["seqlen_k"] < AUTOTUNE_MIN_WORK
        return (kept or configs)[: 1 if small else len(configs)]

    return prune


KEY = ["HEAD_DIM", "CAUSAL", "DOT", "q_bucket", "k_bucket"]  # the autotuner adds the tensors' dtypes
_attn_fwd_tuned = triton.autotune(
    _configs([(64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2)]),
    key=KEY,
    prune_configs_by={"early_config_prune": _prune("BLOCK_M", "BLOCK_N", 1)},
)(_attn_fwd)
_attn_bwd_dkdv_tuned = triton.autotune(  # resident keys: BLOCK_N; streamed queries: BLOCK_M
    _configs([(32, 64, 4, 2), (64, 64, 4, 2), (32, 64, 8, 2), (64, 64, 8, 2), (32, 128, 8, 2)]),
    key=KEY,
    prune_configs_by={"early_config_prune": _prune("BLOCK_N", "BLOCK_M", 2)},
)(_attn_bwd_dkdv)
_attn_bwd_dq_tuned = triton.autotune(  # resident queries: BLOCK_M; streamed keys: BLOCK_N
    _configs([(64, 32, 4, 2), (64, 64, 4, 2), (128, 32, 8, 2), (128, 64, 8, 2)]),
    key=KEY,
    prune_configs_by={"early_config_prune": _prune("BLOCK_M", "BLOCK_N", 1)},
)(_attn_bwd_dq)


def _launch(kernel: triton.JITFunction, tuned: triton.runtime.Autotuner, grid: tuple[str, int, int],
            args: tuple, constexprs: dict[str, object]) -> None:  # fmt: skip
    """16-bit inputs on a GPU: autotuned (see _prune). fp32 on a GPU: one small fixed config. In the
    interpreter: one big fixed config (it runs programs one by one).
    grid = (the block tiling axis 0, the length it tiles, the number of programs along axis 1)."""
    axis0, length, n_programs = grid
    q = args[0]
    if q.is_cuda and q.dtype != torch.float32:
        tuned[lambda meta: (triton.cdiv(length, meta[axis0]), n_programs)](*args, **constexprs)
        return
    config = FP32_CONFIG if q.is_cuda else INTERPRETER_CONFIG
    kernel[(triton.cdiv(length, config[axis0]), n_programs)](*args, **constexprs, **config)


def _bucket(n: int) -> int:
    return triton.next_power_of_2(n)  # lengths in one power-of-two bucket share an autotuned config


def _constexprs(q: Tensor, causal: bool) -> dict[str, object]:
    return {"HEAD_DIM": q.shape[-1], "CAUSAL": causal, "DOT": dot_mode(q)}


def dot_mode(q: Tensor) -> str:
    """How the kernels' dots treat these inputs (see `_dot`): "upcast" for bf16 in the interpreter, "fp32" for
    fp32 unless PyTorch's matmuls may use tf32 (`torch.backends.cuda.matmul.allow_tf32`), else "tensor"."""
    if q.dtype == torch.bfloat16 and not q.is_cuda:
        return "upcast"
    if q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "fp32"
    return "tensor"


def _attention_forward(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float
) -> tuple[Tensor, Tensor]:
    """o (B, H, Tq, D) contiguous, lse (B, H, Tq) fp32 in log2 units. q, k, v may be strided (cache views)."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    o = torch.empty((B, H, Tq, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, Tq), dtype=torch.float32, device=q.device)
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
    args = (q, k, v, o, lse, *strides, sm_scale * LOG2E, H, H // Hkv, Tq, Tk, _bucket(Tq), _bucket(Tk))
    _launch(_attn_fwd, _attn_fwd_tuned, ("BLOCK_M", Tq, B * H), args, _constexprs(q, causal))
    return o, lse


def _attention_backward(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, causal: bool, sm_scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv): contiguous, the inputs' shapes and dtype. Works on contiguous copies of its inputs."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    do, q, k, v, o = (x.contiguous() for x in (do, q, k, v, o))
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    delta = torch.empty_like(lse)  # (B, H, Tq) fp32
    _attn_bwd_preprocess[(triton.cdiv(Tq, 64), B * H)](o, do, delta, Tq, HEAD_DIM=D, BLOCK_M=64)
    rest = (lse, delta, sm_scale, sm_scale * LOG2E, H, H // Hkv, Tq, Tk, _bucket(Tq), _bucket(Tk))
    consts = _constexprs(q, causal)
    _launch(
        _attn_bwd_dkdv, _attn_bwd_dkdv_tuned, ("BLOCK_N", Tk, B * Hkv), (q, k, v, do, dk, dv, *rest), consts
    )
    _launch(_attn_bwd_dq, _attn_bwd_dq_tuned, ("BLOCK_M", Tq, B * H), (q, k, v, do, dq, *rest), consts)
    return dq, dk, dv


# ----------------------------------------------------------------------------- custom ops + autograd
@torch.library.custom_op("cgpt::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float) -> tuple[Tensor, Tensor]:
    """The forward as an opaque op for torch.compile: returns (o, lse), lse in log2 units."""
    return _attention_forward(q, k, v, causal, sm_scale)


@flash_attn_fwd.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float) -> tuple[Tensor, Tensor]:
    B, H, Tq, D = q.shape
    return q.new_empty((B, H, Tq, D)), q.new_empty((B, H, Tq), dtype=torch.float32)


@torch.library.custom_op("cgpt::flash_attn_bwd", mutates_args=())
def flash_attn_bwd(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, causal: bool, sm_scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward as an opaque op: returns (dq, dk, dv)."""
    return _attention_backward(do, q, k, v, o, lse, causal, sm_scale)


@flash_attn_bwd.register_fake
def _(
    do: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, causal: bool, sm_scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


class FlashAttention(torch.autograd.Function):
    """The differentiation rule. `flash_attention` calls the custom op, which reuses this rule through
    `register_autograd`; `FlashAttention.apply` is the same computation as a plain autograd.Function."""

    @staticmethod
    def forward(q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float) -> tuple[Tensor, Tensor]:
        _check_inputs(q, k, v)
        return flash_attn_fwd(q, k, v, causal, sm_scale)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
        q, k, v, causal, sm_scale = inputs
        o, lse = output
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.sm_scale = causal, sm_scale
        ctx.mark_non_differentiable(lse)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, do: Tensor, dlse: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attn_bwd(do, q, k, v, o, lse, ctx.causal, ctx.sm_scale)
        return dq, dk, dv, None, None


flash_attn_fwd.register_autograd(FlashAttention.backward, setup_context=FlashAttention.setup_context)


def _check_inputs(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(
            f"expected q (B, H, Tq, D) and k, v (B, Hkv, Tk, D), got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    (B, H, Tq, D), (Bk, Hkv, Tk, Dk) = q.shape, k.shape
    if B != Bk or D != Dk or Hkv == 0 or H % Hkv != 0 or Tq == 0 or Tk == 0:
        raise ValueError(
            f"q {tuple(q.shape)} and k, v {tuple(k.shape)} do not match: need the same B and D, "
            f"Tq, Tk >= 1 and query heads a multiple of key/value heads"
        )
    if D not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"head size D={D} is not supported; allowed: {SUPPORTED_HEAD_DIMS}")
    if q.dtype not in SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"dtypes q {q.dtype}, k {k.dtype}, v {v.dtype}: need one of {SUPPORTED_DTYPES} for all"
        )
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not q.is_cuda and isinstance(_attn_fwd, triton.JITFunction):  # compiled kernels need a GPU
        raise ValueError(
            f"tensors on {q.device} need Triton's CPU interpreter: set TRITON_INTERPRET=1 before import"
        )


def flash_attention(
    q: Tensor, k: Tensor, v: Tensor, causal: bool = True, sm_scale: float | None = None
) -> Tensor:
    """Exact attention softmax(q k^T * scale [+ causal mask]) v, fused. q: (B, H, Tq, D);
    k, v: (B, Hkv, Tk, D) with H % Hkv == 0; D in SUPPORTED_HEAD_DIMS; scale defaults to 1/sqrt(D).
    Returns (B, H, Tq, D) in q's dtype; differentiable in q, k, v. Raises ValueError on unsupported inputs."""
    _check_inputs(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    return flash_attn_fwd(q, k, v, causal, scale)[0]

"""FlashAttention-2 in Triton, the device code: exact attention, fused, forward and backward, in O(T)
memory.
The host side (tile configs, autotuning, launches, the custom ops and `flash_attention`) is
`kernels/flash.py`.

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
a query block resident and loops over key blocks. No atomics: results are deterministic. The alternative,
FlashAttention-2's own (ATOMIC_DQ), adds each key block's dq share atomically in fp32 inside the dK/dV pass:
5 block matmuls per block pair instead of 7, bitwise results that vary from run to run.

Legend: B batch, H query heads, Hkv key/value heads (grouped-query attention: query head h reads kv head
h // (H // Hkv)), Tq, Tk query and key lengths, D head size. Queries are the *last* Tq positions, so the
causal mask is bottom-right aligned - query i sees key j <= i + Tk - Tq - exactly as `kernels/reference.py`.
A query row that sees no key (only when Tq > Tk) gets output 0 and gradient 0: masks are -inf, with guards.

Key padding (HAS_KB): a per-key additive bias KB (B, Tk), 0 for a real key and -inf for padding, hides padded
keys from every query - with or without the causal mask (fine-tuning on padded batches, bidirectional
attention for token classification). Every key block then takes the masked path, since padding can sit in any
block; a row whose keys are all padding gets output 0, like a row that sees no key.

Numerics: fp32, fp16 and bf16 inputs, fp32 accumulation. fp32 inputs get fp32-accurate dots (tf32x3) unless
`torch.backends.cuda.matmul.allow_tf32` asks for tf32, as PyTorch's own matmuls do (Triton's default would be
tf32, about 3 significant digits, silently). The interpreter computes bf16 `tl.dot` wrongly (triton#11584),
so off the GPU bf16 dot operands are upcast to fp32 (DOT="upcast"); on the GPU the 16-bit dots run natively
on the tensor cores.
"""

import triton
import triton.language as tl


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
def _attn_fwd_inner(acc, l_i, m_i, q, K, V, KB, stride_kn, stride_vn, offs_m, lo, hi, qk_scale, seqlen_k, diag,
                    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
                    DOT: tl.constexpr, HAS_KB: tl.constexpr):
    """Fold key blocks [lo, hi) into the running (acc, l_i, m_i). MASKED blocks check bounds, causality and
    key padding (KB: this batch row's key bias)."""
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
            if HAS_KB:
                s += tl.load(KB + offs_n, mask=offs_n < seqlen_k, other=float("-inf"))[None, :]
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
def _kv_range(start_m, seqlen_k, diag, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
              HAS_KB: tl.constexpr):
    """Key ranges for a query block: [0, n_full) every row sees; [n_full, n_end) needs the mask."""
    if CAUSAL:
        n_full = tl.maximum(start_m + diag + 1, 0) // BLOCK_N * BLOCK_N  # row start_m sees j <= start_m+diag
        n_end = tl.minimum(tl.maximum(start_m + BLOCK_M + diag, 0), seqlen_k)
    else:
        n_full = seqlen_k // BLOCK_N * BLOCK_N
        n_end = seqlen_k
    if HAS_KB:  # padding may sit in any key block
        n_full = 0
    return n_full, n_end


@triton.jit
def _attn_fwd(Q, K, V, Out, LSE, KB,
              stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
              stride_vb, stride_vh, stride_vn,
              qk_scale, n_heads, n_rep, seqlen_q, seqlen_k, q_bucket, k_bucket,  # buckets: autotune key only
              HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
              DOT: tl.constexpr, HAS_KB: tl.constexpr):
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
    KB += off_b * seqlen_k  # (B, Tk) contiguous; not read without HAS_KB
    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - float("inf")
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_full, n_end = _kv_range(start_m, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL, HAS_KB)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, KB, stride_kn, stride_vn, offs_m, 0, n_full,
                                    qk_scale, seqlen_k, diag, HEAD_DIM, BLOCK_N, False, CAUSAL, DOT, HAS_KB)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, K, V, KB, stride_kn, stride_vn, offs_m, n_full, n_end,
                                    qk_scale, seqlen_k, diag, HEAD_DIM, BLOCK_N, True, CAUSAL, DOT, HAS_KB)
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
def _attn_bwd_dkdv_inner(dk, dv, k, v, kb, Q, DO, LSE, DELTA, DQ, offs_n, lo, hi, qk_scale, sm_scale, seqlen_q,
                         diag, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, MASKED: tl.constexpr,
                         DOT: tl.constexpr, ATOMIC_DQ: tl.constexpr, HAS_KB: tl.constexpr):
    """Accumulate dk, dv of one resident key block over query blocks [lo, hi) of one query head. kb: the
    block's key bias (BLOCK_N,), with HAS_KB. ATOMIC_DQ:
    also add this key block's share of dq (ds k * scale) into the fp32 rows at DQ, FlashAttention-2's way:
    5 block matmuls instead of 7 (no separate dQ pass), at the price of atomic adds whose order varies."""
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
        if HAS_KB:
            sT += kb[:, None]
        pT = tl.math.exp2(sT - lse[None, :])
        dv += _dot(pT, do, DOT)
        dpT = _dot(v, tl.trans(do), DOT)
        dsT = pT * (dpT - delta[None, :])
        dk += _dot(dsT, tl.trans(qT), DOT)
        if ATOMIC_DQ:  # keys past Tk load k = 0 and add nothing
            dq = _dot(tl.trans(dsT), k, DOT) * sm_scale  # (BLOCK_M, D)
            tl.atomic_add(DQ + offs_m[:, None] * HEAD_DIM + offs_d[None, :], dq, mask=row_ok[:, None])
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(Q, K, V, DO, DK, DV, DQ, LSE, DELTA, KB, sm_scale, qk_scale, n_heads, n_rep, seqlen_q, seqlen_k,
                   q_bucket, k_bucket, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, DOT: tl.constexpr, ATOMIC_DQ: tl.constexpr, HAS_KB: tl.constexpr):
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
    kb = tl.zeros([BLOCK_N], dtype=tl.float32)
    if HAS_KB:
        kb = tl.load(KB + off_b * seqlen_k + offs_n, mask=offs_n < seqlen_k, other=float("-inf"))
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
        Qh, DOh, DQh = Q + q_base, DO + q_base, DQ + q_base
        LSEh, DELTAh = LSE + off_bh * seqlen_q, DELTA + off_bh * seqlen_q
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, kb, Qh, DOh, LSEh, DELTAh, DQh, offs_n, m_lo, m_full,
                                      qk_scale, sm_scale, seqlen_q, diag, HEAD_DIM, BLOCK_M, True, DOT, ATOMIC_DQ,
                                      HAS_KB)
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, kb, Qh, DOh, LSEh, DELTAh, DQh, offs_n, m_open, seqlen_q,
                                      qk_scale, sm_scale, seqlen_q, diag, HEAD_DIM, BLOCK_M, False, DOT, ATOMIC_DQ,
                                      HAS_KB)
    tl.store(DK + kv_offs, (dk * sm_scale).to(DK.dtype.element_ty), mask=col_ok)
    tl.store(DV + kv_offs, dv.to(DV.dtype.element_ty), mask=col_ok)


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, KB, offs_m, lo, hi, qk_scale, seqlen_k, diag,
                       HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, MASKED: tl.constexpr,
                       CAUSAL: tl.constexpr, DOT: tl.constexpr, HAS_KB: tl.constexpr):
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
            if HAS_KB:
                s += tl.load(KB + offs_n, mask=offs_n < seqlen_k, other=float("-inf"))[None, :]
        p = tl.math.exp2(s - lse[:, None])
        ds = p * (_dot(do, vT, DOT) - delta[:, None])
        dq += _dot(ds, tl.trans(kT), DOT)
    return dq


@triton.jit
def _attn_bwd_dq(Q, K, V, DO, DQ, LSE, DELTA, KB, sm_scale, qk_scale, n_heads, n_rep, seqlen_q, seqlen_k,
                 q_bucket, k_bucket, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 CAUSAL: tl.constexpr, DOT: tl.constexpr, HAS_KB: tl.constexpr):
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
    KB += (off_bh // n_heads) * seqlen_k
    diag = seqlen_k - seqlen_q
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    n_full, n_end = _kv_range(start_m, seqlen_k, diag, BLOCK_M, BLOCK_N, CAUSAL, HAS_KB)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, KB, offs_m, 0, n_full, qk_scale, seqlen_k, diag,
                            HEAD_DIM, BLOCK_N, False, CAUSAL, DOT, HAS_KB)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, K, V, KB, offs_m, n_full, n_end, qk_scale, seqlen_k, diag,
                            HEAD_DIM, BLOCK_N, True, CAUSAL, DOT, HAS_KB)
    tl.store(DQ + q_offs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=row_ok[:, None])


# fmt: on

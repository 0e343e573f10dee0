"""FlashAttention-2 kernel vs the float64 PyTorch oracle (kernels/reference.py): output and dq, dk, dv.

Without a GPU the kernels run in Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1), which
is serial: shapes stay small (B x H <= 8, T <= 257) so the whole file runs in well under a minute. On a GPU
the same tests run the compiled kernels. fp32 dots are exact in the interpreter and fp32-accurate on the GPU
(tf32x3; tf32 only when PyTorch's matmuls allow it), so fp32 tolerances are tight; fp16 and bf16 follow the
flash-attention rule: the error against float64 is at most 3x that of the
PyTorch reference computed in the same dtype.
"""

import functools
import math

import pytest
import torch

from kernels.reference import attention_reference
from tests.kernels import DEVICE

FP32_TOL = 1e-4 if DEVICE == "cuda" else 2e-5  # tf32x3 dots on the GPU, exact in the interpreter
ATOL = {torch.float16: 1e-4, torch.bfloat16: 1e-3}  # a floor under the "3x PyTorch's error" rule


def _inputs(B: int, H: int, Hkv: int, Tq: int, Tk: int, D: int, dtype: torch.dtype, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    q, do = (torch.randn(B, H, Tq, D, generator=g).to(DEVICE, dtype) for _ in range(2))
    k, v = (torch.randn(B, Hkv, Tk, D, generator=g).to(DEVICE, dtype) for _ in range(2))
    return q, k, v, do


def _forward_backward(
    fn: object,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    do: torch.Tensor,
    causal: bool,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """[o, dq, dk, dv] of fn on copies of q, k, v cast to dtype (default: unchanged)."""
    leaves = [x.detach().to(dtype or x.dtype).requires_grad_() for x in (q, k, v)]
    o = fn(*leaves, causal=causal)
    o.backward(do.to(o.dtype))
    return [o.detach()] + [x.grad for x in leaves]


def _check(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    do: torch.Tensor,
    causal: bool,
    deterministic: bool = True,
    key_mask: torch.Tensor | None = None,
) -> None:
    """Ours vs float64; for 16-bit inputs the allowed error is 3x that of the same-dtype reference."""
    from kernels.flash import flash_attention

    fast = functools.partial(flash_attention, deterministic=deterministic, key_mask=key_mask)
    reference = functools.partial(attention_reference, key_mask=key_mask)
    ours = _forward_backward(fast, q, k, v, do, causal)
    exact = _forward_backward(reference, q, k, v, do, causal, torch.float64)
    if q.dtype == torch.float32:
        for name, a, b in zip(("o", "dq", "dk", "dv"), ours, exact, strict=True):
            torch.testing.assert_close(a.double(), b, rtol=FP32_TOL, atol=FP32_TOL, msg=lambda m, n=name: f"{n}: {m}")
        return
    same_dtype = _forward_backward(reference, q, k, v, do, causal)
    for name, a, r, b in zip(("o", "dq", "dk", "dv"), ours, same_dtype, exact, strict=True):
        err, ref_err = (a.double() - b).abs().max().item(), (r.double() - b).abs().max().item()
        assert err <= 3 * ref_err + ATOL[q.dtype], f"{name}: error {err:.2e}, PyTorch's {ref_err:.2e}"


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 17, 100, 257])
def test_matches_reference_over_lengths(T: int, causal: bool) -> None:
    _check(*_inputs(1, 2, 2, T, T, 64, torch.float32), causal)


@pytest.mark.parametrize("D", [16, 32, 128])
def test_matches_reference_over_head_dims(D: int) -> None:
    _check(*_inputs(2, 2, 2, 100, 100, D, torch.float32), causal=True)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("Hkv", [2, 1])
def test_grouped_query_attention(Hkv: int, causal: bool) -> None:
    _check(*_inputs(2, 4, Hkv, 100, 100, 32, torch.float32), causal)


@pytest.mark.parametrize(("Tq", "Tk", "causal"), [(1, 100, True), (3, 130, True), (5, 70, False)])
def test_decode_with_fewer_queries_than_keys(Tq: int, Tk: int, causal: bool) -> None:
    """KV-cache decoding: the queries are the last Tq positions, causal mask bottom-right aligned."""
    _check(*_inputs(2, 4, 2, Tq, Tk, 64, torch.float32), causal)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("T", "causal"), [(17, False), (100, True)])
def test_half_precision(dtype: torch.dtype, T: int, causal: bool) -> None:
    """fp16 uses 16-bit dots; bf16 runs through the fp32-upcast path in the interpreter."""
    _check(*_inputs(1, 2, 1, T, T, 64, dtype), causal)


@pytest.mark.parametrize(
    ("B", "H", "Hkv", "Tq", "Tk", "D", "dtype", "causal"),
    [
        (1, 2, 2, 17, 17, 64, torch.float32, True),
        (1, 2, 2, 100, 100, 32, torch.float32, False),
        (2, 4, 2, 100, 100, 64, torch.float32, True),  # GQA: the group's heads add into their own dq rows
        (1, 2, 1, 5, 70, 64, torch.float32, True),  # decode-like: Tq < Tk
        (1, 2, 2, 257, 257, 16, torch.float16, True),
        (1, 4, 2, 100, 100, 128, torch.bfloat16, True),
    ],
)
def test_atomic_dq_backward_matches_reference(
    B: int, H: int, Hkv: int, Tq: int, Tk: int, D: int, dtype: torch.dtype, causal: bool
) -> None:
    """deterministic=False: dq added atomically inside the dK/dV pass (FlashAttention-2's backward)."""
    _check(*_inputs(B, H, Hkv, Tq, Tk, D, dtype, seed=5), causal, deterministic=False)


def test_fully_masked_rows_give_zeros_not_nan() -> None:
    """Tq > Tk with a causal mask: the first Tq - Tk queries see no key at all."""
    from kernels.flash import flash_attention

    q, k, v, do = _inputs(1, 2, 1, 100, 40, 32, torch.float32)
    o, dq, dk, dv = _forward_backward(flash_attention, q, k, v, do, causal=True)
    assert all(torch.isfinite(x).all() for x in (o, dq, dk, dv))
    assert o[:, :, :60].abs().max() == 0 and dq[:, :, :60].abs().max() == 0
    _check(q, k, v, do, causal=True)


def _key_mask(kind: str, B: int, Tk: int, seed: int = 0) -> torch.Tensor:
    """(B, Tk) bool: each row's real keys. right/left: padding after/before lengths spread over 1..Tk (the
    last row unpadded); random: any pattern, at least one real key per row."""
    lengths = torch.linspace(1, Tk, B).round().long()  # (B,)
    pos = torch.arange(Tk)[None, :]
    if kind == "right":
        mask = pos < lengths[:, None]
    elif kind == "left":
        mask = pos >= Tk - lengths[:, None]
    else:
        mask = torch.rand(B, Tk, generator=torch.Generator().manual_seed(seed)) < 0.6
        mask[:, 0] = True
    return mask.to(DEVICE)


@pytest.mark.parametrize(
    "kind, B, H, Hkv, T, D, dtype, causal",
    [
        ("right", 3, 2, 2, 100, 32, torch.float32, False),  # bidirectional fine-tuning on right-padded batches
        ("right", 3, 2, 1, 100, 32, torch.float32, True),
        ("left", 3, 2, 2, 70, 64, torch.float32, True),  # causal + left padding: early rows see no real key
        ("left", 2, 2, 2, 130, 16, torch.float32, False),
        ("random", 2, 4, 2, 65, 32, torch.float32, False),  # GQA, padding inside blocks
        ("right", 2, 2, 2, 100, 64, torch.bfloat16, False),
        ("left", 2, 2, 1, 100, 32, torch.float16, True),
    ],
)
def test_key_padding_mask_matches_reference(
    kind: str, B: int, H: int, Hkv: int, T: int, D: int, dtype: torch.dtype, causal: bool
) -> None:
    """key_mask hides padded keys from every query, causal or not; forward and backward vs float64."""
    q, k, v, do = _inputs(B, H, Hkv, T, T, D, dtype, seed=7)
    _check(q, k, v, do, causal, key_mask=_key_mask(kind, B, T))


@pytest.mark.parametrize("causal", [True, False])
def test_key_padding_mask_with_atomic_dq(causal: bool) -> None:
    q, k, v, do = _inputs(2, 2, 1, 90, 90, 32, torch.float32, seed=3)
    _check(q, k, v, do, causal, deterministic=False, key_mask=_key_mask("random", 2, 90, seed=3))


def test_padded_keys_get_no_weight_and_no_gradient() -> None:
    """Changing a padded key or value changes nothing; its dk, dv are exactly zero."""
    from kernels.flash import flash_attention

    q, k, v, do = _inputs(2, 2, 2, 80, 80, 32, torch.float32, seed=1)
    mask = _key_mask("right", 2, 80)
    o, _, dk, dv = _forward_backward(functools.partial(flash_attention, key_mask=mask), q, k, v, do, causal=False)
    k2, v2 = k.clone(), v.clone()
    k2[~mask[:, None, :, None].expand_as(k)] = 100.0
    v2[~mask[:, None, :, None].expand_as(v)] = -100.0
    torch.testing.assert_close(flash_attention(q, k2, v2, causal=False, key_mask=mask), o, rtol=0, atol=1e-6)
    padded = ~mask[:, None, :].expand(-1, 2, -1)  # (B, Hkv, Tk)
    assert dk[padded].abs().max() == 0 and dv[padded].abs().max() == 0


def test_key_mask_is_checked() -> None:
    from kernels.flash import flash_attention

    q, k, v, _ = _inputs(2, 2, 2, 20, 20, 16, torch.float32)
    with pytest.raises(ValueError, match="key_mask"):
        flash_attention(q, k, v, key_mask=torch.ones(2, 19, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="key_mask"):
        flash_attention(q, k, v, key_mask=torch.ones(2, 20, device=DEVICE))


def test_strided_inputs_and_custom_scale() -> None:
    """q from a (B, T, H, D) transpose, k/v slices of a longer cache: what the model and KV cache pass."""
    from kernels.flash import flash_attention

    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 50, 4, 32, generator=g).to(DEVICE).transpose(1, 2)  # (B, H, T, D), non-contiguous
    cache = torch.randn(2, 2, 2, 80, 32, generator=g).to(DEVICE)  # (k|v, B, Hkv, Tmax, D)
    k, v = cache[0, :, :, :60], cache[1, :, :, :60]
    assert not (q.is_contiguous() or k.is_contiguous())
    out = flash_attention(q, k, v, causal=True, sm_scale=0.3)
    ref = attention_reference(q.double(), k.double(), v.double(), causal=True, sm_scale=0.3)
    torch.testing.assert_close(out.double(), ref, rtol=FP32_TOL, atol=FP32_TOL)


@pytest.mark.parametrize(
    ("q_shape", "kv_shape", "dtype", "match"),
    [
        ((1, 2, 8, 48), (1, 2, 8, 48), torch.float32, r"allowed: \(16, 32, 64, 128\)"),
        ((1, 3, 8, 32), (1, 2, 8, 32), torch.float32, "multiple of key/value heads"),
        ((2, 2, 8, 32), (1, 2, 8, 32), torch.float32, "do not match"),
        ((2, 8, 32), (2, 8, 32), torch.float32, r"expected q \(B, H, Tq, D\)"),
        ((1, 2, 8, 32), (1, 2, 8, 32), torch.float64, "dtypes"),
    ],
)
def test_rejects_unsupported_inputs(q_shape: tuple, kv_shape: tuple, dtype: torch.dtype, match: str) -> None:
    from kernels.flash import flash_attention

    q, k = torch.randn(q_shape, dtype=dtype), torch.randn(kv_shape, dtype=dtype)
    with pytest.raises(ValueError, match=match):
        flash_attention(q, k, k)


def test_rejects_mixed_dtypes() -> None:
    from kernels.flash import flash_attention

    q = torch.randn(1, 2, 8, 32)
    with pytest.raises(ValueError, match="dtypes"):
        flash_attention(q, q.half(), q)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_torch_compile_traces_without_graph_break(backend: str) -> None:
    """The custom op (register_fake + register_autograd) keeps the kernel one opaque node in the graph."""
    from kernels.flash import flash_attention

    def loss(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return (flash_attention(q, k, v, causal=True) * 2.0).square().sum()

    torch._dynamo.reset()
    q, k, v, _ = _inputs(1, 2, 1, 40, 40, 32, torch.float32)
    eager = [x.clone().requires_grad_() for x in (q, k, v)]
    traced = [x.clone().requires_grad_() for x in (q, k, v)]
    loss(*eager).backward()
    torch.compile(loss, backend=backend, fullgraph=True)(*traced).backward()
    for a, b in zip(eager, traced, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_custom_ops_pass_opcheck() -> None:
    from kernels.flash import LOG2E, flash_attn_bwd, flash_attn_fwd

    q, k, v, do = _inputs(1, 2, 1, 20, 30, 16, torch.float32)
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    torch.library.opcheck(flash_attn_fwd, (q, k, v, True, 0.25, True))
    o, lse = flash_attn_fwd(q.detach(), k.detach(), v.detach(), True, 0.25, True)
    for deterministic in (True, False):
        args = (do, q.detach(), k.detach(), v.detach(), o, lse, True, 0.25, deterministic)
        torch.library.opcheck(flash_attn_bwd, args)
    mask = torch.arange(30, device=DEVICE)[None, :] < 25  # (1, Tk): the last 5 keys are padding
    torch.library.opcheck(flash_attn_fwd, (q, k, v, False, 0.25, True, mask))
    o_m, lse_m = flash_attn_fwd(q.detach(), k.detach(), v.detach(), False, 0.25, True, mask)
    args = (do, q.detach(), k.detach(), v.detach(), o_m, lse_m, False, 0.25, True, mask)
    torch.library.opcheck(flash_attn_bwd, args)
    # lse is the row log-sum-exp in base 2 (the last row sees every key)
    logits = (q[0, :, -1] @ k[0, 0].T).detach() * 0.25
    torch.testing.assert_close(lse[0, :, -1], torch.logsumexp(logits, dim=-1) * LOG2E)
    assert math.isclose(LOG2E, 1 / math.log(2))


def test_fp32_dots_are_true_fp32_unless_pytorch_allows_tf32() -> None:
    """Triton's fp32 dot defaults to tf32 (about 3 significant digits); ours follows PyTorch's matmul flag."""
    from kernels.flash import dot_mode

    x32, x16, xbf = (torch.empty(1, 1, 1, 64, dtype=d) for d in (torch.float32, torch.float16, torch.bfloat16))
    matmul, before = torch.backends.cuda.matmul, torch.backends.cuda.matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        assert (dot_mode(x32), dot_mode(x16), dot_mode(xbf)) == ("fp32", "tensor", "upcast")
        matmul.allow_tf32 = True
        assert dot_mode(x32) == "tensor"
    finally:
        matmul.allow_tf32 = before


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_gpu_autotune_space_is_pruned(dtype: torch.dtype) -> None:
    """The autotuner runs on a GPU only; its pruning (by D, shared memory and size) is plain Python."""
    from kernels import flash as fa

    big = {"Q": torch.empty(0, dtype=dtype), "seqlen_q": 4096, "seqlen_k": 4096}
    for tuned in (fa._attn_fwd_tuned, fa._attn_bwd_dkdv_tuned, fa._attn_bwd_dq_tuned):
        kept = {d: tuned.early_config_prune(tuned.configs, big, HEAD_DIM=d) for d in fa.SUPPORTED_HEAD_DIMS}
        assert all(kept.values()) and len(kept[128]) <= len(kept[16]) <= len(tuned.configs)
        decode = big | {"seqlen_q": 1}
        assert len(tuned.early_config_prune(tuned.configs, decode, HEAD_DIM=64)) == 1  # no tuning per step
    dkdv = fa._attn_bwd_dkdv_tuned
    assert all(c.num_warps == 8 for c in dkdv.early_config_prune(dkdv.configs, big, HEAD_DIM=128))

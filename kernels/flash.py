"""FlashAttention-2, the host side: tile configs and autotuning, launches, custom ops, autograd, and
`flash_attention(q, k, v, causal, sm_scale, key_mask=...)`. The Triton kernels and the algorithm are in
`kernels/flash_kernels.py`.

Each call is planned as `Launch`es (kernel, grid, arguments, compile-time constants) before it runs, so the
plan can also be compiled without running it (`kernels/bench/compile.py`). Configs: 16-bit inputs on a GPU
are autotuned over a small pruned space (`_prune`); fp32 on a GPU runs one small fixed config (fp32 tiles of
the autotuned sizes overflow shared memory at D = 128; fp32 is for checking, not speed); the CPU interpreter
runs one big fixed config (it executes programs one by one).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import triton
from torch import Tensor

from kernels.flash_kernels import _attn_bwd_dkdv, _attn_bwd_dq, _attn_bwd_preprocess, _attn_fwd

# head sizes D: `tl.arange` needs a power of two; 128 is the largest that keeps a query tile and its
# accumulator in registers
SUPPORTED_HEAD_DIMS: tuple[int, ...] = (16, 32, 64, 128)
SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
LOG2E: float = math.log2(math.e)
INTERPRETER_CONFIG: dict[str, int] = {"BLOCK_M": 64, "BLOCK_N": 64}  # big blocks: the interpreter is serial
# fp32 on a GPU: fp32 tiles take twice the shared memory; at D = 128 this one needs at most 104 KiB (sm_90)
FP32_CONFIG: dict[str, int] = {"BLOCK_M": 32, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}
AUTOTUNE_MIN_WORK: int = 512 * 512  # Tq * Tk below this: no autotuning on the GPU


# ----------------------------------------------------------------------------- launch configs
def _configs(candidates: list[tuple[int, int, int, int]]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) -> triton.Config, for the autotuner on a GPU."""
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in candidates]


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


KEY = ["HEAD_DIM", "CAUSAL", "DOT", "HAS_KB", "q_bucket", "k_bucket"]  # the autotuner adds the tensors' dtypes


def _tuning_bench(kernel_call: Callable[[], None], quantiles: tuple[float, ...]) -> list[float]:
    """The autotuner's timer: 10 ms of warm-up and 40 ms of repeats per config (Triton's default: 25 + 100).
    Configs worth telling apart differ by more than its noise, and a benchmark run tunes dozens of shapes."""
    return triton.testing.do_bench(kernel_call, warmup=10, rep=40, quantiles=quantiles)


_attn_fwd_tuned = triton.autotune(
    _configs([(64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2)]),
    key=KEY,
    do_bench=_tuning_bench,
    prune_configs_by={"early_config_prune": _prune("BLOCK_M", "BLOCK_N", 1)},
)(_attn_fwd)
_attn_bwd_dkdv_tuned = triton.autotune(  # resident keys: BLOCK_N; streamed queries: BLOCK_M
    _configs([(32, 64, 4, 2), (64, 64, 4, 2), (32, 64, 8, 2), (64, 64, 8, 2), (32, 128, 8, 2)]),
    key=[*KEY, "ATOMIC_DQ"],
    reset_to_zero=["DQ"],  # the atomic dq accumulates: zeroed before each tuning run and after tuning
    do_bench=_tuning_bench,
    prune_configs_by={"early_config_prune": _prune("BLOCK_N", "BLOCK_M", 2)},
)(_attn_bwd_dkdv)
_attn_bwd_dq_tuned = triton.autotune(  # resident queries: BLOCK_M; streamed keys: BLOCK_N
    _configs([(64, 32, 4, 2), (64, 64, 4, 2), (128, 32, 8, 2), (128, 64, 8, 2)]),
    key=KEY,
    do_bench=_tuning_bench,
    prune_configs_by={"early_config_prune": _prune("BLOCK_M", "BLOCK_N", 1)},
)(_attn_bwd_dq)


@dataclass(frozen=True)
class Launch:
    """One kernel launch, planned: grid axis 0 tiles `length` by the block size `axis0`, axis 1 has
    `n_programs` programs. `gpu`: compiled for a GPU (else the interpreter runs it)."""

    kernel: triton.JITFunction
    tuned: triton.runtime.Autotuner | None  # None: every constant is in constexprs already
    axis0: str
    length: int
    n_programs: int
    args: tuple
    constexprs: dict[str, object]
    gpu: bool

    @property
    def autotuned(self) -> bool:
        return self.tuned is not None and self.gpu and self.args[0].dtype != torch.float32

    def configs(self) -> list[dict[str, object]]:
        """The launch options this call may compile: the autotuner's candidates after `_prune`, or the one
        fixed config (fp32 on a GPU, the interpreter, the preprocess)."""
        if self.autotuned:
            named = dict(zip(self.kernel.arg_names, self.args, strict=False))
            return [c.all_kwargs() for c in self.tuned.early_config_prune(self.tuned.configs, named, **self.constexprs)]
        if self.tuned is None:
            return [{}]
        return [FP32_CONFIG if self.gpu else INTERPRETER_CONFIG]

    def run(self) -> None:
        if self.autotuned:
            grid = lambda meta: (triton.cdiv(self.length, meta[self.axis0]), self.n_programs)  # noqa: E731
            self.tuned[grid](*self.args, **self.constexprs)
            return
        (config,) = self.configs()
        block = {**self.constexprs, **config}[self.axis0]
        self.kernel[(triton.cdiv(self.length, block), self.n_programs)](*self.args, **self.constexprs, **config)


def _bucket(n: int) -> int:
    return triton.next_power_of_2(n)  # lengths in one power-of-two bucket share an autotuned config


def dot_mode(q: Tensor, gpu: bool | None = None) -> str:
    """How the kernels' dots treat these inputs (see `_dot`): "upcast" for bf16 in the interpreter, "fp32" for
    fp32 unless PyTorch's matmuls may use tf32 (`torch.backends.cuda.matmul.allow_tf32`), else "tensor"."""
    if q.dtype == torch.bfloat16 and not (q.is_cuda if gpu is None else gpu):
        return "upcast"
    if q.dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "fp32"
    return "tensor"


def forward_launch(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    causal: bool,
    sm_scale: float,
    gpu: bool | None = None,
    key_bias: Tensor | None = None,
) -> Launch:
    """The forward's launch: q, k, v (B, H|Hkv, T, D) with unit last stride, o contiguous, lse (B, H, Tq);
    key_bias (B, Tk) fp32 contiguous, 0 or -inf (see `key_bias`), or None."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    gpu = q.is_cuda if gpu is None else gpu
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
    kb = lse if key_bias is None else key_bias  # without HAS_KB the kernel never reads it
    args = (q, k, v, o, lse, kb, *strides, sm_scale * LOG2E, H, H // Hkv, Tq, Tk, _bucket(Tq), _bucket(Tk))
    consts = {"HEAD_DIM": D, "CAUSAL": causal, "DOT": dot_mode(q, gpu), "HAS_KB": key_bias is not None}
    return Launch(_attn_fwd, _attn_fwd_tuned, "BLOCK_M", Tq, B * H, args, consts, gpu)


def backward_launches(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    delta: Tensor,
    dq: Tensor,
    dk: Tensor,
    dv: Tensor,
    causal: bool,
    sm_scale: float,
    atomic_dq: bool = False,
    gpu: bool | None = None,
    key_bias: Tensor | None = None,
) -> list[Launch]:
    """The backward's launches on contiguous tensors: the delta preprocess, dK/dV, then dQ; with atomic_dq,
    dK/dV also adds dq into `dq` (fp32, zeroed) and there is no dQ launch."""
    B, H, Tq, D = q.shape
    Hkv, Tk = k.shape[1], k.shape[2]
    gpu = q.is_cuda if gpu is None else gpu
    kb = lse if key_bias is None else key_bias
    rest = (lse, delta, kb, sm_scale, sm_scale * LOG2E, H, H // Hkv, Tq, Tk, _bucket(Tq), _bucket(Tk))
    consts = {"HEAD_DIM": D, "CAUSAL": causal, "DOT": dot_mode(q, gpu), "HAS_KB": key_bias is not None}
    pre = {"HEAD_DIM": D, "BLOCK_M": 64}
    dkdv_args, dq_args = (q, k, v, do, dk, dv, dq, *rest), (q, k, v, do, dq, *rest)
    launches = [
        Launch(_attn_bwd_preprocess, None, "BLOCK_M", Tq, B * H, (o, do, delta, Tq), pre, gpu),
        Launch(
            _attn_bwd_dkdv,
            _attn_bwd_dkdv_tuned,
            "BLOCK_N",
            Tk,
            B * Hkv,
            dkdv_args,
            consts | {"ATOMIC_DQ": atomic_dq},
            gpu,
        ),
    ]
    if not atomic_dq:
        launches.append(Launch(_attn_bwd_dq, _attn_bwd_dq_tuned, "BLOCK_M", Tq, B * H, dq_args, consts, gpu))
    return launches


def key_bias(key_mask: Tensor | None) -> Tensor | None:
    """(B, Tk) bool, True = a real key -> (B, Tk) fp32: 0 for a real key, -inf for padding (added to the
    scores in log2 units, so a padded key gets probability exactly 0)."""
    if key_mask is None:
        return None
    zero = torch.zeros((), dtype=torch.float32, device=key_mask.device)
    return torch.where(key_mask, zero, float("-inf")).contiguous()


def _attention_forward(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float, key_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """o (B, H, Tq, D) contiguous, lse (B, H, Tq) fp32 in log2 units. q, k, v may be strided (cache views)."""
    B, H, Tq, D = q.shape
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    o = torch.empty((B, H, Tq, D), dtype=q.dtype, device=q.device)
    lse = torch.empty((B, H, Tq), dtype=torch.float32, device=q.device)
    forward_launch(q, k, v, o, lse, causal, sm_scale, key_bias=key_bias(key_mask)).run()
    return o, lse


def _attention_backward(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    causal: bool,
    sm_scale: float,
    deterministic: bool = True,
    key_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv): contiguous, the inputs' shapes and dtype. Works on contiguous copies of its inputs.
    deterministic=False: dq by atomic adds (fewer matmuls; the last bits vary from run to run)."""
    do, q, k, v, o = (x.contiguous() for x in (do, q, k, v, o))
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    dq = torch.empty_like(q) if deterministic else torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    delta = torch.empty_like(lse)  # (B, H, Tq) fp32
    bias = key_bias(key_mask)
    for launch in backward_launches(
        do, q, k, v, o, lse, delta, dq, dk, dv, causal, sm_scale, not deterministic, key_bias=bias
    ):
        launch.run()
    return dq.to(q.dtype), dk, dv


# ----------------------------------------------------------------------------- custom ops + autograd
@torch.library.custom_op("cgpt::flash_attn_fwd", mutates_args=())
def flash_attn_fwd(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float, deterministic: bool, key_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The forward as an opaque op for torch.compile: returns (o, lse), lse in log2 units. `deterministic`
    is for the backward (it is recorded here so that autograd can hand it on)."""
    return _attention_forward(q, k, v, causal, sm_scale, key_mask)


@flash_attn_fwd.register_fake
def _(
    q: Tensor, k: Tensor, v: Tensor, causal: bool, sm_scale: float, deterministic: bool, key_mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    B, H, Tq, D = q.shape
    return q.new_empty((B, H, Tq, D)), q.new_empty((B, H, Tq), dtype=torch.float32)


@torch.library.custom_op("cgpt::flash_attn_bwd", mutates_args=())
def flash_attn_bwd(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    causal: bool,
    sm_scale: float,
    deterministic: bool,
    key_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The backward as an opaque op: returns (dq, dk, dv)."""
    return _attention_backward(do, q, k, v, o, lse, causal, sm_scale, deterministic, key_mask)


@flash_attn_bwd.register_fake
def _(
    do: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    lse: Tensor,
    causal: bool,
    sm_scale: float,
    deterministic: bool,
    key_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


class FlashAttention(torch.autograd.Function):
    """The differentiation rule. `flash_attention` calls the custom op, which reuses this rule through
    `register_autograd`; `FlashAttention.apply` is the same computation as a plain autograd.Function."""

    @staticmethod
    def forward(
        q: Tensor,
        k: Tensor,
        v: Tensor,
        causal: bool,
        sm_scale: float,
        deterministic: bool = True,
        key_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        _check_inputs(q, k, v, key_mask)
        return flash_attn_fwd(q, k, v, causal, sm_scale, deterministic, key_mask)

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
        q, k, v, causal, sm_scale, deterministic, *rest = inputs
        o, lse = output
        ctx.key_mask = rest[0] if rest else None  # a bool mask: no gradient, not saved for autograd
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.sm_scale, ctx.deterministic = causal, sm_scale, deterministic
        ctx.mark_non_differentiable(lse)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, do: Tensor, dlse: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = flash_attn_bwd(do, q, k, v, o, lse, ctx.causal, ctx.sm_scale, ctx.deterministic, ctx.key_mask)
        return dq, dk, dv, None, None, None, None


flash_attn_fwd.register_autograd(FlashAttention.backward, setup_context=FlashAttention.setup_context)


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> None:
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
        raise ValueError(f"dtypes q {q.dtype}, k {k.dtype}, v {v.dtype}: need one of {SUPPORTED_DTYPES} for all")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if key_mask is not None and (
        key_mask.dtype != torch.bool or tuple(key_mask.shape) != (B, Tk) or key_mask.device != q.device
    ):
        raise ValueError(
            f"key_mask: expected a bool (B, Tk) = ({B}, {Tk}) tensor on {q.device}, got {key_mask.dtype} "
            f"{tuple(key_mask.shape)} on {key_mask.device}"
        )
    if not q.is_cuda and isinstance(_attn_fwd, triton.JITFunction):  # compiled kernels need a GPU
        raise ValueError(f"tensors on {q.device} need Triton's CPU interpreter: set TRITON_INTERPRET=1 before import")


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    causal: bool = True,
    sm_scale: float | None = None,
    deterministic: bool = True,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Exact attention softmax(q k^T * scale [+ causal mask] [+ key padding]) v, fused. q: (B, H, Tq, D);
    k, v: (B, Hkv, Tk, D) with H % Hkv == 0; D in SUPPORTED_HEAD_DIMS; scale defaults to 1/sqrt(D).
    key_mask: (B, Tk) bool, True = a real key; padded keys get no weight from any query, and a query whose
    visible keys are all padding gets output 0. Returns (B, H, Tq, D) in q's dtype; differentiable in q, k, v.
    deterministic=False computes dq with FlashAttention-2's atomic adds (5 block matmuls in the backward
    instead of 7; the last bits of dq vary between runs). Raises ValueError on unsupported inputs."""
    _check_inputs(q, k, v, key_mask)
    scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else float(sm_scale)
    return flash_attn_fwd(q, k, v, causal, scale, deterministic, key_mask)[0]

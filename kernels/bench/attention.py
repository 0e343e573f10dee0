"""`cgpt bench kernels`: our FlashAttention-2 kernel against PyTorch's SDPA backends; the fused LM kernels.

Every provider runs in this one process, interleaved per shape: ours (`kernels/flash.py`), SDPA with
each backend forced (flash, efficient, cuDNN, math), SDPA as dispatched by default, and the naive reference.
A correctness gate comes first for every (shape, provider): forward output and dq, dk, dv on random inputs,
against a float64 reference on one key/value head group (batch 0, kv head 0 and its query heads - heads are
independent, so the slice suffices and keeps the oracle small at T = 16k). A provider passes when its error is
at most 3x that of the naive reference in the same dtype plus a small floor (the flash-attention rule). One
that fails is reported FAILED and is not timed; one that raises (a backend that does not support the shape,
out of memory) is reported n/a with the reason.

    FLOPs (Triton tutorial / flash-attention convention): fwd = 4 * B * H * T^2 * D, halved when causal;
    bwd = 2.5 * fwd; fwd+bwd = 3.5 * fwd.

Timing: `triton.testing.do_bench(warmup=25, rep=100, return_mode="median")` after three warm-up calls (JIT,
autotuning, cuDNN graph building). Peak memory is what one call adds on top of what was allocated before it.
Utilisation is against a bf16 8192^3 matmul timed in the same run. The backend default SDPA picks is read from
`torch._fused_sdp_choice`, the private dispatcher SDPA itself consults, called on the benchmark's own tensors
(requiring grad, as in training); "unknown" where a torch version lacks it.

Without CUDA only the correctness pass runs, on small shapes in Triton's CPU interpreter. The command and its
report files are in kernels/bench/report.py.
"""

from __future__ import annotations

import contextlib
import platform
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kernels.reference import attention_reference

MODES = ("fwd", "bwd", "fwd+bwd")
MODE_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}
FLOP_FORMULA = "fwd = 4*B*H*T^2*D (x0.5 if causal); bwd = 2.5*fwd; fwd+bwd = 3.5*fwd"
ERROR_FLOOR = {torch.float32: 5e-3, torch.float16: 1e-3, torch.bfloat16: 8e-3}  # fp32 dots are tf32 on GPUs
ROW_KEYS = tuple(
    "shape batch n_head n_kv_head seqlen head_dim causal dtype provider backend mode status reason"
    " err_o err_dq err_dk err_dv ms tflops peak_mib speedup_vs_best_sdpa utilisation".split()
)
TIMED_COLUMNS = "shape mode provider backend status ms tflops peak_mib speedup_vs_best_sdpa utilisation reason"
CHECKED_COLUMNS = "shape provider status err_o err_dq err_dk err_dv backend reason"


def attention_flops(batch: int, n_head: int, seqlen: int, head_dim: int, causal: bool, mode: str) -> float:
    """FLOPs of one attention call by the convention above (per head: two matmuls of 2 * T^2 * D)."""
    fwd = 4.0 * batch * n_head * seqlen * seqlen * head_dim
    return fwd * (0.5 if causal else 1.0) * MODE_FACTOR[mode]


@dataclass(frozen=True)
class AttentionShape:
    batch: int
    n_head: int
    n_kv_head: int
    seqlen: int
    head_dim: int
    causal: bool
    dtype: torch.dtype

    def flops(self, mode: str) -> float:
        return attention_flops(self.batch, self.n_head, self.seqlen, self.head_dim, self.causal, mode)

    @property
    def name(self) -> str:
        gqa = f"/kv{self.n_kv_head}" if self.n_kv_head != self.n_head else ""
        mask, dtype = "causal" if self.causal else "full", _dtype_name(self.dtype)
        return f"B{self.batch} H{self.n_head}{gqa} T{self.seqlen} D{self.head_dim} {mask} {dtype}"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_shapes(quick: bool) -> list[AttentionShape]:
    """16k tokens per batch (B*T = 16384) at n_embd 2048 (H = 2048 / D), plus trainer-like shapes (with GQA).
    The headline shapes come first (bf16, D 128, causal: the target's), then the trainer's, then the rest, so a
    run cut short by --budget-s keeps what matters most. quick: bf16, D 128, T 1024 and 4096, the trainer's."""
    seqlens = (1024, 4096) if quick else (512, 1024, 2048, 4096, 8192, 16384)
    dtypes = (torch.bfloat16,) if quick else (torch.bfloat16, torch.float16)
    dims = (128,) if quick else (128, 64)
    grid = [(dtype, d, causal, t) for dtype in dtypes for d in dims for causal in (True, False) for t in seqlens]
    sweep = [AttentionShape(16384 // t, 2048 // d, 2048 // d, t, d, causal, dtype) for dtype, d, causal, t in grid]
    trainer = [AttentionShape(8, 12, kv, 1024, 64, True, torch.bfloat16) for kv in (12, 4)]
    headline = [s for s in sweep if is_headline(s)]
    return headline + trainer + [s for s in sweep if not is_headline(s)]


def is_headline(shape: AttentionShape) -> bool:
    """The issue's target shapes: bf16, D 128, causal, on the 16k-token sweep (n_embd 2048)."""
    return shape.dtype == torch.bfloat16 and shape.head_dim == 128 and shape.causal and shape.n_head == 16


def check_shapes() -> list[AttentionShape]:
    """Small shapes for the interpreter's correctness pass (a few seconds each)."""
    return [
        AttentionShape(1, 4, 4, 128, 64, True, torch.float32),
        AttentionShape(2, 2, 2, 100, 128, False, torch.float16),
        AttentionShape(1, 4, 2, 100, 32, True, torch.bfloat16),
    ]


@dataclass(frozen=True)
class Provider:
    """An attention implementation: fn(q, k, v, causal) -> o, run under `sdpa_backend` when one is forced."""

    name: str
    fn: Callable[[Tensor, Tensor, Tensor, bool], Tensor]
    sdpa_backend: object | None = None


def _sdpa(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)


def _ours(q: Tensor, k: Tensor, v: Tensor, causal: bool, deterministic: bool = True) -> Tensor:
    from kernels.flash import flash_attention  # imported late: @triton.jit reads TRITON_INTERPRET

    return flash_attention(q, k, v, causal=causal, deterministic=deterministic)


def _ours_atomic(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    return _ours(q, k, v, causal, deterministic=False)  # dq by atomic adds: FlashAttention-2's backward


def attention_providers() -> list[Provider]:
    from torch.nn.attention import SDPBackend

    forced = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    forced["math"] = "MATH"
    sdpa = [Provider(f"sdpa-{n}", _sdpa, getattr(SDPBackend, b)) for n, b in forced.items() if hasattr(SDPBackend, b)]
    return [
        Provider("triton", _ours),
        Provider("triton-atomic", _ours_atomic),
        *sdpa,
        Provider("sdpa-default", _sdpa),
        Provider("naive", attention_reference),
    ]


@contextlib.contextmanager
def _calling(p: Provider) -> Iterator[None]:
    if p.sdpa_backend is None:
        yield
        return
    from torch.nn.attention import sdpa_kernel

    with sdpa_kernel(p.sdpa_backend):
        yield


def make_inputs(shape: AttentionShape, device: str, seed: int = 0) -> tuple[Tensor, ...]:
    """q, k, v, do: random normal, never zeros (zeros run faster on tensor cores). q, do (B, H, T, D);
    k, v (B, Hkv, T, D)."""
    g = torch.Generator(device=device).manual_seed(seed)
    s = shape
    q_shape, kv_shape = (
        (s.batch, s.n_head, s.seqlen, s.head_dim),
        (s.batch, s.n_kv_head, s.seqlen, s.head_dim),
    )
    return tuple(torch.randn(x, generator=g, device=device).to(s.dtype) for x in (q_shape, kv_shape, kv_shape, q_shape))


def _outputs(
    p: Provider, inputs: Sequence[Tensor], causal: bool, dtype: torch.dtype | None = None, on_slice: bool = False
) -> list[Tensor]:
    """[o, dq, dk, dv] of one forward+backward, sliced to batch 0 and kv head 0's group of query heads
    (with on_slice, computed on that slice only: the oracle's memory stays small)."""
    q, k, v, do = inputs
    n_rep = q.shape[1] // k.shape[1]
    if on_slice:
        q, k, v, do = q[:1, :n_rep], k[:1, :1], v[:1, :1], do[:1, :n_rep]
    leaves = [x.detach().to(dtype or x.dtype).requires_grad_() for x in (q, k, v)]
    with _calling(p):
        o = p.fn(*leaves, causal)
    o.backward(do.to(o.dtype))
    got = [o.detach()] + [x.grad for x in leaves]
    return [x[:1, :n_rep] if i < 2 else x[:1, :1] for i, x in enumerate(got)]


def error_line(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def check_provider(
    p: Provider, inputs: Sequence[Tensor], causal: bool, oracle: list[Tensor], baseline: list[Tensor]
) -> dict:
    """The correctness gate: status ok / FAILED / n/a, the reason, and the max errors of o, dq, dk, dv."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = _outputs(p, inputs, causal)
    except Exception as err:  # unsupported shape/dtype/backend, out of memory, ...: n/a, with the reason
        notes = "; ".join(str(w.message).splitlines()[0] for w in caught[:2])  # SDPA says why in warnings
        return {"status": "n/a", "reason": error_line(err) + (f" ({notes})" if notes else "")}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # e.g. after the naive provider's T x T matrices
    floor = ERROR_FLOOR[inputs[0].dtype]
    errors = [(a.double() - b).abs().max().item() for a, b in zip(got, oracle, strict=True)]
    base = [(c.double() - b).abs().max().item() for c, b in zip(baseline, oracle, strict=True)]
    bad = [n for n, e, r in zip(("o", "dq", "dk", "dv"), errors, base, strict=True) if not e <= 3 * r + floor]
    row = {
        "status": "FAILED" if bad else "ok",
        "reason": f"error too large in {', '.join(bad)}" if bad else "",
    }
    return row | dict(zip(("err_o", "err_dq", "err_dk", "err_dv"), errors, strict=True))  # NaN fails above


def time_provider(p: Provider, inputs: Sequence[Tensor], causal: bool, mode: str) -> tuple[float, float]:
    """(median ms, peak MiB added by one call) on a CUDA device."""
    from triton.testing import do_bench

    q, k, v, do = (x.detach().requires_grad_(i < 3) for i, x in enumerate(inputs))
    with _calling(p):
        if mode == "fwd":
            fn = lambda: p.fn(q, k, v, causal)
        elif mode == "bwd":
            o = p.fn(q, k, v, causal)
            fn = lambda: o.backward(do, retain_graph=True)
        else:
            fn = lambda: p.fn(q, k, v, causal).backward(do)
        for _ in range(3):  # warm-up: JIT compilation, autotuning, cuDNN graph building
            fn()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        ms = do_bench(fn, warmup=25, rep=100, grad_to_none=[q, k, v], return_mode="median")
    return ms, peak


def sdpa_default_backend(inputs: Sequence[Tensor], causal: bool) -> str:
    """The backend SDPA's dispatcher picks for these tensors (requiring grad, as in training)."""
    from torch.nn.attention import SDPBackend

    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return "unknown"
    q, k, v = (x.detach().requires_grad_() for x in inputs[:3])
    gqa = {"enable_gqa": True} if k.shape[1] != q.shape[1] else {}
    try:
        return SDPBackend(choose(q, k, v, is_causal=causal, **gqa)).name
    except Exception as err:  # a private API: report rather than fail
        return f"unknown ({type(err).__name__})"


def run_attention_bench(
    shapes: Sequence[AttentionShape],
    providers: Sequence[Provider],
    modes: Sequence[str],
    device: str,
    matmul_tflops: float | None = None,
) -> list[dict]:
    """Gate every (shape, provider) on correctness, then time the passing ones per mode, interleaved per
    shape. Without modes, the correctness pass only: one row per (shape, provider), mode "-"."""
    rows = []
    for shape in shapes:
        inputs = make_inputs(shape, device)
        naive = Provider("naive", attention_reference)
        oracle = _outputs(naive, inputs, shape.causal, torch.float64, on_slice=True)
        baseline = _outputs(naive, inputs, shape.causal, on_slice=True)  # naive, in the inputs' dtype
        checks = {p.name: check_provider(p, inputs, shape.causal, oracle, baseline) for p in providers}
        default = sdpa_default_backend(inputs, shape.causal)
        base = asdict(shape) | {"shape": shape.name, "dtype": _dtype_name(shape.dtype)}
        for mode in modes or ("-",):
            timed = []
            for p in providers:
                backend = default if p.name == "sdpa-default" else getattr(p.sdpa_backend, "name", "")
                row = dict.fromkeys(ROW_KEYS) | base | checks[p.name]
                timed.append(row | {"provider": p.name, "mode": mode, "backend": backend})
                if mode != "-" and row["status"] == "ok":
                    timed[-1] |= _timed(p, shape, inputs, mode)
            _add_ratios(timed, matmul_tflops)
            rows += timed
    return rows


def _timed(p: Provider, shape: AttentionShape, inputs: Sequence[Tensor], mode: str) -> dict:
    try:
        ms, peak = time_provider(p, inputs, shape.causal, mode)
    except Exception as err:  # e.g. out of memory in the naive reference's backward
        return {"status": "n/a", "reason": error_line(err)}
    finally:
        torch.cuda.empty_cache()
    return {"ms": ms, "peak_mib": peak, "tflops": shape.flops(mode) / (ms * 1e-3) / 1e12}


def _add_ratios(rows: list[dict], matmul_tflops: float | None) -> None:
    sdpa_ms = [r["ms"] for r in rows if r["provider"].startswith("sdpa") and r["ms"] is not None]
    for r in rows:
        if r["ms"] is not None:
            r["speedup_vs_best_sdpa"] = min(sdpa_ms) / r["ms"] if sdpa_ms else None
            r["utilisation"] = r["tflops"] / matmul_tflops if matmul_tflops else None


def measure_matmul_tflops(device: str, n: int = 8192) -> float:
    """bf16 n^3 matmul TFLOP/s: the practical ceiling that utilisation is measured against."""
    from triton.testing import do_bench

    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    ms = do_bench(lambda: a @ b, warmup=25, rep=100, return_mode="median")
    return 2 * n**3 / (ms * 1e-3) / 1e12


def environment(device: str) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({platform.machine()})"
    versions = {"python": platform.python_version(), "torch": torch.__version__, "triton": triton_version}
    return versions | {"cuda": torch.version.cuda, "device": name, "flops": FLOP_FORMULA}


def lm_kernel_rows(quick: bool, device: str) -> list[dict]:
    """The fused LM kernels' table (norms, RoPE, SwiGLU, cross-entropy), from their own benchmark module."""
    from kernels.bench.lm import bench_lm_kernels  # imported late: it imports the kernel modules

    return bench_lm_kernels(quick=quick, device=device)

"""Benchmarks of the fused LM kernels (norms, RoPE, SwiGLU, linear + cross-entropy) against the PyTorch path.

Every case first passes a correctness gate - forward output and every input gradient against the float64
reference on the benchmark's own inputs - and only then is timed; a case that fails the gate is reported, not
timed, so a fast wrong kernel cannot show up as a win.

Per case and pass (forward, forward + backward), on a CUDA device:
  ms        triton.testing.do_bench median (L2 flushed between repetitions), ours and the PyTorch path;
  GB/s      bytes of the minimal algorithm / time (each tensor read or written once: see `formula`), next to
            the GB/s of a large device-to-device copy measured in the same run (reads + writes) - the
            practical ceiling of a memory-bound kernel;
  TFLOP/s   for the linear + cross-entropy, which is matmul-bound: 2NVC forward, 6NVC forward + backward;
  peak MB   torch.cuda.max_memory_allocated above what was allocated before the call.
The PyTorch path is what the model runs without the kernel: F.rms_norm / F.layer_norm, the rotate-half
reference, F.silu(gate) * up, and F.cross_entropy on fp32-upcast logits (what autocast does with bf16 ones).
Without CUDA, a correctness-only pass runs on tiny shapes in Triton's interpreter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels import triton_status
from kernels.cross_entropy import fused_linear_cross_entropy, fused_linear_cross_entropy_reference
from kernels.glu import swiglu, swiglu_reference
from kernels.norms import layer_norm, layer_norm_reference, rms_norm, rms_norm_reference
from kernels.rope import apply_rotary, apply_rotary_reference

GATE_TOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 3e-2}  # max error / max |reference|
COPY_BYTES = 1 << 28
NO_GPU = "timing needs a GPU"

Inputs = Callable[[torch.dtype, torch.device, torch.Generator], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class LMCase:
    """One kernel at one shape. The inputs that require grad are those whose gradients are checked/timed."""

    kernel: str
    shape: str
    make_inputs: Inputs
    ours: Callable[..., torch.Tensor]
    torch_path: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]  # run on float64 copies: the gate's oracle
    bytes_fwd: Callable[[int], int] | None = None  # element size -> bytes moved by the minimal forward
    bytes_bwd: Callable[[int], int] | None = None
    flops_fwd: int = 0  # matmul-bound cases instead report TFLOP/s
    flops_bwd: int = 0
    formula: str = ""


# ----------------------------------------------------------------------------------------------------------
# Cases


def _randn(
    *shape: int, dtype: torch.dtype, device: torch.device, g: torch.Generator, grad: bool = True, scale: float = 1.0
) -> torch.Tensor:
    t = (torch.randn(shape, device=device, generator=g) * scale).to(dtype)
    return t.requires_grad_(grad)


def _norm_cases(N: int, C: int) -> list[LMCase]:
    def inputs(dtype: torch.dtype, dev: torch.device, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        return tuple(_randn(*s, dtype=dtype, device=dev, g=g) for s in ((N, C), (C,), (C,)))

    fwd = lambda e, k: 2 * N * C * e + k * C * e + k * N * 4  # k: 1 for RMSNorm, 2 with bias / mean
    bwd = lambda e, k: 3 * N * C * e + 2 * k * C * e + k * N * 4
    return [
        LMCase(
            "rms_norm",
            f"N={N} C={C}",
            lambda *a: inputs(*a)[:2],
            rms_norm,
            lambda x, w: F.rms_norm(x, (C,), w, 1e-5),
            rms_norm_reference,
            lambda e: fwd(e, 1),
            lambda e: bwd(e, 1),
            formula="fwd 2NCe+Ce+4N, bwd 3NCe+2Ce+4N",
        ),
        LMCase(
            "layer_norm",
            f"N={N} C={C}",
            inputs,
            layer_norm,
            lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5),
            layer_norm_reference,
            lambda e: fwd(e, 2),
            lambda e: bwd(e, 2),
            formula="fwd 2NCe+2Ce+8N, bwd 3NCe+4Ce+8N",
        ),
    ]


def _rope_case(B: int, H: int, T: int, D: int) -> LMCase:
    def inputs(dtype: torch.dtype, dev: torch.device, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        angles = torch.rand(T, D // 2, device=dev, generator=g) * 6.3
        return _randn(B, H, T, D, dtype=dtype, device=dev, g=g), angles.cos(), angles.sin()

    move = lambda e: 2 * B * H * T * D * e + T * D * 4  # x in, out, cos + sin (fp32)
    return LMCase(
        "rope",
        f"B={B} H={H} T={T} D={D}",
        inputs,
        apply_rotary,
        apply_rotary_reference,
        apply_rotary_reference,
        move,
        move,
        formula="2BHTDe + 4TD each way",
    )


def _swiglu_case(N: int, F_: int) -> LMCase:
    def inputs(dtype: torch.dtype, dev: torch.device, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        gate = _randn(N, F_, dtype=dtype, device=dev, g=g, scale=2.0)
        return gate, _randn(N, F_, dtype=dtype, device=dev, g=g)

    return LMCase(
        "swiglu",
        f"N={N} F={F_}",
        inputs,
        swiglu,
        lambda a, u: F.silu(a) * u,
        swiglu_reference,
        lambda e: 3 * N * F_ * e,
        lambda e: 5 * N * F_ * e,
        formula="fwd 3NFe, bwd 5NFe",
    )


def _cross_entropy_case(N: int, C: int, V: int) -> LMCase:
    def inputs(dtype: torch.dtype, dev: torch.device, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        x = _randn(N, C, dtype=dtype, device=dev, g=g)
        w = _randn(V, C, dtype=dtype, device=dev, g=g, scale=C**-0.5)
        return x, w, torch.randint(0, V, (N,), device=dev, generator=g)

    torch_path = lambda x, w, t: F.cross_entropy((x @ w.T).float(), t)
    return LMCase(
        "linear_cross_entropy",
        f"N={N} C={C} V={V}",
        inputs,
        fused_linear_cross_entropy,
        torch_path,
        fused_linear_cross_entropy_reference,
        flops_fwd=2 * N * V * C,
        flops_bwd=4 * N * V * C,
        formula="FLOPs fwd 2NVC, bwd 4NVC (ours does all 6NVC in fwd)",
    )


def lm_cases(quick: bool, on_gpu: bool) -> list[LMCase]:
    """Small-model shapes on a GPU (16k tokens, C 768 / 2048, V 32k / 50k); tiny ones for the interpreter."""
    if not on_gpu:
        return [
            *_norm_cases(9, 96),
            _rope_case(1, 2, 9, 32),
            _swiglu_case(9, 80),
            _cross_entropy_case(9, 32, 300),
        ]
    N = 4096 if quick else 16384
    cases: list[LMCase] = []
    for C in (768,) if quick else (768, 2048):
        H, D = C // 64 if C == 768 else C // 128, 64 if C == 768 else 128
        hidden = -(-8 * C // 3 // 256) * 256  # SwiGLU width ~8/3 C, a multiple of 256
        cases += [*_norm_cases(N, C), _rope_case(N // 1024, H, 1024, D), _swiglu_case(N, hidden)]
    shapes = [(768, 32768)] if quick else [(768, 32768), (768, 50304), (2048, 32768)]
    return cases + [_cross_entropy_case(N, C, V) for C, V in shapes]


# ----------------------------------------------------------------------------------------------------------
# Correctness gate and measurements


def _outputs_and_grads(
    fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], g: torch.Generator | None
) -> list[torch.Tensor]:
    """[output, then the gradient of every input that requires one] for a random upstream gradient from g
    (the same draws for ours and the reference: pass generators seeded alike)."""
    leaves = [t for t in inputs if t.requires_grad]
    out = fn(*inputs)
    grad_out = torch.randn(out.shape, device=out.device, generator=g).to(out.dtype)
    return [out, *torch.autograd.grad(out, leaves, grad_out)]


def gate(case: LMCase, inputs: tuple[torch.Tensor, ...]) -> tuple[bool, float]:
    """(passed, worst relative error) of ours against the float64 reference, output and every gradient."""
    seeded = lambda: torch.Generator(device=inputs[0].device).manual_seed(1)
    ours = _outputs_and_grads(case.ours, inputs, seeded())
    inputs64 = tuple(
        t.detach().double().requires_grad_(t.requires_grad) if t.is_floating_point() else t for t in inputs
    )
    ref = _outputs_and_grads(case.reference, inputs64, seeded())
    worst = 0.0
    for a, r in zip(ours, ref, strict=True):
        err = (a.double() - r).abs().max().item() / max(r.abs().max().item(), 1e-6)
        worst = max(worst, err if err == err else float("inf"))  # NaN fails
    return worst <= GATE_TOL[inputs[0].dtype], worst


def copy_bandwidth(device: torch.device) -> float:
    """GB/s of a large device-to-device copy, counting the read and the write."""
    import triton.testing

    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(lambda: dst.copy_(src), return_mode="median")
    return 2 * COPY_BYTES / ms / 1e6


def _peak_mb(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _time(case: LMCase, inputs: tuple[torch.Tensor, ...], with_backward: bool) -> dict:
    """ms, GB/s, TFLOP/s and peak MB of ours and the PyTorch path for one pass."""
    import triton.testing

    leaves = [t for t in inputs if t.requires_grad]
    e = inputs[0].element_size()
    flops = case.flops_fwd + (case.flops_bwd if with_backward else 0)
    nbytes = 0 if flops else case.bytes_fwd(e) + (case.bytes_bwd(e) if with_backward else 0)
    row: dict = {}
    for name, fn in (("triton", case.ours), ("torch", case.torch_path)):
        if with_backward:
            run = lambda fn=fn: (lambda out: out.backward(torch.ones_like(out)))(fn(*inputs))
        else:
            run = lambda fn=fn: fn(*inputs)
        ms = triton.testing.do_bench(run, grad_to_none=leaves, return_mode="median")
        for t in leaves:
            t.grad = None
        row[f"ms_{name}"] = ms
        row[f"gbps_{name}"] = None if flops else nbytes / ms / 1e6
        row[f"tflops_{name}"] = flops / ms / 1e9 if flops else None
        row[f"peak_mb_{name}"] = _peak_mb(run)
        for t in leaves:
            t.grad = None
    row["speedup"] = row["ms_torch"] / row["ms_triton"]
    return row


# ----------------------------------------------------------------------------------------------------------
# Public function


TIMING_KEYS = (
    "ms_triton",
    "ms_torch",
    "speedup",
    "gbps_triton",
    "gbps_torch",
    "frac_of_copy",
    "tflops_triton",
    "tflops_torch",
    "peak_mb_triton",
    "peak_mb_torch",
)


def bench_lm_kernels(quick: bool, device: str, cases: list[LMCase] | None = None) -> list[dict]:
    """One row per (case, pass): gate result and, on CUDA, timings; see the module docstring for the keys."""
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available")
    usable, reason = triton_status()
    dtype = torch.bfloat16
    copy_gbps = copy_bandwidth(dev) if on_gpu and usable else None
    rows = []
    for case in cases if cases is not None else lm_cases(quick, on_gpu):
        base = {
            "kernel": case.kernel,
            "shape": case.shape,
            "dtype": str(dtype).removeprefix("torch."),
            "device": torch.cuda.get_device_name(dev) if on_gpu else "cpu",
            "formula": case.formula,
            "copy_gbps": copy_gbps,
            **dict.fromkeys(TIMING_KEYS),
        }
        if not usable:
            rows += [
                {**base, "pass": p, "gate": "skipped", "max_err": None, "note": reason} for p in ("fwd", "fwd+bwd")
            ]
            continue
        inputs = case.make_inputs(dtype, dev, torch.Generator(device=dev).manual_seed(0))
        ok, err = gate(case, inputs)
        for with_backward in (False, True):
            row = {
                **base,
                "pass": "fwd+bwd" if with_backward else "fwd",
                "gate": "pass" if ok else "FAIL",
                "max_err": err,
                "note": "" if on_gpu else NO_GPU,
            }
            if ok and on_gpu:
                row.update(_time(case, inputs, with_backward))
                if row["gbps_triton"] is not None:
                    row["frac_of_copy"] = row["gbps_triton"] / copy_gbps
            rows.append(row)
    return rows

"""`cgpt bench kernels`: our FlashAttention-2 kernel against PyTorch's SDPA backends; the fused LM kernels.

Every provider runs in this one process, interleaved per shape: ours (`kernels/flash_attention.py`), SDPA with
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

Without CUDA only the correctness pass runs, on small shapes in Triton's CPU interpreter: `run` sets
TRITON_INTERPRET=1 before the kernel modules are imported (the CLI configuring Triton, not a switch of ours).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

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
TIMED_COLUMNS = (
    "shape mode provider backend status ms tflops peak_mib speedup_vs_best_sdpa utilisation reason"
)
CHECKED_COLUMNS = "shape provider status err_o err_dq err_dk err_dv backend reason"
HEADLINE_COLUMNS = "T triton_tflops best_sdpa sdpa_tflops ratio"


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
    grid = [
        (dtype, d, causal, t) for dtype in dtypes for d in dims for causal in (True, False) for t in seqlens
    ]
    sweep = [
        AttentionShape(16384 // t, 2048 // d, 2048 // d, t, d, causal, dtype) for dtype, d, causal, t in grid
    ]
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


def _ours(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    from kernels.flash_attention import flash_attention  # imported late: @triton.jit reads TRITON_INTERPRET

    return flash_attention(q, k, v, causal=causal)


def attention_providers() -> list[Provider]:
    from torch.nn.attention import SDPBackend

    forced = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION"}
    forced["math"] = "MATH"
    sdpa = [
        Provider(f"sdpa-{n}", _sdpa, getattr(SDPBackend, b))
        for n, b in forced.items()
        if hasattr(SDPBackend, b)
    ]
    return [
        Provider("triton", _ours),
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
    return tuple(
        torch.randn(x, generator=g, device=device).to(s.dtype) for x in (q_shape, kv_shape, kv_shape, q_shape)
    )


def _outputs(p: Provider, inputs: Sequence[Tensor], causal: bool, dtype: torch.dtype | None = None,
             on_slice: bool = False) -> list[Tensor]:  # fmt: skip
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


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"


def check_provider(p: Provider, inputs: Sequence[Tensor], causal: bool, oracle: list[Tensor],
                   baseline: list[Tensor]) -> dict:  # fmt: skip
    """The correctness gate: status ok / FAILED / n/a, the reason, and the max errors of o, dq, dk, dv."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = _outputs(p, inputs, causal)
    except Exception as err:  # unsupported shape/dtype/backend, out of memory, ...: n/a, with the reason
        notes = "; ".join(str(w.message).splitlines()[0] for w in caught[:2])  # SDPA says why in warnings
        return {"status": "n/a", "reason": _reason(err) + (f" ({notes})" if notes else "")}
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


def run_attention_bench(shapes: Sequence[AttentionShape], providers: Sequence[Provider], modes: Sequence[str],
                        device: str, matmul_tflops: float | None = None) -> list[dict]:  # fmt: skip
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
        return {"status": "n/a", "reason": _reason(err)}
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
    from kernels.bench_lm import bench_lm_kernels  # imported late: it imports the kernel modules

    return bench_lm_kernels(quick=quick, device=device)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.0f}"
        text = "-" if x is None else str(x)
        return text if len(text) <= 80 else text[:77] + "..."  # the JSON keeps whole reasons

    cells = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def write_results(
    out: Path, meta: dict, attention: list[dict], lm: list[dict], with_plot: bool = True
) -> list[Path]:
    """attention.json (everything), attention.csv, lm_kernels.csv and attention.png (with matplotlib)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "attention.json"]
    paths[0].write_text(json.dumps({"meta": meta, "attention": attention, "lm_kernels": lm}, indent=1))
    for path, rows in ((out / "attention.csv", attention), (out / "lm_kernels.csv", lm)):
        if rows:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
                writer.writeheader()
                writer.writerows(rows)
            paths.append(path)
    if with_plot and plot(attention, out / "attention.png"):
        paths.append(out / "attention.png")
    return paths


def plot(rows: Sequence[dict], path: Path) -> bool:
    """TFLOP/s vs T per provider, one panel per (D, causal) x mode, for the first dtype; False without
    matplotlib or timings."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no global figure state
    except ImportError:
        return False
    sweep = [r for r in rows if r["tflops"] and r["n_head"] * r["head_dim"] == 2048]
    if not sweep:
        return False
    dtype = sweep[0]["dtype"]
    sweep = [r for r in sweep if r["dtype"] == dtype]
    panels = sorted({(r["head_dim"], r["causal"]) for r in sweep})
    modes = [m for m in MODES if any(r["mode"] == m for r in sweep)]
    fig = Figure(figsize=(5 * len(modes), 3.5 * len(panels)))
    axes = fig.subplots(len(panels), len(modes), squeeze=False)
    for (d, causal), ax_row in zip(panels, axes, strict=True):
        for mode, ax in zip(modes, ax_row, strict=True):
            sel = [r for r in sweep if (r["head_dim"], r["causal"], r["mode"]) == (d, causal, mode)]
            for name in dict.fromkeys(r["provider"] for r in sel):
                points = sorted((r["seqlen"], r["tflops"]) for r in sel if r["provider"] == name)
                ax.plot([t for t, _ in points], [f for _, f in points], "o-", label=name)
            title = f"D{d} {'causal' if causal else 'full'} {dtype} {mode}"
            ax.set(xlabel="T", ylabel="TFLOP/s", title=title)
            ax.set_xscale("log", base=2)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        if unknown := [n for n in text.split(",") if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return text.split(",")

    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("kernels", help="FlashAttention vs SDPA backends, and the fused LM kernels")
    p.add_argument(
        "--quick", action="store_true", help="a smaller table: bf16, D 128, T 1024 and 4096, trainer"
    )
    p.add_argument("--out", type=Path, default=Path("bench-kernels"), help="folder for JSON, CSV and PNG")
    names = [x.name for x in attention_providers()]
    for flag, allowed in (("--modes", list(MODES)), ("--providers", names)):
        p.add_argument(
            flag, type=_names(allowed), default=allowed, help=f"comma-separated, of {','.join(allowed)}"
        )
    p.add_argument("--budget-s", type=_positive, help="start no new attention shape after this many seconds")
    p.add_argument("--precompile", action=argparse.BooleanOptionalAction, default=True,
                   help="on a GPU, first compile our configs in parallel processes (cgpt bench compile)")  # fmt: skip
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _filled(rows: Sequence[dict]) -> list[str]:
    """The keys of rows, in order, that hold a value in at least one row."""
    return [k for k in dict.fromkeys(k for r in rows for k in r) if any(r.get(k) is not None for r in rows)]


def run(args: argparse.Namespace) -> int:
    """Exit 0, or 1 when our kernel fails the correctness gate."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # Triton's own switch, read when the kernel modules are imported
    start = time.perf_counter()
    providers = [p for p in attention_providers() if p.name in args.providers]
    meta = environment(device)
    print("\n".join(f"{key:>8}: {value}" for key, value in meta.items()))
    lm = lm_kernel_rows(args.quick, device)  # first: short, and a budget cut never loses it
    print(format_table(lm, _filled(lm)), end="\n\n")
    if device == "cuda":
        meta["matmul_tflops"] = tflops = measure_matmul_tflops(device)
        print(f"  matmul: bf16 8192^3 at {tflops:.0f} TFLOP/s (utilisation = TFLOP/s / this)")
        shapes, modes, columns = default_shapes(args.quick), [m for m in MODES if m in args.modes], TIMED_COLUMNS
        if args.precompile and "triton" in args.providers:
            meta["precompile"] = precompile(shapes)
    else:
        print("no CUDA device: correctness only (Triton CPU interpreter, float64 oracle); timings need a GPU")
        shapes, modes, columns, tflops = check_shapes(), (), CHECKED_COLUMNS, None
    rows = []
    for i, shape in enumerate(shapes):  # one table per shape, printed as it completes
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            meta["cut_by_budget"] = f"{len(shapes) - i} of {len(shapes)} shapes not run (--budget-s {args.budget_s})"
            print(f"budget: {meta['cut_by_budget']}")
            break
        rows += (new := run_attention_bench([shape], providers, modes, device, tflops))
        print(format_table(new, columns.split()), end="\n\n")
        write_results(args.out, meta, rows, lm, with_plot=False)  # a run cut short keeps what it measured
    for path in write_results(args.out, meta, rows, lm):
        print(f"wrote {path}")
    if headline := headline_rows(rows):
        print("\nheadline (bf16, D 128, causal, fwd+bwd; target >= 0.8x the best SDPA backend, goal 1.0x):")
        print(format_table(headline, HEADLINE_COLUMNS.split()))
    print(f"took {time.perf_counter() - start:.0f} s")
    return int(any(r["provider"] == "triton" and r["status"] == "FAILED" for r in rows))


def precompile(shapes: Sequence[AttentionShape]) -> str:
    """Compile our kernels' configs for these shapes in parallel processes, into Triton's cache (where the
    autotuner then finds them). Returns a one-line account; never fails the benchmark."""
    from kernels.compile_report import compile_report, parse_target

    began, jobs = time.perf_counter(), os.cpu_count() or 1
    try:
        compiled = compile_report(list(shapes), parse_target(None), jobs)
    except Exception as err:  # an optimisation only: the autotuner compiles whatever is missing
        note = f"precompile skipped: {_reason(err)}"
    else:
        note = f"precompiled {len(compiled)} kernels in {time.perf_counter() - began:.0f} s on {jobs} processes"
    print(note)
    return note


def headline_rows(rows: Sequence[dict]) -> list[dict]:
    """Per T of the headline shapes, fwd+bwd: ours, the best SDPA backend, and the ratio."""
    out = []
    for r in rows:
        if r["provider"] == "triton" and r["mode"] == "fwd+bwd" and r["tflops"] and is_headline(_shape_of(r)):
            sdpa = [x for x in rows if x["shape"] == r["shape"] and x["mode"] == "fwd+bwd" and x["tflops"]
                    and x["provider"].startswith("sdpa")]  # fmt: skip
            best = max(sdpa, key=lambda x: x["tflops"], default=None)
            out.append({"T": r["seqlen"], "triton_tflops": r["tflops"], "best_sdpa": best and best["provider"],
                        "sdpa_tflops": best and best["tflops"], "ratio": r["speedup_vs_best_sdpa"]})  # fmt: skip
    return out


def _shape_of(row: dict) -> AttentionShape:
    dtype = getattr(torch, row["dtype"])
    return AttentionShape(*(row[k] for k in ("batch", "n_head", "n_kv_head", "seqlen", "head_dim", "causal")), dtype)

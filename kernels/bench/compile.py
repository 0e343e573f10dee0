"""Compile the attention kernels for a GPU, without one, and read what the compiler did (`cgpt bench compile`).

For each benchmark shape, every launch of the forward and of both backward variants, and every tile config
the autotuner may try there (after `_prune`), Triton lowers the kernel for the target (default sm_90: Hopper,
the H100/H200) with the argument specialisation its JIT would give those tensors, and its bundled ptxas
assembles it; its bundled cuobjdump then reads the registers and the stack frame (spilled registers) from the
machine code. Reported per compile: seconds (milliseconds when Triton's cache already holds it), shared
memory and whether it fits the target's per-block limit, registers, spill bytes, and the matrix instructions
used (`wgmma`: Hopper's warpgroup tensor-core ops; `mma`: the older per-warp ones; `fma`: none). Costs no
GPU time (METHOD's "read what costs no device time").

On a GPU, the compiled kernels land in Triton's cache under the keys the JIT computes, so running this with
`--jobs N` before `cgpt bench kernels` moves compilation into N parallel processes; the benchmark then loads
them. This leans on two internals of Triton's JIT (`create_function_from_signature`, `JITFunction._pack_args`,
the same in Triton 3.6 and 3.9); where a Triton lacks them, the command says so and exits 1.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple
from multiprocessing import get_context
from pathlib import Path

import torch

from kernels.bench.attention import AttentionShape

SHARED_LIMIT_KIB = {80: 163, 86: 99, 87: 163, 89: 99, 90: 227, 100: 227, 120: 99}  # per block, by sm
COLUMNS = "kernel D dtype causal BLOCK_M BLOCK_N warps stages seconds shared_kib fits registers spill_bytes mma"


def quick_shapes() -> list[AttentionShape]:
    """The benchmark's headline shape (bf16, D 128, causal, 16k tokens) and a small fp32 one (fixed config)."""
    return [
        AttentionShape(4, 16, 16, 4096, 128, True, torch.bfloat16),
        AttentionShape(1, 2, 2, 256, 128, True, torch.float32),
    ]


def plan(shape: AttentionShape) -> list[tuple[str, object]]:
    """[(name, Launch)] of one forward and both backward variants at this shape, on meta tensors (no memory,
    no device)."""
    from kernels.flash import backward_launches, forward_launch

    s = shape
    q, do, o, dq = (
        torch.empty(s.batch, s.n_head, s.seqlen, s.head_dim, dtype=s.dtype, device="meta") for _ in range(4)
    )
    k, v, dk, dv = (
        torch.empty(s.batch, s.n_kv_head, s.seqlen, s.head_dim, dtype=s.dtype, device="meta") for _ in range(4)
    )
    lse, delta = (torch.empty(s.batch, s.n_head, s.seqlen, device="meta") for _ in range(2))
    dq32 = torch.empty(dq.shape, device="meta")  # the atomic variant's fp32 dq accumulator
    scale = s.head_dim**-0.5
    launches = [forward_launch(q, k, v, o, lse, s.causal, scale, gpu=True)]
    launches += backward_launches(do, q, k, v, o, lse, delta, dq, dk, dv, s.causal, scale, gpu=True)
    launches += backward_launches(do, q, k, v, o, lse, delta, dq32, dk, dv, s.causal, scale, True, gpu=True)[1:]
    names = ("fwd", "bwd_pre", "bwd_dkdv", "bwd_dq", "bwd_dkdv_atomic_dq")
    return list(zip(names, launches, strict=True))


def parse_target(text: str | None) -> tuple[str, int, int]:
    """'sm_90' -> ('cuda', 90, 32); None -> this machine's GPU, or sm_90 without one."""
    if text is None:
        if torch.cuda.is_available():
            from triton.runtime import driver

            t = driver.active.get_current_target()
            return t.backend, t.arch, t.warp_size
        text = "sm_90"
    if not (text.startswith("sm_") and text[3:].isdigit()):
        raise ValueError(f"--target {text!r}: expected sm_XY, e.g. sm_90 (Hopper) or sm_80 (Ampere)")
    return "cuda", int(text[3:]), 32


def _triton_internals() -> tuple:
    try:
        from triton.compiler import ASTSource, make_backend
        from triton.runtime.jit import JITFunction, create_function_from_signature

        assert hasattr(JITFunction, "_pack_args")
    except (ImportError, AssertionError) as err:
        import triton

        raise RuntimeError(
            f"Triton {triton.__version__} lacks the JIT internals this report uses ({err or '_pack_args'}); "
            "it works with Triton 3.6 to 3.9"
        ) from err
    return ASTSource, make_backend, create_function_from_signature


def _source_and_options(launch: object, config: dict, target: tuple[str, int, int]) -> tuple:
    """What Triton's JIT would compile for this launch and config: (ASTSource, options dict, GPUTarget)."""
    import triton
    from triton.backends.compiler import GPUTarget

    ast_source, make_backend, binder_for = _triton_internals()
    fn, gpu_target = launch.kernel, GPUTarget(*target)
    backend = make_backend(gpu_target)
    kwargs = {**launch.constexprs, **config, "debug": bool(fn.debug or triton.knobs.runtime.debug)}
    kwargs["instrumentation_mode"] = triton.knobs.compilation.instrumentation_mode
    bound, specialization, options = binder_for(fn.signature, fn.params, backend)(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return ast_source(fn, signature, constexprs, attrs), options.__dict__, gpu_target


def _resources(cubin: bytes) -> dict[str, int]:
    """REG and STACK of the (one) kernel in a cubin, read by the cuobjdump that ships with Triton."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run(
            [str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True, check=True
        ).stdout
    line = next(x for x in out.splitlines() if "REG:" in x)
    fields = dict(item.split(":", 1) for item in line.split() if ":" in item)
    return {"registers": int(fields["REG"]), "spill_bytes": int(fields["STACK"])}


def compile_one(task: tuple) -> dict:
    """Compile one (shape, launch index, config) for the target; a row of the report. Runs in a worker."""
    import triton

    shape_fields, index, config, target = task
    shape = AttentionShape(*shape_fields)
    name, launch = plan(shape)[index]
    src, options, gpu_target = _source_and_options(launch, config, target)
    start = time.perf_counter()
    compiled = triton.compile(src, target=gpu_target, options=options)
    seconds = time.perf_counter() - start
    ptx = compiled.asm["ptx"]
    mma = "wgmma" if "wgmma.mma_async" in ptx else "mma" if "mma.sync" in ptx else "fma"
    shared = compiled.metadata.shared / 1024
    limit = SHARED_LIMIT_KIB.get(target[1])
    row = {
        "kernel": name,
        "D": shape.head_dim,
        "dtype": str(shape.dtype).removeprefix("torch."),
        "causal": shape.causal,
        "BLOCK_M": {**launch.constexprs, **config}.get("BLOCK_M"),
        "BLOCK_N": {**launch.constexprs, **config}.get("BLOCK_N"),
        "warps": options["num_warps"],
        "stages": options["num_stages"],
        "seconds": seconds,
        "shared_kib": shared,
        "fits": None if limit is None else shared <= limit,
        "mma": mma,
    }
    return row | _resources(compiled.asm["cubin"])


def tasks(shapes: list[AttentionShape], target: tuple[str, int, int]) -> list[tuple]:
    """One task per distinct compile (the same source, constants and options twice is one compile)."""
    seen, out = set(), []
    for shape in shapes:
        for index, (_, launch) in enumerate(plan(shape)):
            for config in launch.configs():
                src, options, _ = _source_and_options(launch, config, target)
                key = (src.hash(), tuple(sorted((k, str(v)) for k, v in options.items())))
                if key not in seen:
                    seen.add(key)
                    out.append((astuple(shape), index, config, target))
    return out


def compile_report(shapes: list[AttentionShape], target: tuple[str, int, int], jobs: int = 1) -> list[dict]:
    """Compile every distinct (launch, config) of these shapes for the target; rows in task order. jobs > 1:
    in that many spawned processes (compilation is single-threaded and CPU-bound)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("TRITON_INTERPRET=1 is set: the interpreter compiles nothing; unset it for this report")
    todo = tasks(shapes, target)
    if jobs <= 1:
        return [compile_one(t) for t in todo]
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(compile_one, todo))

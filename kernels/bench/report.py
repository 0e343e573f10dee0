"""What `cgpt bench kernels` and `cgpt bench compile` print and write: terminal tables, JSON and CSV files, the
TFLOP/s plot, the headline summary. Without CUDA only the correctness pass runs, in Triton's CPU interpreter:
`run_kernels` sets TRITON_INTERPRET=1 before the kernel modules are imported (the command configuring Triton,
not a switch of ours). The parsers are in train/cli/bench.py: this package never imports train/."""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from kernels.bench.attention import (
    CHECKED_COLUMNS,
    MODES,
    TIMED_COLUMNS,
    AttentionShape,
    attention_providers,
    check_shapes,
    default_shapes,
    environment,
    error_line,
    is_headline,
    lm_kernel_rows,
    measure_matmul_tflops,
    run_attention_bench,
)
from kernels.bench.compile import COLUMNS as COMPILE_COLUMNS
from kernels.bench.compile import compile_report, parse_target, quick_shapes

HEADLINE_COLUMNS = "T ours tflops best_sdpa sdpa_tflops ratio"
OURS = ("triton", "triton-atomic")  # our providers: the deterministic backward and the atomic-dq one


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.0f}"
        text = "-" if x is None else str(x)
        return text if len(text) <= 80 else text[:77] + "..."  # the JSON keeps whole reasons

    cells = [list(columns)] + [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def write_results(out: Path, meta: dict, attention: list[dict], lm: list[dict], with_plot: bool = True) -> list[Path]:
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


def _filled(rows: Sequence[dict]) -> list[str]:
    """The keys of rows, in order, that hold a value in at least one row."""
    return [k for k in dict.fromkeys(k for r in rows for k in r) if any(r.get(k) is not None for r in rows)]


def headline_rows(rows: Sequence[dict]) -> list[dict]:
    """Per T of the headline shapes and each of our providers, fwd+bwd: TFLOP/s, the best SDPA backend's, and
    the ratio."""
    out = []
    for r in rows:
        if r["provider"] in OURS and r["mode"] == "fwd+bwd" and r["tflops"] and is_headline(_shape_of(r)):
            sdpa = [
                x
                for x in rows
                if x["shape"] == r["shape"]
                and x["mode"] == "fwd+bwd"
                and x["tflops"]
                and x["provider"].startswith("sdpa")
            ]
            best = max(sdpa, key=lambda x: x["tflops"], default=None)
            out.append(
                {
                    "T": r["seqlen"],
                    "ours": r["provider"],
                    "tflops": r["tflops"],
                    "best_sdpa": best and best["provider"],
                    "sdpa_tflops": best and best["tflops"],
                    "ratio": r["speedup_vs_best_sdpa"],
                }
            )
    return out


def _shape_of(row: dict) -> AttentionShape:
    dtype = getattr(torch, row["dtype"])
    return AttentionShape(*(row[k] for k in ("batch", "n_head", "n_kv_head", "seqlen", "head_dim", "causal")), dtype)


def run_kernels(
    quick: bool,
    out: Path,
    modes: Sequence[str],
    providers: Sequence[str],
    budget_s: float | None,
    with_precompile: bool = True,
) -> int:
    """`cgpt bench kernels`: exit 0, or 1 when our kernel fails the correctness gate. Without CUDA only the
    correctness pass runs, in Triton's CPU interpreter."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"  # Triton's own switch, read when the kernel modules are imported
    start = time.perf_counter()
    chosen = [p for p in attention_providers() if p.name in providers]
    meta = environment(device)
    print("\n".join(f"{key:>8}: {value}" for key, value in meta.items()))
    lm = lm_kernel_rows(quick, device)  # first: short, and a budget cut never loses it
    print(format_table(lm, _filled(lm)), end="\n\n")
    if device == "cuda":
        meta["matmul_tflops"] = tflops = measure_matmul_tflops(device)
        print(f"  matmul: bf16 8192^3 at {tflops:.0f} TFLOP/s (utilisation = TFLOP/s / this)")
        shapes, modes, columns = default_shapes(quick), [m for m in MODES if m in modes], TIMED_COLUMNS
        if with_precompile and any(name in providers for name in OURS):
            meta["precompile"] = precompile(shapes)
    else:
        print("no CUDA device: correctness only (Triton CPU interpreter, float64 oracle); timings need a GPU")
        shapes, modes, columns, tflops = check_shapes(), (), CHECKED_COLUMNS, None
    rows = []
    for i, shape in enumerate(shapes):  # one table per shape, printed as it completes
        if budget_s is not None and time.perf_counter() - start > budget_s:
            meta["cut_by_budget"] = f"{len(shapes) - i} of {len(shapes)} shapes not run (--budget-s {budget_s})"
            print(f"budget: {meta['cut_by_budget']}")
            break
        rows += (new := run_attention_bench([shape], chosen, modes, device, tflops))
        print(format_table(new, columns.split()), end="\n\n")
        write_results(out, meta, rows, lm, with_plot=False)  # a run cut short keeps what it measured
    for path in write_results(out, meta, rows, lm):
        print(f"wrote {path}")
    if headline := headline_rows(rows):
        print("\nheadline (bf16, D 128, causal, fwd+bwd; target >= 0.8x the best SDPA backend, goal 1.0x):")
        print(format_table(headline, HEADLINE_COLUMNS.split()))
    print(f"took {time.perf_counter() - start:.0f} s")
    return int(any(r["provider"] in OURS and r["status"] == "FAILED" for r in rows))


def run_compile(target_name: str | None, quick: bool, jobs: int, json_path: Path | None) -> int:
    """`cgpt bench compile`: exit 1 when a config the kernels may launch does not fit the target's shared
    memory. Bad input (a target, the interpreter switched on) raises ValueError or RuntimeError."""
    target = parse_target(target_name)
    shapes = quick_shapes() if quick else default_shapes(quick=False)
    start = time.perf_counter()
    rows = compile_report(shapes, target, jobs)
    print(format_table(rows, COMPILE_COLUMNS.split()))
    spills, overflows = sum(r["spill_bytes"] > 0 for r in rows), sum(r["fits"] is False for r in rows)
    seconds = time.perf_counter() - start
    print(
        f"\n{len(rows)} compiles for sm_{target[1]} in {seconds:.1f} s on {jobs} processes; "
        f"{spills} spill registers; {overflows} overflow shared memory"
    )
    if json_path:
        json_path.write_text(json.dumps({"target": list(target), "rows": rows}, indent=1))
    return int(overflows > 0)


def precompile(shapes: Sequence[AttentionShape]) -> str:
    """Compile our kernels' configs for these shapes in parallel processes, into Triton's cache (where the
    autotuner then finds them). Returns a one-line account; never fails the benchmark."""
    began, jobs = time.perf_counter(), os.cpu_count() or 1
    try:
        compiled = compile_report(list(shapes), parse_target(None), jobs)
    except Exception as err:  # an optimisation only: the autotuner compiles whatever is missing
        note = f"precompile skipped: {error_line(err)}"
    else:
        note = f"precompiled {len(compiled)} kernels in {time.perf_counter() - began:.0f} s on {jobs} processes"
    print(note)
    return note

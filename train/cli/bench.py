"""`cgpt bench NAME`: benchmarks that print figures. Each member is a parser over a library function:

    generate   train/bench/generate.py     tokens/s with and without the KV cache
    matmul     train/runtime/hardware.py   achieved matmul FLOP/s (pass it as --peak-flops for a CPU's MFU)
    kernels    kernels/bench/report.py     fused attention vs every SDPA backend (GPU); correctness on a CPU
    compile    kernels/bench/report.py     every attention tile config compiled for a GPU target, without one
    tokenizer  train/bench/tokenizer.py    BPE trainer MB/s and bytes per token
    prepare    train/bench/prepare.py      peak memory of `prepare` on a large synthetic corpus
    prompt     train/bench/prompt.py       prompt scoring examples/s: batched + prefix cache vs the reference
    speedrun   train/bench/speedrun.py     time to a validation loss: `pretrain --minutes` vs nanoGPT's baby run

Library modules are imported when a benchmark runs, not when `cgpt` starts.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from train.cli import flags
from train.errors import CgptError

ATTENTION_MODES = ("fwd", "bwd", "fwd+bwd")  # kernels.bench.attention.MODES, without importing torch here


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmarks that print figures (kernels, generation, tokenizer, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = bench.add_subparsers(dest="bench", metavar="BENCH", parser_class=type(bench))
    for add in (_generate, _matmul, _kernels, _compile, _tokenizer, _prepare, _prompt, _speedrun):
        add(sub)
    bench.set_defaults(func=lambda args: (bench.print_help(), 2)[1])


# --- generate ------------------------------------------------------------------------------------------------


def _generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generation tokens/s with and without the KV cache")
    p.add_argument("--new-tokens", type=flags.positive_int, default=512)
    p.add_argument("--prompt-len", type=flags.positive_int, default=16)
    p.add_argument("--batch", type=flags.positive_int, default=1)
    p.add_argument("--n-layer", type=flags.positive_int, default=8)
    p.add_argument("--n-embd", type=flags.positive_int, default=320)
    p.add_argument("--threads", type=flags.nonneg_int, default=0, help="torch threads (0: torch's default)")
    p.set_defaults(func=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    import torch

    from train.bench.generate import bench_config, bench_generate, report

    if args.threads:
        torch.set_num_threads(args.threads)
    config = bench_config(n_layer=args.n_layer, n_embd=args.n_embd)
    result = bench_generate(config, args.new_tokens, args.prompt_len, args.batch)
    print(report(result, config))
    return 0 if result["same_tokens"] else 1


# --- matmul --------------------------------------------------------------------------------------------------


def _matmul(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matmul", help="achieved matmul FLOP/s (the MFU ceiling on a CPU)")
    p.add_argument("--n", type=flags.positive_int, default=1024, help="matrix size (default 1024)")
    p.add_argument("--seconds", type=flags.positive_float, default=2.0)
    flags.add_device_flag(p)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    p.set_defaults(func=run_matmul)


def run_matmul(args: argparse.Namespace) -> int:
    import torch

    from train.runtime.hardware import measure_matmul_flops, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = torch.float32 if args.dtype == "float32" else resolve_dtype(args.dtype, device)
    result = measure_matmul_flops(device, dtype, args.n, args.seconds)
    print(
        f"{args.n}^3 {str(dtype).removeprefix('torch.')} matmul on {device} ({torch.get_num_threads()} threads): "
        f"{result / 1e9:,.1f} GFLOP/s  (use --peak-flops {result:.3e})"
    )
    return 0


# --- kernels and compile -------------------------------------------------------------------------------------


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        if unknown := [n for n in text.split(",") if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
        return text.split(",")

    return parse


PROVIDERS = (
    "triton",
    "triton-atomic",
    "sdpa-flash",
    "sdpa-efficient",
    "sdpa-cudnn",
    "sdpa-math",
    "sdpa-default",
    "naive",
)  # kernels.bench.attention.attention_providers(), named without importing torch here


def _kernels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kernels", help="FlashAttention vs SDPA backends, and the fused LM kernels")
    p.add_argument("--quick", action="store_true", help="a smaller table: bf16, D 128, T 1024 and 4096, trainer")
    p.add_argument("--out", type=Path, default=Path("bench-kernels"), help="folder for JSON, CSV and PNG")
    for flag, allowed in (("--modes", ATTENTION_MODES), ("--providers", PROVIDERS)):
        p.add_argument(
            flag, type=_names(allowed), default=list(allowed), help=f"comma-separated, of {','.join(allowed)}"
        )
    p.add_argument("--budget-s", type=flags.positive_float, help="start no new attention shape after this many seconds")
    p.add_argument(
        "--precompile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="on a GPU, first compile our configs in parallel processes (cgpt bench compile)",
    )
    p.set_defaults(func=run_kernels)


def run_kernels(args: argparse.Namespace) -> int:
    from kernels.bench.report import run_kernels as run

    return run(args.quick, args.out, args.modes, args.providers, args.budget_s, args.precompile)


def _compile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile the attention kernels for a GPU target: registers, spills")
    p.add_argument("--target", help="sm_XY (default: this machine's GPU, or sm_90 without one)")
    p.add_argument("--quick", action="store_true", help="only bf16 D 128 causal, and the fp32 fixed config")
    p.add_argument("--jobs", type=flags.positive_int, default=os.cpu_count() or 1, help="parallel compile processes")
    p.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    p.set_defaults(func=run_compile)


def run_compile(args: argparse.Namespace) -> int:
    from kernels.bench.report import run_compile as run

    try:
        return run(args.target, args.quick, args.jobs, args.json)
    except (ValueError, RuntimeError) as err:  # a bad target, or the interpreter switched on
        raise CgptError(str(err)) from None


# --- tokenizer and prepare -----------------------------------------------------------------------------------


def _tokenizer(sub: argparse._SubParsersAction) -> None:
    from train.data.pool import default_workers

    p = sub.add_parser("tokenizer", help="BPE trainer speed (MB/s) and bytes per token")
    p.add_argument(
        "--input",
        nargs="+",
        default=["stdlib"],
        metavar="PATH",
        help="corpus: paths, globs, 'stdlib' or a dataset name (default: stdlib)",
    )
    p.add_argument("--size-mb", type=flags.positive_float, default=10.0, help="MB of text to train on")
    p.add_argument("--vocab", type=flags.positive_int, default=8192)
    p.add_argument("--pattern", default="cl100k", choices=("cl100k", "gpt2"))
    p.add_argument("--workers", type=flags.positive_int, default=default_workers())
    p.add_argument("--cache-dir", metavar="DIR", help="where named datasets are found")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_tokenizer)


def run_tokenizer(args: argparse.Namespace) -> int:
    from train.bench.tokenizer import bench_tokenizer, report

    result = bench_tokenizer(args.input, args.size_mb, args.vocab, args.pattern, args.workers, args.cache_dir)
    print(json.dumps(result) if args.json else report(result))
    return 0


def _prepare(sub: argparse._SubParsersAction) -> None:
    from train.data.pool import default_workers

    p = sub.add_parser("prepare", help="peak memory and MB/s of `cgpt prepare` on synthetic text")
    p.add_argument("--size-mb", type=flags.positive_int, default=200, help="corpus size (1000 for the 1 GB check)")
    p.add_argument("--tokenizer", default="train:8192")
    p.add_argument("--workers", type=flags.positive_int, default=default_workers())
    p.add_argument("--dir", metavar="DIR", help="work directory (default: a temporary one, removed)")
    p.add_argument("--seed", type=flags.integer, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from train.bench.prepare import report, run_bench_prepare

    result = run_bench_prepare(args.size_mb, args.tokenizer, args.workers, args.seed, args.dir)
    print(json.dumps(result) if args.json else report(result, args.tokenizer, args.workers))
    return 0


# --- prompt --------------------------------------------------------------------------------------------------


def _prompt(sub: argparse._SubParsersAction) -> None:
    from train.cli.prompt import add_prompt_flags

    p = sub.add_parser("prompt", help="prompt scoring examples/s: batched + prefix cache vs the plain reference")
    add_prompt_flags(p)
    p.add_argument("--rounds", type=flags.positive_int, default=2, help="timed rounds of each path (default 2)")
    p.add_argument("--threads", type=flags.nonneg_int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_prompt, limit=200)


def run_prompt(args: argparse.Namespace) -> int:
    import torch

    from train.bench.prompt import bench_prompt, report
    from train.cli.prompt import prompt_config

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_prompt(prompt_config(args), args.rounds)
    print(json.dumps(result) if args.json else report(result))
    return 0


# --- speedrun ------------------------------------------------------------------------------------------------


def _speedrun(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speedrun", help="time to a validation loss: the planned run vs nanoGPT's GPT-2-style run")
    p.add_argument("--target", type=flags.positive_float, default=1.88, help="validation loss to reach (1.88)")
    p.add_argument("--data", help="a `cgpt prepare` directory (default: tinyshakespeare, character level, "
                   "prepared into OUT/data from --cache-dir or a download)")  # fmt: skip
    p.add_argument("--cache-dir", help="where the tinyshakespeare file is found (see cgpt prepare --cache-dir)")
    p.add_argument("--out", default="speedrun", help="where the runs and speedrun.json go (speedrun)")
    p.add_argument("--minutes", type=flags.amount, default=0.5, help="the planned run's budget (0.5)")
    p.add_argument("--block-size", type=flags.positive_int, default=None, help="the plan's context (128)")
    p.add_argument("--evals", type=flags.positive_int, default=20, help="whole-split evaluations per timed run (20)")
    flags.add_arch_flag(p)
    flags.add_device_flag(p)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto")
    flags.add_probe_flags(p)
    p.add_argument("--json", action="store_true", help="print speedrun.json instead of the table")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_speedrun)


def run_speedrun(args: argparse.Namespace) -> int:
    from train.bench.speedrun import format_report, speedrun
    from train.cli.plan import probe_options
    from train.planner import shapes

    data = args.data
    if data is None:
        from train.data.prepare import prepare

        data = str(Path(args.out) / "data")
        if not (Path(data) / "meta.json").exists():
            prepare(["tinyshakespeare"], "char", data, cache_dir=args.cache_dir, force=True)
    result = speedrun(data, args.out, args.target, args.minutes, args.device, probe_options(args), args.evals,
                      args.block_size or shapes.MINUTES_BLOCK_SIZE, {"arch": args.arch},
                      progress=not args.no_progress)  # fmt: skip
    print(json.dumps(result, indent=1) if args.json else format_report(result))
    return 0

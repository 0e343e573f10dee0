"""`cgpt sweep`: measure the Chinchilla scaling law on your own data - Hoffmann et al. 2022's IsoFLOP experiment
(Approach 2; train/planner/sweep.py), every run through the same `pretrain()` as `cgpt pretrain`, then `cgpt fit`.

    cgpt sweep --data data/books --budgets 1e12,3e12,1e13 --out sweep           # 3 budgets x 5 sizes
    cgpt sweep --data data/books --budgets 1e12,3e12,1e13 --out sweep --resume  # after an interruption
    cgpt sweep ... --devices cuda:0,cuda:1        # independent runs spread over devices (or: torchrun ... sweep)
    cgpt plan --flops 3e13 --vocab-size 512 --constants sweep/summary.json        # plan from the fitted law

A budget C is training FLOPs as the model really does them (model.flops.flops_per_token x tokens: the output head
and attention counted). SWEEP/runs.jsonl gets one line per finished run; SWEEP/summary.json and the plots, the fit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from model.config import DEFAULT_ARCH
from train.cli import flags

DEFAULTS = {"sizes": 5, "span": 4.0, "block_size": 256, "seed": 1337, "val_tokens": 2**20}


def budgets(text: str) -> tuple[float, ...]:
    """'1e13,3e13,1e14' -> (1e13, 3e13, 1e14)."""
    return tuple(flags.amount(part) for part in text.split(",") if part.strip())


def devices(text: str) -> list[str]:
    """'cuda:0,cuda:1' or 'cpu,cpu' -> that list; '4' -> cuda:0 .. cuda:3."""
    if text.strip().isdigit():
        return [f"cuda:{i}" for i in range(flags.positive_int(text))]
    return [flags.device(part.strip()) for part in text.split(",") if part.strip()]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="an IsoFLOP sweep on your data, then the scaling-law fit (Chinchilla's Approach 2 and 3)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="a directory written by `cgpt prepare`")
    p.add_argument("--budgets", required=True, type=budgets, metavar="C,C,...", help="FLOP budgets, e.g. 1e13,3e13")
    p.add_argument("--sizes", type=flags.positive_int, default=DEFAULTS["sizes"], help="model sizes per budget (5)")
    p.add_argument(
        "--span",
        type=flags.positive_float,
        default=DEFAULTS["span"],
        help="sizes from N_opt / span to N_opt x span (4)",
    )
    flags.add_law_flags(p, allocation=False)
    p.add_argument("--out", required=True, metavar="SWEEP", help="the sweep directory to create (or --resume)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out: finished runs are skipped")
    p.add_argument("--block-size", type=flags.count, default=DEFAULTS["block_size"], help="context length (256)")
    p.add_argument("--seed", type=flags.integer, default=DEFAULTS["seed"], help="every run's seed (1337)")
    p.add_argument(
        "--val-tokens", type=flags.count, default=DEFAULTS["val_tokens"], help="validation set size in tokens (1Mi)"
    )
    flags.add_device_flag(p)
    p.add_argument(
        "--devices", type=devices, metavar="LIST|N", help="one worker per device: cuda:0,cuda:1 | 4 | cpu,cpu"
    )
    p.add_argument("--bootstrap", type=flags.nonneg_int, default=1000, help="the fit's resamples (1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    flags.add_arch_flag(p)
    p.set_defaults(func=run)


def _saved_arch(args: argparse.Namespace) -> str | None:
    """Resuming without --arch: the sweep's own block (GPT-2's for sweeps made before the flag)."""
    file = Path(args.out) / "sweep.json"
    if not (args.resume and file.is_file()):
        return None
    try:
        return str(json.loads(file.read_text())["settings"].get("arch", "gpt2"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # Sweep.start reports a damaged sweep.json


def run(args: argparse.Namespace) -> int:
    from train.planner.sweep import SweepConfig
    from train.planner.sweep_run import run_sweep

    config = SweepConfig(
        data=args.data,
        budgets=args.budgets,
        sizes=args.sizes,
        span=args.span,
        constants=args.constants,
        block_size=args.block_size,
        seed=args.seed,
        val_tokens=args.val_tokens,
        arch=args.arch or _saved_arch(args) or DEFAULT_ARCH,
    )
    run_sweep(config, args.out, args.resume, args.device, args.devices, args.bootstrap, not args.no_progress)
    return 0

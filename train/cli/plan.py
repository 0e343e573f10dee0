"""`cgpt plan`: a training budget in, a compute-optimal plan out (Hoffmann et al. 2022; train/planner/plan.py).

    cgpt plan --flops 1e18                    # C: split by Approach 3 with Besiroglu et al.'s constants
    cgpt plan --params 124M --json            # N: the tokens a model of this size is compute-optimal for
    cgpt plan --tokens 2.5B --allocation rule20
    cgpt plan --minutes 5 --vocab-size 256 --out plan.json   # wall clock: probes this machine's FLOP/s first
    cgpt plan --flops 1e15 --vocab-size 512 --constants sweep/summary.json   # the law fitted on your runs

Amounts take a suffix: k, M, B (or G), T. `--out` saves the plan for `cgpt pretrain --plan plan.json`.
predicted_loss is in nats per token of the data the law was fitted on: with the paper's or the replication's
constants that is MassiveText, not a forecast for your data; `law` and `predicted_loss_basis` say which.
Without --minutes this command never imports torch: planning is arithmetic.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from model.config import GPTConfig
from train.cli import flags
from train.errors import CgptError
from train.planner import scaling
from train.planner.plan import Plan, make_plan
from train.planner.table import format_table
from train.planner.timeplan import ProbeOptions, plan_minutes

BUDGET_FLAGS = ("flops", "params", "tokens", "minutes")
# the keys `--json` promises (it prints every Plan field; these are the ones other tools may rely on)
CONTRACT_KEYS = frozenset(
    {"params", "tokens", "flops", "n_layer", "n_embd", "n_head", "steps", "batch_tokens", "predicted_loss"}
)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="plan a compute-optimal training run (Chinchilla)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = p.add_argument_group("budget (give exactly one)")
    budget.add_argument("--flops", metavar="C", type=flags.amount, help="training FLOPs (C = 6ND), e.g. 1e18")
    budget.add_argument("--params", metavar="N", type=flags.amount, help="model size, embeddings included, e.g. 124M")
    budget.add_argument("--tokens", metavar="D", type=flags.amount, help="training tokens, e.g. 2.5B")
    budget.add_argument(
        "--minutes", metavar="M", type=flags.amount, help="wall-clock minutes on --device (measured by a probe)"
    )
    flags.add_law_flags(p)
    p.add_argument(
        "--vocab-size", type=flags.count, default=GPTConfig().vocab_size, help="tokenizer vocabulary (%(default)s)"
    )
    p.add_argument(
        "--block-size", type=flags.count, default=GPTConfig().block_size, help="context length (%(default)s)"
    )
    flags.add_arch_flag(p)
    flags.add_device_flag(p)
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], default="auto",
                   help="for --minutes: the autocast dtype (auto: the faster one the probe measures)")  # fmt: skip
    flags.add_probe_flags(p)
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument("--out", metavar="PATH", help="save the plan as JSON (for cgpt pretrain --plan)")
    p.set_defaults(func=run)


def plan_from_args(args: argparse.Namespace) -> Plan:
    given = [f for f in BUDGET_FLAGS if getattr(args, f) is not None]
    if len(given) != 1:
        got = " and ".join(f"--{f}" for f in given) or "none"
        raise CgptError(f"give exactly one budget of --flops, --params, --tokens, --minutes (got {got})")
    kind, value = given[0], getattr(args, given[0])
    options = dict(constants=args.constants, allocation=args.allocation, arch=args.arch)
    if kind != "minutes":
        return make_plan(kind, value, args.vocab_size, args.block_size, **options)
    from train.runtime.hardware import resolve_device  # torch only when a probe is asked for

    # planned for a later `cgpt pretrain --plan`: its startup is estimated, not this command's
    return plan_minutes(value, args.vocab_size, args.block_size, resolve_device(args.device), None,
                        probe_options(args), **options)  # fmt: skip


def probe_options(args: argparse.Namespace) -> ProbeOptions:
    """The probe flags (flags.add_probe_flags) as ProbeOptions."""
    return ProbeOptions(args.probe_seconds, args.profile, args.reprobe, not args.no_profile,
                        getattr(args, "dtype", None) or "auto")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    if args.out:
        try:
            plan.to_json(args.out)
        except OSError as err:
            raise CgptError(f"--out={args.out!r}: cannot write the plan ({err})") from None
    law = scaling.load_law(plan.constants)  # the table's extrapolation note needs the fit's range
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_table(plan, law))
    if args.out and not args.json:
        print(f"saved the plan to {args.out}")
    return 0

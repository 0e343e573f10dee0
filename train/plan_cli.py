"""`cgpt plan`: a training budget in, a compute-optimal plan out (Hoffmann et al. 2022; train/plan.py).

    cgpt plan --flops 1e18                    # C: split by Approach 3 with Besiroglu et al.'s constants
    cgpt plan --params 124M --json            # N: the tokens a model of this size is compute-optimal for
    cgpt plan --tokens 2.5B --allocation rule20
    cgpt plan --minutes 5 --vocab-size 256 --out plan.json   # wall clock: probes this machine's FLOP/s first

Amounts take a suffix: k, M, B (or G), T. `--out` saves the plan for `cgpt pretrain --plan plan.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from model.config import GPTConfig
from model.flops import param_counts
from train import scaling
from train.errors import CgptError
from train.plan import Plan, make_plan, plan_for_minutes

BUDGET_FLAGS = ("flops", "params", "tokens", "minutes")
# the keys `--json` promises (it prints every Plan field; these are the ones other tools may rely on)
CONTRACT_KEYS = frozenset(
    {"params", "tokens", "flops", "n_layer", "n_embd", "n_head", "steps", "batch_tokens", "predicted_loss"}
)
SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
CHINCHILLA = dict(
    params=70e9, tokens=1.4e12, flops=5.76e23
)  # Hoffmann et al. 2022, Table 4 / Gopher's budget
FIT_PARAMS, FIT_TOKENS = (70e6, 16e9), (5e9, 500e9)  # the range of the paper's 400+ runs (Section 1)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan",
        help="plan a compute-optimal training run (Chinchilla)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = p.add_argument_group("budget (give exactly one)")
    budget.add_argument("--flops", metavar="C", help="training FLOPs (C = 6ND), e.g. 1e18")
    budget.add_argument("--params", metavar="N", help="model size, embeddings included, e.g. 124M")
    budget.add_argument("--tokens", metavar="D", help="training tokens, e.g. 2.5B")
    budget.add_argument("--minutes", metavar="M", help="wall-clock minutes on --device (measured by a probe)")
    p.add_argument(
        "--constants",
        default=scaling.DEFAULT_CONSTANTS,
        help=f"Approach 3 fit: one of {list(scaling.CONSTANTS)} (default %(default)s)",
    )
    p.add_argument(
        "--allocation", default="approach3", help=f"one of {list(scaling.ALLOCATIONS)} (default %(default)s)"
    )
    p.add_argument(
        "--vocab-size", default=str(GPTConfig().vocab_size), help="tokenizer vocabulary (%(default)s)"
    )
    p.add_argument("--block-size", default=str(GPTConfig().block_size), help="context length (%(default)s)")
    p.add_argument("--device", default="auto", help="for --minutes: auto | cpu | cuda (default %(default)s)")
    p.add_argument("--probe-seconds", default="1", help="for --minutes: timed seconds per probed shape (1)")
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument("--out", metavar="PATH", help="save the plan as JSON (for cgpt pretrain --plan)")
    p.set_defaults(func=run)


# --- flags -> plan ----------------------------------------------------------------------------------------


def parse_amount(flag: str, text: str) -> float:
    """'1e18', '124M', '2.5B' -> a positive finite float; anything else is a one-line error naming it."""
    t = text.strip().replace("_", "").replace(",", "")
    scale = SUFFIXES.get(t[-1:].lower(), 1.0) if t and t[-1].isalpha() else 1.0
    try:
        value = float(t[:-1] if scale != 1.0 else t) * scale
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise CgptError(f"--{flag}={text!r} is not allowed: expected a positive number such as 1e18 or 124M")
    return value


def parse_int(flag: str, text: str) -> int:
    value = parse_amount(flag, text)
    if value != int(value):
        raise CgptError(f"--{flag}={text!r} is not allowed: expected a positive integer")
    return int(value)


def _choice(flag: str, value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise CgptError(f"--{flag}={value!r} is not known: expected one of {allowed}")
    return value


def plan_from_args(args: argparse.Namespace) -> Plan:
    given = [f for f in BUDGET_FLAGS if getattr(args, f) is not None]
    if len(given) != 1:
        got = " and ".join(f"--{f}" for f in given) or "none"
        raise CgptError(f"give exactly one budget of --flops, --params, --tokens, --minutes (got {got})")
    kind = given[0]
    value = parse_amount(kind, getattr(args, kind))
    options = dict(
        constants=_choice("constants", args.constants, list(scaling.CONSTANTS)),
        allocation=_choice("allocation", args.allocation, list(scaling.ALLOCATIONS)),
    )
    vocab_size, block_size = (
        parse_int("vocab-size", args.vocab_size),
        parse_int("block-size", args.block_size),
    )
    if kind != "minutes":
        return make_plan(kind, value, vocab_size, block_size, **options)
    from train.probe import make_probe, resolve_device  # torch only when a probe is asked for

    device, seconds = resolve_device(args.device), parse_amount("probe-seconds", args.probe_seconds)
    print(f"cgpt plan: probing training throughput on {device} ...", file=sys.stderr)
    measure = make_probe(device, seconds)
    return plan_for_minutes(value, measure, vocab_size, block_size, **options)


# --- plan -> table ----------------------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _si(x: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} days"


def _budget(plan: Plan) -> str:
    return f"{plan.budget_value:.3g}" if plan.budget in ("flops", "minutes") else _si(plan.budget_value)


def _shape(plan: Plan) -> str:
    layers = _count(plan.n_layer, "layer")
    heads = f"{plan.n_head} heads of {plan.n_embd // plan.n_head}"
    arch = f"{plan.mlp}, {plan.norm}, {plan.positions} positions"
    return (
        f"{layers} x {plan.n_embd} wide, {heads}; vocab {plan.vocab_size}, context {plan.block_size}; {arch}"
    )


def _notes(plan: Plan) -> list[str]:
    notes = []
    embeddings = plan.params - param_counts(plan.model_config()).non_embedding
    if plan.params > 1.2 * plan.target_params:
        notes.append(
            f"the budget wants N = {_si(plan.target_params)}, but the smallest model with a "
            f"{plan.vocab_size}-token vocabulary has {_si(plan.params)}: try a smaller --vocab-size"
        )
    if embeddings > plan.params / 2:
        notes.append(
            f"embeddings are {embeddings / plan.params:.0%} of N: a small model wants a small vocabulary"
        )
    if not (FIT_PARAMS[0] <= plan.params <= FIT_PARAMS[1] and FIT_TOKENS[0] <= plan.tokens <= FIT_TOKENS[1]):
        notes.append("the predicted loss extrapolates the fit (made on 70M-16B parameters, 5B-500B tokens)")
    return notes


def format_table(plan: Plan) -> str:
    source = (
        "rule of thumb D = 20 N" if plan.allocation == "rule20" else f"Approach 3, {plan.constants} constants"
    )
    est = (
        "n/a (cgpt plan --minutes measures this machine)"
        if plan.est_seconds is None
        else f"{_duration(plan.est_seconds)} at {plan.flops_per_s:.3g} FLOP/s measured"
    )
    rows = [
        ("budget", f"--{plan.budget} {_budget(plan)}  ({source}; Hoffmann et al. 2022)"),
        ("params N", f"{plan.params:,}  ({_si(plan.params)}; target {_si(plan.target_params)})"),
        ("tokens D", f"{plan.tokens:,}  ({_si(plan.tokens)})"),
        ("D / N", f"{plan.tokens / plan.params:.3g} tokens per parameter (Chinchilla: 20)"),
        ("compute C", f"{plan.flops:.3g} FLOPs = 6ND  (Appendix F count: {plan.flops_appendix_f:.3g})"),
        ("shape", _shape(plan)),
        ("steps", f"{plan.steps:,}  (warmup {plan.warmup_steps:,}, then cosine decay over the rest)"),
        (
            "batch",
            f"{_count(plan.batch_size, 'sequence')} x {plan.grad_accum} accumulation x {plan.block_size}"
            f" tokens = {plan.batch_tokens:,} tokens",
        ),
        ("learning rate", f"{plan.lr:.2e} peak -> {plan.min_lr:.2e}"),
        (
            "predicted loss",
            f"{plan.predicted_loss:.3f} nats/token on the fit's data (MassiveText), not yours",
        ),
        ("est. time", est),
    ]
    lines = [f"{name:<15} {value}" for name, value in rows]
    c = CHINCHILLA
    lines.append(
        f"{'context':<15} Chinchilla: {_si(c['params'])} params on {_si(c['tokens'])} tokens, "
        f"{c['flops']:.3g} FLOPs; this plan is {plan.flops / c['flops']:.2g}x that compute"
    )
    lines += [f"{'note':<15} {note}" for note in _notes(plan)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    if args.out:
        try:
            plan.to_json(args.out)
        except OSError as err:
            raise CgptError(f"--out={args.out!r}: cannot write the plan ({err})") from None
    print(json.dumps(plan.to_dict(), indent=2) if args.json else format_table(plan))
    if args.out and not args.json:
        print(f"saved the plan to {args.out}")
    return 0

"""`cgpt pretrain`: flags -> (model config, training config, plan) -> `train.pretrain.pretrain`.

Where the model and schedule come from, lowest priority first:
  the `baby` preset (GPT-2 architecture, 4 x 128; the data's vocabulary)  <  --preset NAME  or  --plan FILE
  or a plan made here from --flops C / --minutes M  <  any explicit config flag (--n-layer, --lr, ...).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from model.config import ARCHS, PRESETS, GPTConfig, arch_of, preset
from train.cli import flags
from train.cli.flags import add_config_flags, config_overrides
from train.errors import CgptError
from train.planner import shapes
from train.planner.plan import Plan, make_plan
from train.recipe import TrainConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a GPT on prepared token shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="a directory written by `cgpt prepare`")
    p.add_argument("--out", required=True, help="the run directory to create (or --resume)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--plan", help="a plan.json written by `cgpt plan --out`")
    budget.add_argument("--minutes", type=flags.amount, help="plan for this many minutes of training here")
    budget.add_argument("--flops", type=flags.amount, help="plan for this many training FLOPs (6ND), e.g. 1e15")
    budget.add_argument("--preset", choices=list(PRESETS), help="a named model preset (debug, baby, small, gpt2, ...)")
    flags.add_law_flags(p)  # --constants, --allocation: for --minutes / --flops
    flags.add_arch_flag(p)
    flags.add_probe_flags(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a run that already exists in --out")
    p.add_argument("--allow-repeat", action="store_true", help="allow more tokens than the data holds (epochs)")
    p.add_argument("--parallel", choices=["ddp", "fsdp"], default="ddp", help="under torchrun (default ddp)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p, GPTConfig, exclude=("attention_mask",), title="model (override the plan or preset)")
    add_config_flags(p, TrainConfig, title="training (override the plan)")
    p.set_defaults(func=run)


def resolve(
    args: argparse.Namespace, vocab_size: int, val_tokens: int = 0
) -> tuple[GPTConfig, TrainConfig, Plan | None]:
    """The model config, training config and plan that these flags describe, for data of `vocab_size` tokens
    whose validation split holds `val_tokens` (the final evaluation a --minutes plan budgets for)."""
    from train.pretrain import train_config_from_plan
    from train.runtime.hardware import resolve_device

    model_over, train_over = config_overrides(args, GPTConfig), config_overrides(args, TrainConfig)
    plan = None
    default_block = shapes.MINUTES_BLOCK_SIZE if args.minutes else shapes.DEFAULT_BLOCK_SIZE
    block_size = model_over.get("block_size", default_block)
    law = dict(constants=args.constants, allocation=args.allocation, arch=args.arch)
    if args.plan:
        if args.arch:
            raise CgptError(f"--arch {args.arch}: the plan file {args.plan} fixes the block; plan with --arch")
        plan = Plan.from_json(args.plan)
        if plan.vocab_size != vocab_size:
            raise CgptError(
                f"plan file {args.plan}: vocab_size={plan.vocab_size}, but the data's tokenizer has "
                f"{vocab_size} tokens; plan with --vocab-size {vocab_size}"
            )
    elif args.flops:
        plan = make_plan("flops", args.flops, vocab_size, block_size, **law)
    elif args.minutes:
        from train.cli.plan import probe_options
        from train.planner.timeplan import plan_minutes

        device = resolve_device(train_over.get("device", "auto"))
        final = train_over.get("eval_tokens") or val_tokens
        plan = plan_minutes(args.minutes, vocab_size, block_size, device, getattr(args, "started", None),
                            probe_options(args), train_over.get("eval_batches", TrainConfig.eval_batches), final,
                            **law)  # fmt: skip
    if plan is not None:
        model = plan.model_config(**model_over)
        train = train_config_from_plan(plan, _world_size(), **train_over)
        return model, train, plan
    base = preset(args.preset) if args.preset else preset("baby")
    block = ARCHS[args.arch] if args.arch else {}  # `--preset baby --arch modern`: the preset's shape, that block
    model = base.replace(**{"vocab_size": vocab_size, **block, **model_over})
    return model, TrainConfig(**train_over), None


def check_resume_flags(args: argparse.Namespace, saved: dict[str, Any]) -> None:
    """Model and budget flags given with --resume must describe the saved run: equal values are accepted (the
    same command with --resume appended), a differing one is refused naming it, its saved and its new value.
    Training flags are checked by train.recipe.resumed_train_config."""
    for name, value in config_overrides(args, GPTConfig).items():
        if saved["model"].get(name) != value:
            raise flags.differs("--" + name.replace("_", "-"), saved["model"].get(name), value)
    if args.arch and any(saved["model"].get(k) != v for k, v in ARCHS[args.arch].items()):
        raise flags.differs("--arch", arch_of(GPTConfig.from_dict(saved["model"])), args.arch)
    plan = saved.get("plan") or {}
    if args.plan and Plan.from_json(args.plan).to_dict() != plan:
        raise CgptError(f"--plan={args.plan!r} is not the plan the run in {args.out} was made with")
    for budget in ("flops", "minutes"):
        value = getattr(args, budget)
        if value is not None and (plan.get("budget"), plan.get("budget_value")) != (budget, value):
            raise flags.differs(f"--{budget}", f"{plan.get('budget')} {plan.get('budget_value')}", value)
    for name in ("constants", "allocation") if args.flops or args.minutes else ():  # they split a budget
        if plan.get(name) != getattr(args, name):
            raise flags.differs(f"--{name}", plan.get(name), getattr(args, name))
    if args.preset:
        wanted = preset(args.preset).replace(
            vocab_size=saved["model"]["vocab_size"], **config_overrides(args, GPTConfig)
        )
        if wanted.to_dict() != saved["model"]:
            raise CgptError(f"--preset {args.preset} does not describe the run in {args.out}")


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run(args: argparse.Namespace) -> int:
    from train.data.loader import TokenDataset
    from train.pretrain import pretrain
    from train.runtime.rundir import RunDir

    options = dict(force=args.force, allow_repeat=args.allow_repeat, progress=not args.no_progress,
                   parallel=args.parallel)  # fmt: skip
    if args.resume:  # the same command with --resume appended: what was given again must match the run
        check_resume_flags(args, RunDir(args.out).saved_config("pretrain"))
        summary = pretrain(args.data, args.out, resume=True, train_changes=config_overrides(args, TrainConfig),
                           **options)  # fmt: skip
    else:
        if not args.force and RunDir(args.out).holds_run():
            raise CgptError(f"{args.out}: already holds a run; pass --resume to continue it or --force to overwrite it")
        data = TokenDataset.open(args.data)
        model, train, plan = resolve(args, data.tokenizer.vocab_size, len(data.val))
        summary = pretrain(args.data, args.out, model, train, plan, **options)
        if plan is not None and plan.budget == "minutes" and _rank() == 0:
            from train.cli.plan import probe_options
            from train.planner.timeplan import record_run
            from train.runtime.hardware import resolve_device

            record_run(plan, summary, resolve_device(train.device), probe_options(args))
    if _rank() == 0:
        print(_summary_line(summary))
    return 0


def _summary_line(s: dict[str, Any]) -> str:
    mfu = s["mfu"] if isinstance(s["mfu"], str) else f"{100 * s['mfu']:.1f}%"
    return (
        f"done: {s['steps']} steps, {s['tokens']:,} tokens in {s['wall_s']:.1f}s "
        f"({s['tokens_per_s']:,.0f} tokens/s, MFU {mfu}); train loss {s['train_loss']:.4f}, "
        f"val loss {s['val_loss']:.4f}"
    )

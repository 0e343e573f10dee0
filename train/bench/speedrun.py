"""`cgpt bench speedrun`: time to a validation loss - the planner's run against nanoGPT's GPT-2-style baby run.

Time to quality is the measure that counts for someone with a CPU and a few minutes (modded-nanogpt's speedrun
records count it on GPUs: time to 3.28 on FineWeb). Here, by default, the target is nanoGPT's own result on
tinyshakespeare at character level (its README's "baby GPT" CPU run: 4 x 128, context 64, batch 12, 2000
iterations, val loss ~1.88-1.89), on the whole validation split (non-overlapping windows), in one invocation:

1. `command`: what `cgpt pretrain --minutes M --allow-repeat` does - plan for M minutes of this machine (probe
   or machine profile, train/planner/timeplan.py), then train - timed from the start to the summary, with its
   final loss on the whole validation split. This is the number a user sees.
2. `planned` and `gpt2`: the planned run's configuration and nanoGPT's (GPT-2 block, learned positions,
   LayerNorm, GELU, no biases, lr 1e-3 with 100 warmup steps and a cosine to 1e-4 over 2000 steps, AdamW betas
   (0.9, 0.99), weight decay 0.1), each evaluated on the whole validation split `evals` times. Time to target
   is the training time (steps only; evaluation excluded, it is ours not the run's) at the first evaluation at
   or below the target, so its resolution is one evaluation interval.

The ratio gpt2 / planned is measured in one process on one machine, side by side; absolute seconds depend on
the machine and its load. Every run may repeat the data (tinyshakespeare holds 1M training characters; a
small model reads more than that in a minute).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from model.config import GPTConfig
from train.data.loader import TokenDataset
from train.errors import CgptError
from train.planner import shapes
from train.planner.plan import Plan
from train.planner.timeplan import ProbeOptions, plan_minutes, record_run
from train.pretrain import pretrain, train_config_from_plan
from train.recipe import TrainConfig
from train.runtime.hardware import resolve_device

NANOGPT_TARGET = 1.88  # nanoGPT's README: the CPU baby run reaches ~1.88-1.89 on tinyshakespeare's val split


def nanogpt_baby(vocab_size: int) -> tuple[GPTConfig, TrainConfig]:
    """nanoGPT's README CPU run (`train.py config/train_shakespeare_char.py --device=cpu --compile=False
    --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
    --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`) in this project's terms."""
    model = GPTConfig(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
    train = TrainConfig(
        max_steps=2000, batch_size=12, lr=1e-3, min_lr_ratio=0.1, warmup_steps=100, beta2=0.99, weight_decay=0.1
    )
    return model, train


def _time_to(metrics: Path, target: float) -> tuple[float | None, int | None, list[tuple[int, float, float]]]:
    """(training seconds, step) at the first evaluation at or below `target`, and every (step, train_s, loss)."""
    curve = []
    for line in metrics.read_text().splitlines():
        r = json.loads(line)
        if "val_loss" in r:
            curve.append((r["step"], r["train_s"], r["val_loss"]))
    hit = next(((s, t) for s, t, loss in curve if loss <= target), None)
    return (hit[1], hit[0], curve) if hit else (None, None, curve)


def timed_run(data: Path, out: Path, model: GPTConfig, train: TrainConfig, target: float, evals: int,
              progress: bool) -> dict[str, Any]:  # fmt: skip
    """Train with the whole validation split scored `evals` times; the time to `target`."""
    out, every = Path(out), max(1, train.max_steps // evals)
    train = dataclasses.replace(train, eval_every=every, eval_batches=0, checkpoint_every=train.max_steps)
    summary = pretrain(data, out, model, train, force=True, allow_repeat=True, progress=progress, log=lambda *_: None)
    seconds, step, curve = _time_to(out / "metrics.jsonl", target)
    return {
        "model": f"{model.n_layer} x {model.n_embd}, {model.mlp}/{model.norm}/{model.positions}, T {model.block_size}",
        "params": summary["params"],
        "steps": summary["steps"],
        "batch": f"{train.batch_size} x {train.grad_accum}",
        "lr": train.lr,
        "optimizer": train.optimizer,
        "dtype": summary["dtype"],
        "tokens_per_s": summary["tokens_per_s"],
        "train_s": summary["train_s"],
        "final_loss": summary["val_loss_full"],
        "time_to_target_s": seconds,
        "step_at_target": step,
        "curve": curve,
    }


def speedrun(
    data_dir: str | Path,
    out_dir: str | Path,
    target: float = NANOGPT_TARGET,
    minutes: float = 0.5,
    device: str = "auto",
    probe: ProbeOptions | None = None,
    evals: int = 20,
    block_size: int = shapes.MINUTES_BLOCK_SIZE,
    plan_options: dict[str, Any] | None = None,
    progress: bool = True,
    log: Any = print,
    baseline: tuple[GPTConfig, TrainConfig] | None = None,
) -> dict[str, Any]:
    """The three measurements of the module docstring; returns (and writes to OUT/speedrun.json) the report.
    `baseline` replaces nanoGPT's configuration (tests use a tiny one)."""
    out, data_dir = Path(out_dir), Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = TokenDataset.open(data_dir)
    dev = resolve_device(device)
    plan_options = plan_options or {}  # make_plan's: arch, constants, allocation

    log(f"1/3 `cgpt pretrain --minutes {minutes:g}` as a command ...")
    started = time.perf_counter()
    plan = plan_minutes(minutes, data.tokenizer.vocab_size, block_size, dev, started, probe,
                        TrainConfig.eval_batches, len(data.val), log=log, **plan_options)  # fmt: skip
    model, train = plan.model_config(), train_config_from_plan(plan, device=device)
    summary = pretrain(data_dir, out / "command", model, train, plan, force=True, allow_repeat=True,
                       progress=progress, log=lambda *_: None)  # fmt: skip
    record_run(plan, summary, dev, probe)  # as `cgpt pretrain --minutes` does: the profile learns sustained speed
    command = {"wall_s": time.perf_counter() - started, "minutes": minutes, "final_loss": summary["val_loss_full"],
               "plan": _describe(plan)}  # fmt: skip

    log("2/3 the planned configuration, evaluated on the whole validation split ...")
    planned = timed_run(data_dir, out / "planned", model, train, target, evals, progress)
    log("3/3 nanoGPT's baby configuration (GPT-2 block) ...")
    gpt2_model, gpt2_train = baseline or nanogpt_baby(data.tokenizer.vocab_size)
    gpt2 = timed_run(data_dir, out / "gpt2", gpt2_model, dataclasses.replace(gpt2_train, device=device), target,
                     evals, progress)  # fmt: skip
    a, b = planned["time_to_target_s"], gpt2["time_to_target_s"]
    # nanoGPT's configuration may never reach the target on the whole split: then compare at its own final loss
    matched, _, _ = _time_to(out / "planned" / "metrics.jsonl", gpt2["final_loss"])
    report = {
        "target": target,
        "data": str(data_dir),
        "val_tokens": len(data.val),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "command": command,
        "planned": planned,
        "gpt2": gpt2,
        "speedup": b / a if a and b else None,
        "at_gpt2_final": {  # the time the planned run takes to reach the loss nanoGPT's run ends at
            "loss": gpt2["final_loss"],
            "planned_s": matched,
            "gpt2_s": gpt2["train_s"],
            "speedup": gpt2["train_s"] / matched if matched else None,
        },
    }
    (out / "speedrun.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def _describe(plan: Plan) -> str:
    return (f"{plan.n_layer} x {plan.n_embd} ({plan.mlp}/{plan.norm}/{plan.positions}), {plan.params:,} params, "
            f"{plan.steps} steps of {plan.batch_size} x {plan.block_size}, lr {plan.lr:g}, {plan.dtype}")  # fmt: skip


def format_report(r: dict[str, Any]) -> str:
    def t(x: float | None) -> str:
        return f"{x:.1f} s" if x is not None else "not reached"

    c, p, g = r["command"], r["planned"], r["gpt2"]
    lines = [
        f"speedrun to val loss {r['target']} on the whole validation split ({r['val_tokens']:,} tokens), "
        f"{r['device']}, {r['threads']} threads",
        f"  cgpt pretrain --minutes {c['minutes']:g}: {c['wall_s']:.1f} s wall for the whole command, final loss "
        f"{c['final_loss']:.4f} ({'reached' if c['final_loss'] <= r['target'] else 'missed'} the target)",
        f"    plan: {c['plan']}",
        "  time to target (training steps only; evaluation excluded):",
    ]
    for name, x in (("planned", p), ("gpt2 (nanoGPT baby)", g)):
        lines.append(
            f"    {name:20s} {t(x['time_to_target_s']):>12s}   final {x['final_loss']:.4f} after {x['train_s']:.1f} s, "
            f"{x['tokens_per_s']:,.0f} tokens/s; {x['model']}, {x['params']:,} params, {x['steps']} steps, "
            f"batch {x['batch']}, lr {x['lr']:g}, {x['optimizer']}, {x['dtype']}"
        )
    if r["speedup"]:
        lines.append(f"  speedup (gpt2 time / planned time to {r['target']}): {r['speedup']:.2f}x")
    m = r.get("at_gpt2_final") or {}
    if m.get("speedup"):
        lines.append(
            f"  at nanoGPT's final loss {m['loss']:.4f} (after {m['gpt2_s']:.1f} s): planned reached it after "
            f"{m['planned_s']:.1f} s, {m['speedup']:.1f}x sooner"
        )
    return "\n".join(lines)


def check_target(target: float) -> None:
    if not target > 0:
        raise CgptError(f"--target={target!r}: expected a positive loss")

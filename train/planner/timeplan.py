"""`--minutes M` for a command: probe this machine (or reuse its profile), then plan so the command takes M minutes.

The one function `cgpt plan --minutes`, `cgpt pretrain --minutes`, the quickstart and `cgpt bench speedrun`
call: it opens the machine profile (train/planner/timing.py), builds the probe (train/planner/probe.py) and
solves plan.plan_for_minutes with the run's own costs - the time the command has already spent (`started`, a
time.perf_counter() value from when it began), its evaluations and its checkpoints.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.planner.plan import Plan, RunCosts, plan_for_minutes
from train.planner.timing import STARTUP_S, Profile, Speed, default_profile_path


@dataclass(frozen=True)
class ProbeOptions:
    seconds: float | None = None  # timed seconds per probed shape; None: 1% of the budget, 0.2 to 1 s
    profile: str | None = None  # the profile file; None: timing.default_profile_path()
    reprobe: bool = False  # measure again (and overwrite what the profile holds for these shapes)
    use_profile: bool = True  # False: neither read nor write a profile
    dtype: str = "auto"  # auto: the faster of the dtypes the hardware computes natively


def plan_minutes(
    minutes: float,
    vocab_size: int,
    block_size: int,
    device: Any,
    started: float | None = None,
    probe: ProbeOptions | None = None,
    eval_batches: int = 20,
    final_eval_tokens: int = 0,
    log: Any = None,
    **options: Any,
) -> Plan:
    """The plan for a command that should end `minutes` after `started`; without `started`, for a later command
    (`cgpt pretrain --plan`) whose start is estimated (timing.STARTUP_S). `options` go to make_plan (constants,
    allocation, arch)."""
    import torch

    from train.planner.probe import machine_id, make_probe

    # The first optimizer a process builds imports torch._dynamo (~2 s on a CPU, measured here): build one now,
    # so those seconds are spent before the plan divides the time rather than inside the run it planned.
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    probe = ProbeOptions() if probe is None else probe
    log = log or (lambda text: print(text, file=sys.stderr))
    profile = None
    if probe.use_profile:
        profile = Profile(Path(probe.profile) if probe.profile else default_profile_path(), machine_id(device))
        if probe.reprobe:
            profile.shapes = {}
        log(
            f"probing training speed on {device} (profile {profile.path}: {len(profile.shapes)} shapes known, "
            f"runs sustain {profile.calibration:.2f}x the probe's speed) ..."
        )
    else:
        log(f"probing training speed on {device} ...")
    seconds = probe.seconds or min(1.0, max(0.2, minutes * 60 / 100))  # a 30 s budget cannot probe for 20 s
    raw = make_probe(device, seconds, dtype=probe.dtype, profile=profile)
    measure = raw if profile is None else (lambda plan: profile.calibrated(Speed.of(raw(plan))))
    spent = STARTUP_S if started is None else 0.0
    costs = RunCosts(spent, eval_batches, final_eval_tokens, started)

    def report(weighed: list[Plan], chosen: Plan) -> None:
        log(format_weighed(weighed, chosen, lambda plan: Speed.of(measure(plan))))

    return plan_for_minutes(minutes, measure, vocab_size, block_size, costs=costs, report=report, **options)


def format_weighed(weighed: list[Plan], chosen: Plan, speed: Any) -> str:
    """The shapes a --minutes plan weighed: each at the tokens its measured speed fits in the time, the law's
    prediction for it, and the one chosen (marked >)."""
    from model.flops import flops_per_token

    lines = ["weighed (tokens each fills the time with at its measured speed; the law's predicted loss):"]
    lines.append(f"    {'shape':>9} {'params':>9} {'tokens':>9} {'tokens/s':>9} {'predicted':>9}")
    for plan in weighed:
        rate = speed(plan).flops_per_s / flops_per_token(plan.model_config())
        mark = ">" if plan is chosen else " "
        lines.append(
            f"  {mark} {f'{plan.n_layer} x {plan.n_embd}':>9} {plan.params / 1e3:>8.1f}k {plan.tokens / 1e6:>8.2f}M "
            f"{rate / 1e3:>8.1f}k {plan.predicted_loss:>9.3f}"
        )
    return "\n".join(lines)


def record_run(plan: Plan, summary: dict[str, Any], device: Any, probe: ProbeOptions | None = None) -> None:
    """After a --minutes run: teach the machine profile how fast this shape really trained (Profile.record_run)."""
    from model.flops import flops_per_token
    from train.planner.probe import machine_id, near_batch_key, shape_key

    probe = ProbeOptions() if probe is None else probe
    if plan.budget != "minutes" or not probe.use_profile or not summary.get("tokens_per_s"):
        return
    profile = Profile(Path(probe.profile) if probe.profile else default_profile_path(), machine_id(device))
    key = shape_key(plan, probe.dtype)
    key = key if key in profile.shapes else near_batch_key(key, plan.batch_size, profile.shapes) or key
    profile.record_run(key, summary["tokens_per_s"] * flops_per_token(plan.model_config()))

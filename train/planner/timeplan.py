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
    from train.planner.probe import machine_id, make_probe  # torch

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
    return plan_for_minutes(minutes, measure, vocab_size, block_size, costs=costs, **options)


def record_run(plan: Plan, summary: dict[str, Any], device: Any, probe: ProbeOptions | None = None) -> None:
    """After a --minutes run: teach the machine profile how fast planned runs really train (Profile.record_run)."""
    from model.flops import flops_per_token
    from train.planner.probe import machine_id

    probe = ProbeOptions() if probe is None else probe
    if plan.budget != "minutes" or not plan.flops_per_s or not probe.use_profile or not summary.get("tokens_per_s"):
        return
    profile = Profile(Path(probe.profile) if probe.profile else default_profile_path(), machine_id(device))
    profile.record_run(plan.flops_per_s / flops_per_token(plan.model_config()), summary["tokens_per_s"])

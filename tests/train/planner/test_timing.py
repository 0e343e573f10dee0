"""--minutes plans: the whole command's time (evaluation, checkpoints, startup), repeatable shapes under timing
noise, the machine profile, and the dtype the probe picks (train/planner/timing.py, probe.py, timeplan.py)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import pytest
import torch

from model.config import GPTConfig, arch
from model.flops import flops_per_token
from train.errors import CgptError
from train.planner import probe, scaling, shapes, timing
from train.planner.plan import LOSS_MARGIN, RunCosts, estimate_seconds, make_plan, plan_for_minutes
from train.planner.timeplan import ProbeOptions, plan_minutes
from train.pretrain import train_config_from_plan

SPEED = timing.Speed(flops_per_s=2e10, dtype="float32", eval_tokens_per_s=3e5, checkpoint_s=0.05)


def test_stable_budget_rounds_down_onto_a_grid() -> None:
    grid = [10 ** (k / timing.GRID_PER_DECADE) for k in range(240, 290)]
    for lo, hi in zip(grid, grid[1:], strict=False):
        for c in (lo, lo * 1.0001, math.sqrt(lo * hi), hi * 0.9999):
            assert timing.stable_budget(c) == pytest.approx(lo, rel=1e-9)
    assert timing.stable_budget(hi) == pytest.approx(hi, rel=1e-9)


def test_overhead_counts_evaluations_checkpoints_and_the_tail() -> None:
    steps, batch, block = 1000, 8, 128
    every = timing.eval_every(steps)
    assert every == 100 and timing.checkpoint_every(steps) == 500  # what train_config_from_plan uses
    scored = timing.eval_tokens(steps, batch, block, eval_batches=20, final_tokens=111_000)
    assert scored == 10 * 20 * batch * block + 111_000
    saves = 10 + 2 + 1  # best-so-far at each evaluation, every 500 steps, the last
    want = scored / SPEED.eval_tokens_per_s + saves * SPEED.checkpoint_s + timing.TAIL_S
    assert timing.overhead_seconds(SPEED, steps, batch, block, 20, 111_000) == pytest.approx(want)


def test_the_whole_command_fits_the_minutes() -> None:
    costs = RunCosts(spent_s=4.0, eval_batches=20, final_eval_tokens=300_000)
    plan = plan_for_minutes(0.5, lambda p: SPEED, 65, 128, costs=costs)
    total = plan.est_seconds + plan.overhead_s
    assert total == pytest.approx(30.0, abs=0.25)  # tokens come in whole steps (50 ms each here)
    assert plan.overhead_s == pytest.approx(costs.overhead(plan, SPEED)) and plan.overhead_s > 4.0 + 1.0
    # without the costs the same budget trains longer: the overhead came out of the training steps
    bare = plan_for_minutes(0.5, lambda p: SPEED.flops_per_s, 65, 128)
    work = [p.tokens * flops_per_token(p.model_config()) for p in (bare, plan)]  # FLOPs: the shapes may differ
    assert work[0] > 1.15 * work[1] and plan.est_seconds < 30 - 4.0 - 300_000 / SPEED.eval_tokens_per_s
    assert plan.dtype == "float32" and bare.dtype == "auto"  # a bare FLOP/s figure names no dtype


def test_time_already_spent_comes_off_the_budget() -> None:
    early = plan_for_minutes(0.5, lambda p: SPEED, 65, 128, costs=RunCosts(started=time.perf_counter()))
    late = plan_for_minutes(0.5, lambda p: SPEED, 65, 128, costs=RunCosts(started=time.perf_counter() - 10))
    assert early.est_seconds - late.est_seconds == pytest.approx(10.0, abs=0.5)
    with pytest.raises(CgptError, match="already took"):
        plan_for_minutes(0.1, lambda p: SPEED, 65, 128, costs=RunCosts(spent_s=7.0))


def _shape(plan):  # noqa: ANN001, ANN202
    return plan.n_layer, plan.n_embd, plan.batch_size


def test_noisy_probes_mostly_keep_the_shape() -> None:
    """Throughput measured with +-3% noise: the rounded budget keeps one shape in most plans, where solving C
    exactly gives as many budgets as there are measurements."""
    rng = random.Random(0)

    def command():  # noqa: ANN202
        measured = {}  # as make_probe does: each shape measured once per command, with that command's noise

        def noisy(plan):  # noqa: ANN001, ANN202
            key = (plan.n_layer, plan.n_embd, plan.batch_size)
            if key not in measured:
                measured[key] = timing.Speed(2e10 * (1 + rng.uniform(-0.03, 0.03)), "float32", 3e5, 0.05)
            return measured[key]

        return plan_for_minutes(2, noisy, 65, 128)

    plans = [command() for _ in range(40)]
    shapes = [_shape(p) for p in plans]
    most = max(set(shapes), key=shapes.count)
    assert shapes.count(most) >= 30 and len(set(shapes)) <= 2
    budgets = {timing.stable_budget(p.tokens * 6 * p.params) for p in plans}
    assert len(budgets) <= 3
    for p in plans:  # and each still fills its two minutes
        assert p.est_seconds + p.overhead_s == pytest.approx(120, rel=0.05)


def test_profile_round_trip_and_reuse(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "profile.json"
    prof = timing.Profile(path, "machine A")
    prof.put("4x128", SPEED)
    again = timing.Profile(path, "machine A")
    assert again.get("4x128") == SPEED and again.loaded == 1
    other = timing.Profile(path, "machine B")  # another machine's figures are not trusted
    assert other.get("4x128") is None and other.loaded == 0
    path.write_text("{not json")
    with pytest.raises(CgptError, match="profile.json"):
        timing.Profile(path, "machine A")
    path.write_text(json.dumps({"machine": "machine A", "shapes": []}))
    with pytest.raises(CgptError, match="expected"):
        timing.Profile(path, "machine A")


def test_make_probe_measures_each_shape_once_across_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(config, batch, device, seconds, seed, warmup, dtypes, windows, extras=True):  # noqa: ANN001, ANN202
        calls.append((config.n_layer, config.n_embd, dtypes))
        return timing.Speed(1e10 * (1 + 0.1 * len(calls)), "float32", 1e5, 0.01, {"float32": 1e10})

    monkeypatch.setattr(probe, "_measure", fake)
    profile = timing.Profile(tmp_path / "p.json", "here")
    first = plan_for_minutes(1, probe.make_probe(torch.device("cpu"), profile=profile), 65, 64)
    n = len(calls)
    assert n >= 1 and all(d == probe.candidate_dtypes(torch.device("cpu")) for *_, d in calls)
    # a second command on the same machine: nothing is measured, the plan is the same
    again = timing.Profile(tmp_path / "p.json", "here")
    second = plan_for_minutes(1, probe.make_probe(torch.device("cpu"), profile=again), 65, 64)
    assert len(calls) == n and second == first


def test_probe_picks_the_faster_dtype_it_measured() -> None:
    config = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=32)
    speed = probe._measure(config, 2, torch.device("cpu"), 0.2, 0, 1, ("float32", "bfloat16"), 2)
    assert set(speed.by_dtype) == {"float32", "bfloat16"}
    assert speed.dtype == max(speed.by_dtype, key=speed.by_dtype.__getitem__)
    assert speed.flops_per_s == speed.by_dtype[speed.dtype]
    assert speed.eval_tokens_per_s > 0 and speed.checkpoint_s > 0


def test_the_plans_dtype_reaches_the_run() -> None:
    plan = plan_for_minutes(0.5, lambda p: timing.Speed(2e10, "bfloat16", 3e5, 0.01, {"bfloat16": 2e10}), 65, 128)
    assert plan.dtype == "bfloat16" and train_config_from_plan(plan).dtype == "bfloat16"
    assert train_config_from_plan(plan, dtype="float32").dtype == "float32"  # an explicit --dtype wins
    with pytest.raises(CgptError, match="dtype"):
        type(plan)(**{**plan.to_dict(), "dtype": "float16"})


def test_plan_minutes_with_the_real_probe_writes_and_reuses_the_profile(tmp_path: Path) -> None:
    options = ProbeOptions(seconds=0.05, profile=str(tmp_path / "p.json"))
    cpu = torch.device("cpu")
    logged: list[str] = []
    first = plan_minutes(0.25, 65, 32, cpu, None, options, log=logged.append)
    chosen = [line for text in logged for line in text.splitlines() if line.startswith("  >")]
    assert len(chosen) == 1 and f"{first.n_layer} x {first.n_embd}" in chosen[0]  # the shapes weighed, shown
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["shapes"] and probe.machine_id(cpu) == saved["machine"]
    second = plan_minutes(0.25, 65, 32, cpu, None, options, log=lambda s: None)
    assert second == first  # same machine profile, same plan: nothing was measured again
    step_s = first.est_seconds / first.steps  # the plan fills the time up to whole steps
    assert first.est_seconds + first.overhead_s == pytest.approx(15.0, abs=max(0.75, 2 * step_s))
    assert estimate_seconds(first, first.flops_per_s) == pytest.approx(first.est_seconds)


def test_make_plan_takes_a_block_by_name() -> None:
    modern = make_plan("flops", 1e14, 256, 128, arch="modern")
    gpt2 = make_plan("flops", 1e14, 256, 128, arch="gpt2")
    assert (modern.mlp, modern.norm, modern.positions, modern.bias) == ("swiglu", "rmsnorm", "rope", False)
    assert (gpt2.mlp, gpt2.norm, gpt2.positions, gpt2.bias) == ("gelu", "layernorm", "learned", True)
    with pytest.raises(ValueError, match="arch"):
        make_plan("flops", 1e14, 256, 128, arch="llama")


def test_wall_clock_plans_buy_a_larger_model_only_where_small_ones_waste_the_machine() -> None:
    """At a constant FLOP/s the law's FLOP-optimal size is also the best per second; where small models run far
    below the machine's FLOP/s (per-step overheads: a CPU at these sizes) a larger one reaches a lower loss."""
    flat = plan_for_minutes(2, lambda p: SPEED, 65, 128)
    assert flat == plan_for_minutes(2, lambda p: SPEED, 65, 128, size_factors=(1.0,))

    def overhead_bound(plan):  # noqa: ANN001, ANN202
        step_flops = flops_per_token(plan.model_config()) * plan.batch_size * plan.block_size
        return timing.Speed(step_flops / (8e-3 + step_flops / 7e10), "float32", 3e5, 0.05)  # 8 ms a step + work

    bought = plan_for_minutes(2, overhead_bound, 65, 128)
    optimal = plan_for_minutes(2, overhead_bound, 65, 128, size_factors=(1.0,))  # the FLOP-optimal size
    assert bought.params >= 2 * optimal.params
    # the law predicts the larger model lower by more than the margin, in the same two minutes
    law = scaling.load_law(bought.constants).constants
    assert bought.predicted_loss - law.E < (1 - LOSS_MARGIN) * (optimal.predicted_loss - law.E)
    assert bought.est_seconds + bought.overhead_s == pytest.approx(120, rel=0.02)


def test_the_profile_learns_how_fast_planned_runs_really_train(tmp_path: Path) -> None:
    prof = timing.Profile(tmp_path / "p.json", "here")
    prof.put("ran", SPEED)
    prof.put("probed", SPEED)
    assert prof.calibrated(SPEED) == SPEED  # nothing learned yet
    fps = SPEED.flops_per_s
    prof.record_run("ran", 0.75 * fps)  # a run of this shape sustained 3/4 of its probe
    assert prof.calibration == pytest.approx(math.sqrt(0.75))  # halfway (in log) per run
    ran, probed = prof.calibrated(prof.get("ran")), prof.calibrated(prof.get("probed"))
    assert ran.flops_per_s == pytest.approx(0.75 * fps)  # the shape that ran: its own run's figure
    assert probed.flops_per_s == pytest.approx(math.sqrt(0.75) * fps)  # the others: probe x calibration
    assert ran.eval_tokens_per_s == probed.eval_tokens_per_s == pytest.approx(math.sqrt(0.75) * 3e5)
    for _ in range(12):
        prof.record_run("ran", 0.75 * fps)
    assert prof.calibration == pytest.approx(0.75, rel=1e-3)
    prof.record_run("ran", 0.5 * fps)  # one slow run (a busy machine) moves the shape's figure halfway
    assert prof.get("ran").run_flops_per_s == pytest.approx(math.sqrt(0.75 * 0.5) * fps)
    again = timing.Profile(tmp_path / "p.json", "here")  # it is saved with the shapes
    assert again.calibration == pytest.approx(prof.calibration)
    assert again.get("ran") == prof.get("ran") and again.get("probed") == SPEED
    slow = again.calibrated(SPEED)
    assert slow.flops_per_s == pytest.approx(prof.calibration * fps, rel=1e-9)
    # a calibrated plan does that fraction of the work in the same minutes
    fast = plan_for_minutes(1, lambda p: SPEED, 65, 128, size_factors=(1.0,))
    real = plan_for_minutes(1, lambda p: again.calibrated(SPEED), 65, 128, size_factors=(1.0,))
    work = [p.tokens * flops_per_token(p.model_config()) for p in (fast, real)]
    assert work[1] / work[0] == pytest.approx(prof.calibration, rel=0.05)
    before = (prof.calibration, prof.get("ran"))
    prof.record_run("ran", float("nan"))  # a run without a speed teaches nothing
    prof.record_run("never probed", fps)  # nor one of a shape the profile does not hold
    assert (prof.calibration, prof.get("ran")) == before and prof.get("never probed") is None


def test_a_wall_clock_plan_takes_the_law_best_unless_a_tie_trains_more() -> None:
    from dataclasses import replace

    from train.planner.plan import WORK_GAIN, choose_for_time

    law = scaling.load_law(scaling.DEFAULT_CONSTANTS)
    E = law.constants.E
    base = make_plan("flops", 1e12, 67, 128, arch="modern")

    def cand(reducible: float, work: float) -> object:  # a plan with this predicted L - E and these FLOPs
        steps = round(work * 1e12 / flops_per_token(base.model_config()) / base.batch_tokens)
        return replace(base, predicted_loss=E + reducible, steps=steps, tokens=steps * base.batch_tokens)

    best = cand(20.0, 1.0)
    tied_more = cand(20.0 * (1 + LOSS_MARGIN) - 1e-6, 1.2)  # within the margin, 20% more work
    tied_little = cand(20.1, 1.05)  # within, but under WORK_GAIN more work: noise, not a better buy
    worse_more = cand(20.0 * (1 + LOSS_MARGIN) + 0.05, 5.0)  # the law can tell it is worse: more work is no excuse
    assert WORK_GAIN > 1.05
    assert choose_for_time([best, tied_little, worse_more], law) is best
    assert choose_for_time([tied_more, best, tied_little, worse_more], law) is tied_more
    # the order candidates come in does not matter
    assert choose_for_time([worse_more, tied_little, best, tied_more], law) is tied_more


def test_wall_clock_plans_take_fewer_wider_layers_where_layers_cost_time() -> None:
    """Per-layer costs (a CPU at these sizes: each layer's operations, launches) make deep, narrow shapes slow;
    the law sees only N and D, so the plan trades depth for speed (shapes.depth_variants)."""

    def per_layer(plan):  # noqa: ANN001, ANN202
        step_flops = flops_per_token(plan.model_config()) * plan.batch_size * plan.block_size
        return timing.Speed(step_flops / (4e-3 * plan.n_layer + step_flops / 5e10), "float32", 3e5, 0.05)

    plan = plan_for_minutes(1, per_layer, 67, 128, arch="modern")
    usual = shapes.choose_shape(plan.params, 67, 128, arch("modern"))
    assert plan.n_layer < usual[0]  # shallower than the planner's usual shape for that size


def test_a_command_counts_its_time_from_the_process_start() -> None:
    import subprocess
    import sys

    code = "import time; time.sleep(0.6); from train.planner.timing import process_age; print(process_age())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    age = float(out.stdout)
    if Path("/proc/self/stat").exists():
        assert 0.6 <= age < 60  # the interpreter's start and the sleep: from the process's start, not main's
    else:
        assert age == 0.0  # unknown where there is no /proc: the command's clock starts at main


def test_a_shape_measured_at_a_near_batch_stands_in_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "2x64 h4/4 swiglu rmsnorm rope bias=0 tie=1 vocab=67 T=128 B={} dtype=auto"
    known = [key.format(6), key.format(16), key.format(6).replace("2x64", "2x80"), key.format(6).replace("auto", "x")]
    assert probe.near_batch_key(key.format(9), 9, known) == key.format(6)  # within 2x
    assert probe.near_batch_key(key.format(11), 11, known) == key.format(16)  # the nearer, in ratio
    assert probe.near_batch_key(key.format(3), 3, known) == key.format(6)
    assert probe.near_batch_key(key.format(2), 2, known) is None  # 3x off: measure it
    assert probe.near_batch_key(key.format(40), 40, known) is None

    from dataclasses import replace

    measured: list[int] = []
    monkeypatch.setattr(probe, "_measure", lambda config, batch, *a, **k: measured.append(batch) or SPEED)
    measure = probe.make_probe(torch.device("cpu"))
    plan = make_plan("flops", 1e12, 67, 128, arch="modern")

    def at(batch: int) -> object:
        return replace(plan, batch_size=batch, batch_tokens=batch * 128, tokens=plan.steps * batch * 128)

    assert measure(at(6)) is SPEED and measure(at(10)) is SPEED and measure(at(13)) is SPEED
    assert measure(at(2)) is SPEED
    assert measured == [6, 13, 2]  # 10 stood in for by 6; 13 measured (over 2x 6, and a stand-in never stands in)


def test_a_run_teaches_the_profile_entry_that_stood_in_for_its_batch(tmp_path: Path) -> None:
    from dataclasses import replace

    from train.planner.timeplan import record_run

    cpu = torch.device("cpu")
    options = ProbeOptions(profile=str(tmp_path / "p.json"))
    plan = replace(make_plan("flops", 1e12, 67, 128, arch="modern"), budget="minutes", budget_value=0.5)
    prof = timing.Profile(tmp_path / "p.json", probe.machine_id(cpu))
    prof.put(probe.shape_key(plan, "auto"), SPEED)  # timed at the plan's batch ...
    ran = replace(plan, batch_size=plan.batch_size + 2, batch_tokens=(plan.batch_size + 2) * 128,
                  tokens=plan.steps * (plan.batch_size + 2) * 128)  # fmt: skip
    tokens_per_s = 0.5 * SPEED.flops_per_s / flops_per_token(ran.model_config())
    record_run(ran, {"tokens_per_s": tokens_per_s}, cpu, options)  # ... a run at a batch it stood in for
    again = timing.Profile(tmp_path / "p.json", probe.machine_id(cpu))
    assert list(again.shapes) == [probe.shape_key(plan, "auto")]  # no new entry: the stand-in learnt
    assert again.shapes[probe.shape_key(plan, "auto")].run_flops_per_s == pytest.approx(0.5 * SPEED.flops_per_s)
    record_run(
        ran, {"tokens_per_s": tokens_per_s}, cpu, ProbeOptions(profile=str(tmp_path / "p.json"), use_profile=False)
    )
    assert timing.Profile(tmp_path / "p.json", probe.machine_id(cpu)).shapes == again.shapes  # --no-profile: nothing

"""The Plan: budget in, frozen plan out; invariants, the JSON file, the --minutes fixed point, the probe."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import pytest
import torch

from model.config import GPTConfig, preset
from model.flops import flops_per_token
from model.gpt import GPT
from train.errors import CgptError
from train.planner import scaling, shapes, timing
from train.planner.plan import Plan, estimate_seconds, make_plan, plan_for_minutes
from train.planner.probe import make_probe, measure_flops_per_s
from train.runtime.hardware import resolve_device

CONTRACT = {
    "params",
    "tokens",
    "flops",
    "n_layer",
    "n_embd",
    "n_head",
    "steps",
    "batch_tokens",
    "predicted_loss",
}


def check_invariants(plan: Plan) -> None:
    assert plan.batch_tokens == plan.batch_size * plan.grad_accum * plan.block_size
    assert plan.tokens == plan.steps * plan.batch_tokens
    assert plan.flops == pytest.approx(6 * plan.params * plan.tokens)
    assert plan.predicted_loss == pytest.approx(
        scaling.predicted_loss(plan.params, plan.tokens, scaling.CONSTANTS[plan.constants])
    )
    assert plan.min_lr == pytest.approx(plan.lr / 10, rel=0.01) and 1 <= plan.warmup_steps <= plan.steps


@pytest.mark.parametrize("constants", sorted(scaling.CONSTANTS))
@pytest.mark.parametrize("allocation", scaling.ALLOCATIONS)
def test_flops_budget(constants: str, allocation: str) -> None:
    plan = make_plan("flops", 1e18, 50257, 1024, constants=constants, allocation=allocation)
    check_invariants(plan)
    assert 1e18 <= plan.flops <= 1e18 + 6 * plan.params * plan.batch_tokens  # C, rounded up to whole steps
    assert abs(plan.params / plan.target_params - 1) < 0.1
    assert CONTRACT <= set(plan.to_dict())


def test_params_budget_takes_the_frontier_tokens_or_20_per_parameter() -> None:
    laws = scaling.CONSTANTS["besiroglu"]
    plan = make_plan("params", 124e6, 50257, 1024)
    assert (plan.n_layer, plan.n_embd, plan.n_head) == (12, 768, 12)
    d_opt = scaling.compute_optimal(scaling.frontier_flops_for_params(plan.params, laws), laws)[1]
    assert d_opt <= plan.tokens < d_opt + plan.batch_tokens
    rule = make_plan("params", 124e6, 50257, 1024, allocation="rule20")
    assert 20 * rule.params <= rule.tokens < 20 * rule.params + rule.batch_tokens


def test_tokens_budget_keeps_the_tokens() -> None:
    plan = make_plan("tokens", 2.5e9, 50257, 1024)
    check_invariants(plan)
    assert 2.5e9 <= plan.tokens < 2.5e9 + plan.batch_tokens


def test_the_three_budgets_agree_on_the_frontier() -> None:
    laws = scaling.CONSTANTS["besiroglu"]
    n, d = scaling.compute_optimal(1e19, laws)
    by_flops, by_params, by_tokens = (
        make_plan(k, v, 32000, 2048) for k, v in (("flops", 1e19), ("params", n), ("tokens", d))
    )
    assert by_flops.params == by_params.params == by_tokens.params


def test_params_is_what_the_model_holds() -> None:
    plan = make_plan("flops", 1e14, 256, 64)
    model = GPT(plan.model_config(), torch.Generator().manual_seed(0))
    assert sum(p.numel() for p in model.parameters()) == plan.params


def test_model_config_and_architecture() -> None:
    plan = make_plan("flops", 1e16, 8192, 512, arch=preset("small"))
    check_invariants(plan)
    config = plan.model_config(attention="sdpa", dropout=0.1)
    assert (config.mlp, config.norm, config.positions, config.bias) == ("swiglu", "rmsnorm", "rope", False)
    assert (config.attention, config.dropout, config.n_layer) == ("sdpa", 0.1, plan.n_layer)
    default = make_plan("flops", 1e16, 8192, 512).model_config()  # model.config.DEFAULT_ARCH: the modern block
    assert (default.mlp, default.norm, default.positions, default.bias) == ("swiglu", "rmsnorm", "rope", False)
    gpt2 = make_plan("flops", 1e16, 8192, 512, arch="gpt2").model_config()
    assert (gpt2.mlp, gpt2.norm, gpt2.positions, gpt2.bias, gpt2.tie_embeddings) == (
        "gelu",
        "layernorm",
        "learned",
        True,
        True,
    )


# --- the plan file ----------------------------------------------------------------------------------------


def test_json_round_trip(tmp_path: Path) -> None:
    plan = make_plan("flops", 1e17, 50257, 1024)
    path = tmp_path / "plan.json"
    plan.to_json(path)
    assert Plan.from_json(path) == plan and os.listdir(tmp_path) == ["plan.json"]  # no temporary left
    timed = dataclasses.replace(plan, budget="minutes", budget_value=5.0, flops_per_s=1e12, est_seconds=300.0)
    timed.to_json(path)
    assert Plan.from_json(path) == timed


def _write(tmp_path: Path, **changes: object) -> Path:
    d = make_plan("flops", 1e15, 256, 256).to_dict()
    d.update(changes)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(n_layer=0), "n_layer"),
        (dict(n_layer=7), "params"),  # no longer the shape's parameter count
        (dict(steps=3), "tokens"),
        (dict(batch_size=2.5), "batch_size"),
        (dict(mlp="relu"), "mlp"),
        (dict(constants="chinchilla"), "constants"),
        (dict(allocation="rule30"), "allocation"),
        (dict(lr=-1), "lr"),
        (dict(bias="yes"), "bias"),
        (dict(flops_per_s=0), "flops_per_s"),
        (dict(extra=1), "extra"),
    ],
)
def test_bad_plan_files_name_the_file_and_the_field(tmp_path: Path, changes: dict, field: str) -> None:
    path = _write(tmp_path, **changes)
    with pytest.raises(CgptError) as err:
        Plan.from_json(path)
    assert str(path) in str(err.value) and field in str(err.value) and "\n" not in str(err.value)


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(CgptError, match="missing.json"):
        Plan.from_json(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CgptError, match="broken.json"):
        Plan.from_json(tmp_path / "broken.json")
    d = make_plan("flops", 1e15, 256, 256).to_dict()
    del d["steps"]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(CgptError, match="missing field.*steps"):
        Plan.from_json(tmp_path / "short.json")


# --- --minutes: the fixed point, with fake and real throughput ----------------------------------------------


def test_minutes_with_a_constant_throughput() -> None:
    calls = []
    plan = plan_for_minutes(60, lambda p: calls.append(p) or 2e11, 256, 256)
    assert plan.budget == "minutes" and plan.budget_value == 60 and plan.flops_per_s == 2e11
    assert plan.est_seconds == pytest.approx(estimate_seconds(plan, 2e11))
    # the training steps fill the hour but for the fixed tail (no evaluation speed was measured)
    assert plan.overhead_s == pytest.approx(timing.TAIL_S)
    assert abs((plan.est_seconds + plan.overhead_s) / 3600 - 1) <= 1e-3 and len(calls) <= 30
    check_invariants(plan)


def test_minutes_when_throughput_grows_with_the_model() -> None:
    # a GPU-like throughput: small models are launch-bound, so FLOP/s grows almost as fast as the model
    def throughput(plan: Plan) -> float:
        per_micro_batch = flops_per_token(plan.model_config()) * plan.batch_size * plan.block_size
        return min(4e14, per_micro_batch / 2e-3)  # 2 ms a micro-batch, capped at 400 TFLOP/s

    calls = []
    plan = plan_for_minutes(30, lambda p: calls.append(p) or throughput(p), 50257, 1024)
    # calls, not probes: make_probe measures each shape once; the solve, the candidates and their fills ask often
    assert abs((plan.est_seconds + plan.overhead_s) / 1800 - 1) <= 0.03 and len(calls) <= 60
    assert plan.flops_per_s == throughput(plan)


def test_probe_measures_a_real_model() -> None:
    config = GPTConfig(vocab_size=256, block_size=32, n_layer=1, n_head=2, n_embd=32)
    assert measure_flops_per_s(config, 2, torch.device("cpu"), seconds=0.05) > 1e6
    with pytest.raises(CgptError, match="--device"):
        resolve_device("tpu")


def test_minutes_with_the_real_probe() -> None:
    measure = make_probe(torch.device("cpu"), seconds=0.05)
    plan = plan_for_minutes(0.5, measure, 256, 64)
    assert plan.flops_per_s > 0 and math.isfinite(plan.est_seconds)
    # The estimate uses the plan's own measured throughput; how close the search lands to 30 s depends on timing
    # noise between neighbouring shapes (seen: 26% off on a busy machine), so only a coarse bound is safe here.
    assert plan.est_seconds == pytest.approx(estimate_seconds(plan, plan.flops_per_s))
    assert 0.5 < (plan.est_seconds + plan.overhead_s) / 30 < 2 and plan.dtype in ("float32", "bfloat16")
    check_invariants(plan)


def test_shapes_module_defaults_are_used() -> None:
    plan = make_plan("flops", 1e18, 50257, 1024)
    assert plan.batch_size * plan.block_size <= shapes.MICRO_BATCH_TOKENS
    assert plan.lr == pytest.approx(shapes.learning_rate(plan.params), rel=1e-2)

"""An IsoFLOP sweep's design: Hoffmann et al. 2022's Approach 2 experiment (Section 3.2) on your own data.

For each budget C, `sizes` target sizes spread log-uniformly from N_opt(C) / span to N_opt(C) x span around the
current law's optimum (scaling.compute_optimal, reading C as 6ND; `constants` may be a previous fit's
summary.json), each turned into a shape by the planner (shapes.choose_shape; targets that land on the same shape
are trained once). Every model is trained with exactly its budget:

    D = C / FLOPs per token,  FLOPs per token = model.flops.flops_per_token = 6 N_matmul + 12 L d T

that is every weight in a matrix multiply - the output head included, which Kaplan et al. 2020 left out and which
Porian et al. 2024 (arXiv 2406.19146) show is one cause of their different exponents - plus attention's QK^T and
AV over the context T, which at these small widths is a large share of the work. The steps are D over the batch,
rounded up: a run spends C plus less than one step. Each run's recipe is the planner's (plan.plan_for_shape):
batch and peak learning rate by model size, warmup 3% of the steps (what the run can afford), then a cosine decay
to a tenth over exactly the run's own steps - Chinchilla's lesson: a schedule longer than the run underrates it.
All runs share the data, the tokenizer, the seed (initial weights and data order) and the validation set: the first
`val_tokens` tokens of the validation split, scored once at the end of each run (TrainConfig.eval_tokens), the same
windows whatever the run's batch size.

Running it (resume, several devices, the fit at the end) is train/planner/sweep_run.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from model.config import ARCHS, DEFAULT_ARCH, GPTConfig
from model.config import arch as model_arch
from model.flops import flops_per_token, param_counts
from train.errors import CgptError
from train.planner import scaling, shapes
from train.planner.plan import Plan, plan_for_shape


@dataclass(frozen=True)
class SweepConfig:
    data: str  # a directory written by `cgpt prepare`
    budgets: tuple[float, ...]  # C, training FLOPs (model.flops.flops_per_token x tokens)
    sizes: int = 5  # model sizes per budget
    span: float = 4.0  # from N_opt / span to N_opt x span
    constants: str = scaling.DEFAULT_CONSTANTS  # the law whose optimum the sizes surround (name or summary.json)
    block_size: int = 256
    seed: int = 1337  # every run's initial weights and data order
    val_tokens: int = 2**20  # the validation set: this many tokens from the start of the validation split
    arch: str = DEFAULT_ARCH  # the block every run uses (model.config.ARCHS); sweeps from before it: gpt2

    def __post_init__(self) -> None:
        if not self.budgets or any(not (isinstance(c, (int, float)) and 0 < c < math.inf) for c in self.budgets):
            raise CgptError(f"budgets={self.budgets!r}: expected one or more positive numbers")
        if len(set(self.budgets)) != len(self.budgets):
            raise CgptError(f"budgets={self.budgets!r}: each budget once")
        if not (isinstance(self.sizes, int) and self.sizes >= 3):
            raise CgptError(f"sizes={self.sizes!r}: expected an integer >= 3 (a parabola needs three points)")
        if not (isinstance(self.span, (int, float)) and 1 < self.span < math.inf):
            raise CgptError(f"span={self.span!r}: expected a number > 1")
        for name in ("block_size", "val_tokens"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise CgptError(f"{name}={getattr(self, name)!r}: expected a positive integer")
        if self.arch not in ARCHS:
            raise CgptError(f"arch={self.arch!r}: expected one of {sorted(ARCHS)}")
        if self.val_tokens < self.block_size:
            raise CgptError(
                f"val_tokens={self.val_tokens}: expected at least one window (block_size={self.block_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "budgets": list(self.budgets)}


@dataclass(frozen=True)
class SweepRun:
    name: str  # the run directory's name under SWEEP/runs/
    budget: float  # C
    plan: Plan  # shape and schedule (its `flops` field is the planner's 6ND, not C)
    flops_per_token: int  # model.flops.flops_per_token of the plan's model
    params_non_embedding: int

    @property
    def flops(self) -> float:
        """What the run spends: tokens x FLOPs per token (C, plus less than one step)."""
        return float(self.plan.tokens * self.flops_per_token)


def run_name(budget: float, params: int) -> str:
    return f"C{budget:.3g}-N{params}".replace("+", "")


def design(config: SweepConfig, vocab_size: int) -> list[SweepRun]:
    """The runs of the sweep, budget by budget, smallest model first. A budget whose targets give fewer than
    three distinct shapes (the smallest model a vocabulary allows, or widths in steps) is an error."""
    arch = model_arch(config.arch)
    law = scaling.load_law(config.constants)
    runs = []
    for budget in sorted(config.budgets):
        centre = scaling.compute_optimal(budget, law.constants)[0]
        shaped: dict[tuple[int, int], tuple[GPTConfig, float]] = {}
        for i in range(config.sizes):
            target = centre * config.span ** (2 * i / (config.sizes - 1) - 1)
            n_layer, n_embd, _ = shapes.choose_shape(target, vocab_size, config.block_size, arch)
            model = shapes.shape_config(n_layer, n_embd, vocab_size, config.block_size, arch)
            shaped.setdefault((n_layer, n_embd), (model, target))
        if len(shaped) < 3:
            raise CgptError(
                f"budget C = {budget:.3g}: its {config.sizes} sizes around N_opt = {scaling.si(centre)} make only "
                f"{len(shaped)} distinct model(s) with vocab {vocab_size}; use a larger budget, --span or --sizes"
            )
        for model, target in sorted(shaped.values(), key=lambda mt: param_counts(mt[0]).total):
            fpt = flops_per_token(model)
            plan = plan_for_shape(model, budget / fpt, "flops", budget, target, law)
            counts = param_counts(model)
            runs.append(SweepRun(run_name(budget, counts.total), budget, plan, fpt, counts.non_embedding))
    return runs


def describe(runs: list[SweepRun]) -> list[str]:
    """One line per run: what the sweep will train."""
    return [
        f"C = {r.budget:.3g}: N = {scaling.si(r.plan.params)} ({r.plan.n_layer} x {r.plan.n_embd}), "
        f"D = {scaling.si(r.plan.tokens)} in {r.plan.steps:,} steps of {r.plan.batch_tokens:,} tokens, "
        f"lr {r.plan.lr:.2g}, {r.flops_per_token:,} FLOPs/token"
        for r in runs
    ]

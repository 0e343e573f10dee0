"""The compute plan: a budget in, a frozen `Plan` out - the model's shape, its tokens and its schedule.

`make_plan` is pure: budget (FLOPs, parameters or tokens) -> target N (train/planner/scaling.py) -> the nearest
shape, with N counted exactly (train/planner/shapes.py) -> tokens D for that N -> batch, steps, learning rate. `Plan`
is saved as JSON for `cgpt pretrain --plan plan.json`, which builds the model with `Plan.model_config()`.

`plan_for_minutes` plans for wall-clock time instead: given a throughput function (achieved training FLOP/s
for a plan's model, measured by train/planner/probe.py or injected by a test) it solves for the budget C whose plan
takes the given time. C = 6ND throughout (Hoffmann et al. 2022); time is estimated with the FLOPs the model
really does per token (model.flops.flops_per_token), since that is what the probe measures.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model.config import DEFAULT_ARCH, ConfigError, GPTConfig
from model.config import arch as model_arch
from model.flops import flops_per_token, param_counts
from train.errors import CgptError
from train.planner import scaling, shapes, timing
from train.recipe import DTYPES
from train.runtime.files import atomic_write_text

BUDGETS = (*scaling.BUDGET_KINDS, "minutes")
_INT_FIELDS = tuple(
    "target_params params tokens n_layer n_embd n_head n_kv_head vocab_size block_size batch_size grad_accum "
    "batch_tokens steps warmup_steps".split()
)
# the GPTConfig fields a plan fixes; everything else (attention backend, dropout, ...) is the trainer's choice
MODEL_FIELDS = tuple(
    "vocab_size block_size n_layer n_head n_embd n_kv_head mlp norm positions bias tie_embeddings".split()
)
_FLOAT_FIELDS = ("budget_value", "flops", "flops_appendix_f", "predicted_loss", "lr", "min_lr")


def _fail(name: str, value: Any, allowed: str) -> CgptError:
    return CgptError(f"{name}={value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class Plan:
    # the budget and how it was split
    budget: str  # flops | params | tokens | minutes
    budget_value: float  # in the budget's unit (FLOPs, parameters, tokens, minutes)
    allocation: str  # approach3 | rule20 (train/planner/scaling.py)
    constants: str  # a key of scaling.CONSTANTS, or the path of a fit's summary.json (cgpt fit)
    law: str  # paper | replication | fitted: whose law predicted_loss comes from (scaling.Law)
    target_params: int  # N the allocation asked for
    params: int  # N of the chosen shape, embeddings included (model.flops.param_counts(...).total)
    tokens: int  # D = steps * batch_tokens
    flops: float  # 6 N D
    flops_appendix_f: float  # Hoffmann et al. App. F count (embeddings and logits included) x D
    predicted_loss: float  # L(N, D) with these constants, in nats per token of the data the law was fitted on
    predicted_loss_basis: str  # that, in a sentence: the paper's law (not a forecast for your data) or yours
    # the model (GPTConfig fields)
    n_layer: int
    n_embd: int
    n_head: int
    n_kv_head: int
    vocab_size: int
    block_size: int
    mlp: str
    norm: str
    positions: str
    bias: bool
    tie_embeddings: bool
    # the schedule: batch_tokens = batch_size * grad_accum * block_size tokens per optimizer step
    batch_size: int  # sequences per micro-batch
    grad_accum: int  # micro-batches per optimizer step
    batch_tokens: int
    steps: int
    lr: float  # peak AdamW learning rate
    min_lr: float  # end of the cosine decay: lr / 10 (Chinchilla)
    warmup_steps: int
    # measured by --minutes (train/planner/probe.py); None otherwise
    flops_per_s: float | None = None
    est_seconds: float | None = None  # the training steps
    overhead_s: float | None = None  # the rest of the command: startup and probe, evaluation, checkpoints, plot
    dtype: str = "auto"  # autocast dtype; a --minutes plan names the one its probe measured fastest

    def __post_init__(self) -> None:
        self._check_kinds()
        self._check_numbers()
        self._check_consistency()

    def _check_kinds(self) -> None:
        if self.budget not in BUDGETS:
            raise _fail("budget", self.budget, f"one of {list(BUDGETS)}")
        scaling.check_allocation(self.allocation)
        if self.law not in scaling.LAW_KINDS:
            raise _fail("law", self.law, f"one of {list(scaling.LAW_KINDS)}")
        if self.law != "fitted":  # a published set, by name; a fitted law's file is not reread
            scaling.get_constants(self.constants)
            if scaling.CONSTANT_KINDS[self.constants] != self.law:
                raise _fail("law", self.law, f"{scaling.CONSTANT_KINDS[self.constants]!r} for {self.constants!r}")
        elif not isinstance(self.constants, str) or not self.constants:
            raise _fail("constants", self.constants, "the path of the fit's summary.json")
        for name in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(name, getattr(self, name), "true or false")

    def _check_numbers(self) -> None:
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail(name, v, "a positive integer")
        for name in _FLOAT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
                raise _fail(name, v, "a positive number")
        if self.dtype not in DTYPES:
            raise _fail("dtype", self.dtype, f"one of {list(DTYPES)}")
        for name in ("flops_per_s", "est_seconds", "overhead_s"):
            v = getattr(self, name)
            if name == "overhead_s" and v == 0:
                continue
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf):
                raise _fail(name, v, "a positive number or null")

    def _check_consistency(self) -> None:
        try:
            config = self.model_config()
        except ConfigError as err:
            raise CgptError(str(err)) from None
        expected = {
            "params": param_counts(config).total,
            "batch_tokens": self.batch_size * self.grad_accum * self.block_size,
            "tokens": self.steps * self.batch_tokens,
        }
        for name, want in expected.items():
            if getattr(self, name) != want:
                raise _fail(name, getattr(self, name), f"{want} to match the plan's other fields")
        if self.min_lr > self.lr:
            raise _fail("min_lr", self.min_lr, f"at most lr={self.lr}")
        if self.warmup_steps > self.steps:
            raise _fail("warmup_steps", self.warmup_steps, f"at most steps={self.steps}")

    def model_config(self, **overrides: Any) -> GPTConfig:
        """The GPTConfig this plan trains; `overrides` sets other fields (attention backend, dropout, ...)."""
        fields = {name: getattr(self, name) for name in MODEL_FIELDS}
        return GPTConfig(**{**fields, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temporary file, fsync, rename): a crash never leaves half a plan. The folder must
        exist: a mistyped --out is an error, not a new directory tree."""
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such directory: {folder!r}")
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Plan:
        """Read and validate a plan file; every error names the file and the field."""
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise CgptError(f"plan file {path}: cannot read it as JSON ({err})") from None
        if not isinstance(d, dict):
            raise CgptError(f"plan file {path}: expected a JSON object, found {type(d).__name__}")
        if "law" not in d and str(d.get("constants")) in scaling.CONSTANTS:  # a plan from before fitted laws
            law = scaling.load_law(d["constants"])
            d = {**d, "law": law.kind, "predicted_loss_basis": law.basis()}
        names = [f.name for f in dataclasses.fields(cls)]
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        unknown, missing = sorted(set(d) - set(names)), [n for n in required if n not in d]
        if unknown or missing:
            raise CgptError(f"plan file {path}: unknown field(s) {unknown}, missing field(s) {missing}")
        try:
            return cls(**d)
        except CgptError as err:
            raise CgptError(f"plan file {path}: {err}") from None


# --- budget -> plan ---------------------------------------------------------------------------------------


def resolve_arch(arch: GPTConfig | str | None) -> GPTConfig:
    """A block by name (model.config.ARCHS), a GPTConfig as given, or the default block."""
    if arch is None or isinstance(arch, str):
        return model_arch(DEFAULT_ARCH if arch is None else arch)
    return arch


def make_plan(
    budget: str,
    value: float,
    vocab_size: int,
    block_size: int,
    constants: str = scaling.DEFAULT_CONSTANTS,
    allocation: str = "approach3",
    arch: GPTConfig | str | None = None,
    micro_batch_tokens: int = shapes.MICRO_BATCH_TOKENS,
) -> Plan:
    """The plan for a budget of `value` FLOPs | params | tokens (`budget`).

    `constants` names a published set or gives a fit's summary.json (scaling.load_law); `arch` supplies the
    architecture (mlp, norm, positions, bias, tying): a GPTConfig, or a name in model.config.ARCHS (default
    model.config.DEFAULT_ARCH).
    """
    arch = resolve_arch(arch)
    law = scaling.load_law(constants)
    target = scaling.target_params(budget, value, allocation, law.constants)
    n_layer, n_embd, _ = shapes.choose_shape(target, vocab_size, block_size, arch)
    config = shapes.shape_config(n_layer, n_embd, vocab_size, block_size, arch)
    d = scaling.tokens_for(budget, value, param_counts(config).total, allocation, law.constants)
    return plan_for_shape(config, d, budget, value, target, law, allocation, micro_batch_tokens)


def plan_for_shape(
    config: GPTConfig,
    n_tokens: float,
    budget: str,
    value: float,
    target: float,
    law: scaling.Law,
    allocation: str = "approach3",
    micro_batch_tokens: int = shapes.MICRO_BATCH_TOKENS,
) -> Plan:
    """The plan that trains `config` on about `n_tokens` tokens: batch, steps (D rounded up to whole steps),
    learning rate and warmup by the recipe in train/planner/shapes.py. An IsoFLOP sweep calls this directly."""
    n = param_counts(config).total
    batch_size, grad_accum, steps = shapes.batch_schedule(n, n_tokens, config.block_size, micro_batch_tokens)
    tokens = steps * batch_size * grad_accum * config.block_size  # D rounded up to whole steps
    lr = float(f"{shapes.learning_rate(n):.3g}")  # 6.55e-4, not 6.547966783038427e-4
    return Plan(
        budget=budget,
        budget_value=float(value),
        allocation=allocation,
        constants=law.name,
        law=law.kind,
        target_params=max(1, round(target)),
        params=n,
        tokens=tokens,
        flops=scaling.flops_6nd(n, tokens),
        flops_appendix_f=scaling.flops_appendix_f(config, tokens),
        predicted_loss=scaling.predicted_loss(n, tokens, law.constants),
        predicted_loss_basis=law.basis(),
        **{name: getattr(config, name) for name in MODEL_FIELDS},
        batch_size=batch_size,
        grad_accum=grad_accum,
        batch_tokens=batch_size * grad_accum * config.block_size,
        steps=steps,
        lr=lr,
        min_lr=float(f"{lr / shapes.LR_DECAY:.3g}"),
        warmup_steps=shapes.warmup_steps(steps),
    )


def estimate_seconds(plan: Plan, flops_per_s: float) -> float:
    """Training time at an achieved throughput (in model.flops.flops_per_token FLOPs per second)."""
    return plan.tokens * flops_per_token(plan.model_config()) / flops_per_s


MAX_STEP = math.log(100.0)  # plan_for_minutes changes C at most 100x per probe
# sizes plan_for_minutes weighs against the FLOP-optimal one, as multiples of it
TIME_SIZE_FACTORS = (1.0, 2.0, 4.0, 8.0, 16.0)
LOSS_MARGIN = 0.02  # predictions within 2% of the lowest reducible loss L - E: the law cannot tell them apart ...
WORK_GAIN = 1.1  # ... and among those, a plan that trains >= 10% more FLOPs in the time is the better buy


def choose_for_time(candidates: list[Plan], law: scaling.Law) -> Plan:
    """The candidate (each filling the same time) a wall-clock plan trains: the law's lowest predicted loss,
    unless others it predicts within LOSS_MARGIN of that (in L - E) train more FLOPs in the time - then the one
    training the most, counted in steps of WORK_GAIN so that timing noise does not flip the choice.

    Why not the law alone: extrapolated to a few hundred thousand parameters it is nearly flat across these
    sizes, so which one wins by a hair is decided by the probe's noise. Measured here (tinyshakespeare, 20 s of
    training each): 1 x 80 reached 1.922 at 46k tokens/s, 1 x 112 1.864 at 39k - the law ranked 1 x 80 a hair
    ahead. Where sizes tie, the one that puts more of the machine's FLOPs to work learns more per second (larger
    models learn faster per step: Kaplan et al. 2020, Fig. 2; Li et al. 2020, "Train Large, Then Compress"). Where
    FLOPs are time (a constant FLOP/s), every candidate trains the same FLOPs and the law's optimum stands.
    """
    E = law.constants.E
    best = min(candidates, key=lambda p: p.predicted_loss)
    tied = [p for p in candidates if p.predicted_loss - E <= (1 + LOSS_MARGIN) * (best.predicted_loss - E)]

    def work(p: Plan) -> float:
        return p.tokens * flops_per_token(p.model_config())

    plan = best
    for other in sorted(tied, key=work):
        if work(other) >= WORK_GAIN * work(plan):
            plan = other
    return plan


def _fill(
    config: GPTConfig,
    guess: float,
    seconds: float,
    estimate: Callable[[Plan], tuple[timing.Speed, float, float]],
    budget: float,
    target: float,
    law: scaling.Law,
    allocation: str,
) -> Plan:
    """`config` trained on the tokens that fill `seconds` at its measured speed, less the run's other costs,
    starting from `guess` tokens (the batch, and so the speed, depends on the token count: a guess far too small
    would cap the batch at one sequence and measure that); the overhead depends on the steps: a few rounds."""
    plan = plan_for_shape(config, guess, "flops", budget, target, law, allocation)
    for _ in range(5):
        speed, _, extra_s = estimate(plan)
        tokens = max(seconds - extra_s, 1e-3 * seconds) * speed.flops_per_s / flops_per_token(config)
        filled = plan_for_shape(config, tokens, "flops", budget, target, law, allocation)
        if filled == plan:
            break
        plan = filled
    return plan


@dataclass(frozen=True)
class RunCosts:
    """What a planned run spends besides training steps, for `plan_for_minutes` (train/planner/timing.py)."""

    spent_s: float = 0.0  # already spent by the command before training (startup, reading the data, ...)
    eval_batches: int = 20  # batches per periodic evaluation (TrainConfig.eval_batches)
    final_eval_tokens: int = 0  # the validation tokens the run scores at the end (the whole split, usually)
    started: float | None = None  # time.perf_counter() when the command began: then the clock adds the rest

    def spent(self) -> float:
        """Seconds spent so far: spent_s, plus the time since `started` (probing counts as it happens)."""
        return self.spent_s + (0.0 if self.started is None else time.perf_counter() - self.started)

    def overhead(self, plan: Plan, speed: timing.Speed) -> float:
        run = timing.overhead_seconds(
            speed, plan.steps, plan.batch_size, plan.block_size, self.eval_batches, self.final_eval_tokens
        )
        return self.spent() + run


def plan_for_minutes(
    minutes: float,
    measure: Callable[[Plan], timing.Speed | float],
    vocab_size: int,
    block_size: int,
    tol: float = 0.03,
    max_iter: int = 12,
    costs: RunCosts | None = None,
    size_factors: tuple[float, ...] = TIME_SIZE_FACTORS,
    report: Callable[[list[Plan], Plan], None] | None = None,
    **options: Any,
) -> Plan:
    """The plan whose whole command takes `minutes`: training steps at the throughput `measure(plan)` reports,
    plus what `costs` adds (evaluation, checkpoints, the time already spent).

    Throughput depends on the shape and the shape on the budget, so this solves est_seconds(plan(C)) +
    overhead = target for C: a fixed-point step C <- C x target / est first, then secant steps on log C, which
    stay fast where throughput grows almost as fast as C (small models on a GPU), each step at most 100x in C so a
    noisy measurement cannot send the probe to a model too big for memory. Then, for repeatable plans, C is
    rounded down onto a fixed grid (timing.stable_budget), and that budget's compute-optimal size N and sizes
    `size_factors` times larger - each in the planner's shape and in fewer, wider layers (shapes.depth_variants)
    - are each given the tokens that fill the time left at their measured speed. The plan is the one whose law
    predicts the lowest loss L(N, D): at a fixed FLOP count the law's optimum is N, but per second a larger model
    or a shallower shape can be the better buy where small, deep ones run far below the machine's FLOP/s (a CPU
    at these sizes: per-step and per-layer overheads), which is what wall-clock planning is about. `report`, when
    given, sees every candidate weighed and the one chosen. `options` are passed to `make_plan`.
    """
    scaling.check_positive("minutes", minutes)
    costs = RunCosts() if costs is None else costs
    seconds = 60.0 * minutes

    def estimate(plan: Plan) -> tuple[timing.Speed, float, float]:
        speed = timing.Speed.of(measure(plan))
        return speed, estimate_seconds(plan, speed.flops_per_s), costs.overhead(plan, speed)

    if seconds <= costs.spent() + timing.TAIL_S:
        raise CgptError(
            f"--minutes {minutes:g}: starting up already took {costs.spent():.1f} s; give more time than that"
        )
    x, prev, best = math.log(seconds * 1e9), None, None  # x = log C; first guess: 1 GFLOP/s
    for _ in range(max_iter):
        plan = make_plan("flops", math.exp(x), vocab_size, block_size, **options)
        _, train_s, extra_s = estimate(plan)
        target = max(seconds - extra_s, 1e-3 * seconds)
        miss = math.log(train_s / target)  # log of est / target, for the training steps
        if best is None or abs(miss) < abs(best[1]):
            best = (x, miss)
        if abs(miss) <= math.log1p(tol):
            break
        slope = 1.0 if prev is None or prev[0] == x else (miss - prev[1]) / (x - prev[0])
        slope = min(max(slope, 0.2), 2.0)  # d log est / d log C = 1 - d log fps / d log C: in (0, 1] mostly
        step = max(-MAX_STEP, min(MAX_STEP, -miss / slope))  # timing noise must not fling C (and memory) away
        prev, x = (x, miss), x + step
    budget = timing.stable_budget(math.exp(best[0]))
    base = make_plan("flops", budget, vocab_size, block_size, **options)
    law, arch = scaling.load_law(base.constants), resolve_arch(options.get("arch"))
    candidates: dict[tuple[int, int], Plan] = {}
    for factor in size_factors:  # the FLOP-optimal size, and larger ones that may use the time better
        target = base.target_params * factor
        for n_layer, n_embd in shapes.depth_variants(target, vocab_size, block_size, arch):
            if (n_layer, n_embd) in candidates:
                continue
            config = shapes.shape_config(n_layer, n_embd, vocab_size, block_size, arch)
            guess = base.tokens * flops_per_token(base.model_config()) / flops_per_token(config)  # the same work
            candidates[n_layer, n_embd] = _fill(config, guess, seconds, estimate, budget, target, law,
                                                base.allocation)  # fmt: skip
    plan = choose_for_time(list(candidates.values()), law)
    if report is not None:
        report(list(candidates.values()), plan)
    speed, train_s, extra_s = estimate(plan)
    return dataclasses.replace(
        plan,
        budget="minutes",
        budget_value=float(minutes),
        flops_per_s=speed.flops_per_s,
        est_seconds=train_s,
        overhead_s=extra_s,
        dtype=speed.dtype,
    )

"""A speed probe: what one training shape costs on this machine, for `--minutes` plans.

For a plan's model at its micro-batch and context, `measure_speed` times

- the training loop's own step (train/loop.py `Trainer.train_step`: forward, backward, clipping, AdamW) on random
  tokens, after a few warm-up steps (allocation, kernel selection, caches), as the median rate over several short
  windows - a median, because one slow window (another process, a page fault) must not move the plan;
- that step under each autocast dtype worth trying (`candidate_dtypes`): float32 always, and bfloat16 on a GPU
  that has it or a CPU with native bf16 instructions (AVX-512 BF16 or AMX; PyTorch's oneDNN reports it). The
  faster dtype wins: on a CPU bf16 pays only for matmuls large enough to use those instructions (a 6 x 384 model
  trains 1.6x faster on an AVX-512 BF16 EPYC, a 4 x 128 one no faster), so this is measured per shape, never
  read from a table;
- evaluation's forward pass (no gradients) at the same batch, and one atomic checkpoint save.

FLOPs are counted with `model.flops.flops_per_token` (6 N_matmul + 12 L H Q T per token: Kaplan et al. 2020,
PaLM App. B, nanoGPT's MFU), so FLOP/s x seconds is the work a training run of that shape does. `make_probe`
caches each shape's `Speed` and, given a `timing.Profile`, reuses and records it across commands.
"""

from __future__ import annotations

import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from model.config import GPTConfig
from model.flops import flops_per_token
from model.gpt import GPT
from train.loop import Trainer
from train.planner.plan import Plan
from train.planner.timing import Profile, Speed
from train.recipe import Task, TrainConfig
from train.runtime.hardware import cpu_has_native_bf16, device_name
from train.runtime.rundir import RunDir


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _RandomTokens(Task):
    """A language-modelling task on random tokens: the real training step, without a corpus."""

    def __init__(self, config: GPTConfig, batch_size: int, seed: int) -> None:
        self.config, self.batch_size = config, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.model = GPT(config, self.generator)

    def next_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = torch.randint(
            self.config.vocab_size, (self.batch_size, self.config.block_size + 1), generator=self.generator
        )
        return tokens[:, :-1].to(device), tokens[:, 1:].to(device)  # (B, T) inputs, next-token targets

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(*batch)[1]

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()


def candidate_dtypes(device: torch.device) -> tuple[str, ...]:
    """The autocast dtypes worth timing here: bfloat16 only where the hardware computes in it natively."""
    if device.type == "cuda":
        return ("float32", "bfloat16") if torch.cuda.is_bf16_supported() else ("float32",)
    return ("float32", "bfloat16") if cpu_has_native_bf16() else ("float32",)


def _warm_up(work: Callable[[], None], device: torch.device, calls: int, seconds: float) -> None:
    """At least `calls` calls and `seconds` of them: a process's first steps pay one-time costs (allocator,
    oneDNN primitive caches, autograd's threads) that, timed, once sent a plan to a 27-step run."""
    start, done = time.perf_counter(), 0
    while done < calls or time.perf_counter() - start < seconds:
        work()
        done += 1
    _sync(device)


def _median_rate(work: Callable[[], None], units: float, device: torch.device, seconds: float, windows: int) -> float:
    """Median over `windows` timing windows of units per second, each window >= seconds / windows and >= 1 call;
    where single calls are that long (a large model's step), three windows once `seconds` are spent."""
    rates: list[float] = []
    spent = 0.0
    for _ in range(windows):
        if len(rates) >= 3 and spent >= seconds:
            break
        calls, start = 0, time.perf_counter()
        while True:
            work()
            calls += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / windows:
                break
        rates.append(units * calls / elapsed)
        spent += elapsed
    return statistics.median(rates)


def measure_flops_per_s(
    config: GPTConfig,
    batch_size: int,
    device: torch.device,
    seconds: float = 1.0,
    seed: int = 0,
    warmup: int = 2,
    dtype: str = "auto",
    windows: int = 5,
) -> float:
    """Achieved training FLOP/s for `config` at `batch_size` sequences of `config.block_size` tokens, under the
    autocast `dtype` (auto: train/runtime/hardware.py's choice), as the median over `windows` windows."""
    return _measure(config, batch_size, device, seconds, seed, warmup, (dtype,), windows, extras=False).flops_per_s


def _measure(
    config: GPTConfig,
    batch_size: int,
    device: torch.device,
    seconds: float,
    seed: int,
    warmup: int,
    dtypes: tuple[str, ...],
    windows: int,
    extras: bool = True,
) -> Speed:
    step_flops = flops_per_token(config) * batch_size * config.block_size
    by_dtype: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for dtype in dtypes:
            task = _RandomTokens(config, batch_size, seed)
            train = TrainConfig(max_steps=10**9, batch_size=batch_size, warmup_steps=0, device=str(device), dtype=dtype)
            trainer = Trainer(task, train, RunDir(Path(tmp) / dtype), progress=False)
            _warm_up(trainer.train_step, device, warmup, seconds / 4)
            by_dtype[dtype] = _median_rate(trainer.train_step, step_flops, device, seconds / len(dtypes), windows)
            trainers[dtype] = trainer
        best = max(by_dtype, key=by_dtype.__getitem__)
        if not extras:
            return Speed(flops_per_s=by_dtype[best], dtype=best, by_dtype=by_dtype)
        trainer = trainers[best]
        eval_rate = _eval_rate(trainer, batch_size, device, seconds / 4)
        start = time.perf_counter()
        trainer.save(Path(tmp) / "probe.pt")
        checkpoint_s = time.perf_counter() - start
    name = best if best != "auto" else str(trainers[best].dtype).removeprefix("torch.")
    return Speed(by_dtype[best], name, eval_rate, checkpoint_s, {k: v for k, v in by_dtype.items()})


def _eval_rate(trainer: Trainer, batch_size: int, device: torch.device, seconds: float) -> float:
    """Forward-only tokens/s (evaluation) under the trainer's autocast dtype."""
    from train.runtime.hardware import autocast

    x, y = trainer.task.next_batch(device)
    model = trainer.model
    model.eval()

    def forward() -> None:
        with torch.no_grad(), autocast(device, trainer.dtype):
            model(x, y)

    forward()
    rate = _median_rate(forward, x.numel(), device, seconds, 3)
    model.train()
    return rate


def machine_id(device: torch.device) -> str:
    """What a profile's figures are valid for: the device, the CPU, the threads, torch."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{device_name(device)} | {cpu} | {torch.get_num_threads()} threads | torch {torch.__version__}"


def shape_key(plan: Plan, dtype: str) -> str:
    c = plan.model_config()
    return (
        f"{c.n_layer}x{c.n_embd} h{c.n_head}/{c.n_kv_head} {c.mlp} {c.norm} {c.positions} "
        f"bias={int(c.bias)} tie={int(c.tie_embeddings)} vocab={c.vocab_size} T={c.block_size} "
        f"B={plan.batch_size} dtype={dtype}"
    )


NEAR_BATCH = 2.0  # a shape measured at a batch within this factor stands in for it (make_probe)


def near_batch_key(key: str, batch_size: int, known: Iterable[str]) -> str | None:
    """The key among `known` of this same shape measured at the nearest batch within NEAR_BATCH of `batch_size`,
    if any. While a plan fills the time, a candidate's batch moves with its token count (train/planner/shapes.py
    caps it at tokens / 200 steps), and a large model's probe costs seconds: a few percent of FLOP/s between
    batches of 10 and 13 sequences is below the probe's own noise."""
    head, tail = key.split(f" B={batch_size} ")
    near = []
    for other in known:
        if other.startswith(head + " B=") and other.endswith(" " + tail):
            b = int(other[len(head) + 3 :].split(" ", 1)[0])
            if max(b, batch_size) <= NEAR_BATCH * min(b, batch_size):
                near.append((abs(math.log(b / batch_size)), b, other))
    return min(near)[2] if near else None


def make_probe(
    device: torch.device,
    seconds: float = 1.0,
    seed: int = 0,
    dtype: str = "auto",
    profile: Profile | None = None,
    windows: int = 5,
) -> Callable[[Plan], Speed]:
    """`measure(plan) -> Speed` for `plan_for_minutes`, probing each distinct shape once per command, or never
    when `profile` already holds it (a new measurement is saved to the profile), or when the same shape was
    measured at a batch within NEAR_BATCH of the plan's (`near_batch_key`). `dtype` auto tries
    `candidate_dtypes(device)`; a named dtype is the only one timed."""
    dtypes = candidate_dtypes(device) if dtype == "auto" else (dtype,)
    measured: dict[str, Speed] = {}  # what each key answered this command
    probed: dict[str, Speed] = {}  # what was really timed (a stand-in never stands in: no drift 6 -> 10 -> 13 ...)

    def measure(plan: Plan) -> Speed:
        key = shape_key(plan, dtype)
        if key not in measured:
            known = profile.get(key) if profile is not None else None
            if known is None:
                timed = {**(profile.shapes if profile is not None else {}), **probed}
                near = near_batch_key(key, plan.batch_size, timed)
                known = None if near is None else timed[near]
            if known is None:
                known = _measure(plan.model_config(), plan.batch_size, device, seconds, seed, 2, dtypes, windows)
                probed[key] = known
                if profile is not None:
                    profile.put(key, known)
            measured[key] = known
        return measured[key]

    return measure

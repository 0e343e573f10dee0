"""A throughput probe: this machine's achieved training FLOP/s, for `cgpt plan --minutes`.

The probe builds a plan's model, runs a couple of warm-up steps (allocation, kernel selection, caches), then
times the training loop's own step (train/loop.py: forward, backward, clipping, AdamW) on random tokens, at the
plan's micro-batch and context.
FLOPs are counted with `model.flops.flops_per_token` (6 N_matmul + 12 L H Q T per token: Kaplan et al. 2020,
PaLM App. B, nanoGPT's MFU), so achieved FLOP/s x seconds is the work a training run of that shape does.
Device and autocast dtype come from train/runtime/hardware.py, as in training: bf16 on a GPU that has it (Chinchilla
trained in bf16), fp32 on a CPU. Weights and tokens come from a seeded generator, so a probe is repeatable up
to timing noise. The figure leaves out evaluation and checkpoints: leave some slack for those.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

import torch

from model.config import GPTConfig
from model.flops import flops_per_token
from model.gpt import GPT
from train.loop import Trainer
from train.planner.plan import Plan
from train.recipe import Task, TrainConfig
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


def measure_flops_per_s(
    config: GPTConfig,
    batch_size: int,
    device: torch.device,
    seconds: float = 1.0,
    seed: int = 0,
    warmup: int = 2,
) -> float:
    """Achieved training FLOP/s for `config` at `batch_size` sequences of `config.block_size` tokens.

    Times `Trainer.train_step` itself - the training loop's own step (batch, autocast, backward, clipping,
    AdamW, the loss check) - so per-step overheads that dominate tiny models are in the figure too.
    """
    task = _RandomTokens(config, batch_size, seed)
    train = TrainConfig(max_steps=10**9, batch_size=batch_size, warmup_steps=0, device=str(device))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(task, train, RunDir(tmp), progress=False)
        for _ in range(warmup):
            trainer.train_step()
        _sync(device)
        steps, start = 0, time.perf_counter()
        while True:
            trainer.train_step()
            steps += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and steps >= 2:
                break
    return flops_per_token(config) * batch_size * config.block_size * steps / elapsed


def make_probe(device: torch.device, seconds: float = 1.0, seed: int = 0) -> Callable[[Plan], float]:
    """`measure(plan) -> FLOP/s` for `plan_for_minutes`, probing each distinct shape once."""
    measured: dict[tuple[int, ...], float] = {}

    def measure(plan: Plan) -> float:
        key = (plan.n_layer, plan.n_embd, plan.n_head, plan.batch_size, plan.block_size, plan.vocab_size)
        if key not in measured:
            measured[key] = measure_flops_per_s(plan.model_config(), plan.batch_size, device, seconds, seed)
        return measured[key]

    return measure

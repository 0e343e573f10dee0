"""Pretraining recipe: a GPT, the language-modelling loss, token shards -> the shared training loop.

`pretrain()` is what `cgpt pretrain` calls and what an IsoFLOP sweep can call in a loop: it takes resolved,
validated configs (model, training, optional plan), checks them against the data, writes a self-describing
run directory and returns the summary. The number of optimizer steps fixes the token count exactly:
steps x batch_size x grad_accum x block_size x world_size tokens, and the cosine schedule spans precisely that.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import GPT, GPTConfig, flops_per_token
from train.data.loader import RandomWindowSampler, TokenDataset, iterate_sequential
from train.errors import CgptError
from train.loop import Trainer
from train.planner.plan import Plan
from train.recipe import Task, TrainConfig
from train.runtime import distributed as D
from train.runtime.rundir import RunDir


class PretrainTask(Task):
    """Next-token prediction on random windows of the training split; loss on the validation split."""

    metric, metric_mode = "val_loss", "min"

    def __init__(
        self, model_config: GPTConfig, data: TokenDataset, train: TrainConfig, dist: D.DistInfo | None = None
    ) -> None:
        self.config, self.data, self.train = model_config, data, train
        self.model = GPT(model_config, torch.Generator().manual_seed(train.seed))
        self.dist = dist
        rank, world = (0, 1) if dist is None else (dist.rank, dist.world_size)
        self.sampler = RandomWindowSampler(
            data.train, model_config.block_size, train.batch_size, train.seed, rank, world
        )

    def next_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sampler.next_batch(device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        _, loss = model(*batch)
        return loss

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean next-token loss over a fixed set of validation windows: the first eval_batches global batches
        of the split (or its first eval_tokens tokens, whatever the batch size), each rank scoring its slice - so
        the figure does not depend on the number of ranks."""
        rank, world = (0, 1) if self.dist is None else (self.dist.rank, self.dist.world_size)
        B, n, val = self.train.batch_size, self.train.eval_batches or None, self.data.val
        if self.train.eval_tokens:
            n, val = None, val[: self.train.eval_tokens + 1]  # eval_tokens // block_size whole windows
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss x tokens, tokens
        for x, y in iterate_sequential(val, self.config.block_size, B * world, n, device):
            x, y = x[rank * B : (rank + 1) * B], y[rank * B : (rank + 1) * B]
            if len(x):
                _, loss = model(x, y)
                sums += torch.tensor([loss.item() * y.numel(), y.numel()], dtype=torch.float64, device=device)
        sums = D.all_reduce_mean(sums, self.dist)  # the ratio of means is the ratio of sums
        return {"val_loss": (sums[0] / sums[1]).item()}

    def tokens_in(self, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
        return batch[0].numel()

    def flops_per_token(self) -> float:
        return flops_per_token(self.config)

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"model_config": self.config.to_dict(), "tokenizer_hash": self.data.tokenizer.hash}


def train_config_from_plan(plan: Plan, world_size: int = 1, **overrides: Any) -> TrainConfig:
    """The plan's batch and schedule as a TrainConfig; the global batch is split across data-parallel ranks."""
    batch, accum = plan.batch_size, plan.grad_accum
    if world_size > 1:
        if accum % world_size == 0:
            accum //= world_size
        elif batch % world_size == 0:
            batch //= world_size
        else:
            raise CgptError(
                f"plan batch {plan.batch_size} x {plan.grad_accum} cannot be split over "
                f"{world_size} ranks; set --batch-size and --grad-accum"
            )
    every = max(1, min(250, plan.steps // 10))
    fields = dict(
        max_steps=plan.steps,
        batch_size=batch,
        grad_accum=accum,
        lr=plan.lr,
        min_lr_ratio=plan.min_lr / plan.lr,
        warmup_steps=plan.warmup_steps,
        eval_every=every,
        checkpoint_every=max(every, min(500, plan.steps)),
    )
    return TrainConfig(**{**fields, **overrides})


def check_data(data: TokenDataset, model: GPTConfig, train: TrainConfig, world_size: int, allow_repeat: bool) -> int:
    """The planned token count; refuses a vocabulary mismatch, and repetition unless allowed."""
    vocab = data.tokenizer.vocab_size
    if model.vocab_size < vocab:
        raise CgptError(
            f"{data.directory}: tokenizer has {vocab} tokens but the model's vocab_size is "
            f"{model.vocab_size}; use the data's vocabulary (or a larger vocab_size)"
        )
    if len(data.val) < model.block_size + 1:
        raise CgptError(
            f"{data.directory}: the validation split has {len(data.val)} tokens, fewer than one "
            f"window of block_size + 1 = {model.block_size + 1}"
        )
    needed = train.max_steps * train.batch_size * train.grad_accum * model.block_size * world_size
    have = len(data.train)
    if needed > have and not allow_repeat:
        raise CgptError(
            f"{data.directory}: the run needs {needed:,} training tokens but the data holds "
            f"{have:,} ({needed / have:.1f} epochs); pass --allow-repeat to repeat the data, "
            f"or choose a smaller budget"
        )
    return needed


def pretrain(
    data_dir: str | Path,
    out_dir: str | Path,
    model_config: GPTConfig,
    train: TrainConfig,
    plan: Plan | None = None,
    resume: bool = False,
    force: bool = False,
    allow_repeat: bool = False,
    progress: bool = True,
    parallel: str = "ddp",
    log: Any = print,
) -> dict[str, Any]:
    """Pretrain `model_config` on prepared data into `out_dir`; returns summary.json's contents."""
    run = RunDir(out_dir)
    data = TokenDataset.open(data_dir)
    dist = D.setup(
        torch.device(train.device if train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")).type,
        parallel,
    )
    world = 1 if dist is None else dist.world_size
    try:
        if resume and run.config.exists():  # the run's own settings; only the device may change
            saved = run.read_json(run.config)
            model_config = GPTConfig.from_dict(saved["model"])
            train = dataclasses.replace(TrainConfig(**saved["train"]), device=train.device)
            allow_repeat = allow_repeat or saved.get("allow_repeat", False)
        needed = check_data(data, model_config, train, world, allow_repeat)
        task = PretrainTask(model_config, data, train, dist)
        trainer = Trainer(task, train, run, dist, progress)
        backend, reason = task.model.attention_backend(trainer.device)
        resolved = {
            "command": "pretrain",
            "model": model_config.to_dict(),
            "train": dataclasses.asdict(train),
            "data": {
                "dir": str(Path(data_dir).resolve()),
                "tokenizer": data.tokenizer.name,
                "tokenizer_hash": data.tokenizer.hash,
                "train_tokens": len(data.train),
                "val_tokens": len(data.val),
            },
            "planned_tokens": needed,
            "allow_repeat": allow_repeat,
            "world_size": world,
            "attention_backend": backend,
            "plan": None if plan is None else plan.to_dict(),
        }
        if trainer.is_main:
            run.prepare(resume, force)
            run.write_json(run.config, resolved)
            data.tokenizer.save(run.tokenizer)
            log(json.dumps({k: resolved[k] for k in ("model", "train")}, separators=(",", ":")))
            log(
                f"{task.model.num_params():,} parameters; {needed:,} tokens over {train.max_steps} steps; "
                f"attention: {backend} ({reason}); device {trainer.device}, {trainer.dtype}"
            )
        return trainer.fit(resume=resume)
    finally:
        D.teardown(dist)

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

import numpy as np
import torch
from torch import nn

from model import GPT, GPTConfig, flops_per_token
from model.config import ConfigError
from train.data.loader import RandomWindowSampler, TokenDataset
from train.errors import CgptError
from train.evaluation.lm import score_tokens, summarise, text_bytes
from train.loop import Trainer
from train.planner import timing
from train.planner.plan import Plan
from train.recipe import Task, TrainConfig, resumed_train_config
from train.runtime import distributed as D
from train.runtime.hardware import resolve_device
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
        of non-overlapping windows (all of them when eval_batches is 0), or the windows of the split's first
        eval_tokens tokens whatever the batch size; the ranks share the windows, so the figure does not depend on
        the number of ranks (train/evaluation/lm.py scores them)."""
        nll, tokens = self.score_val(model, device, self.train.eval_batches)
        return {"val_loss": nll / tokens}

    def _val(self) -> np.ndarray:
        """The validation tokens evaluations score: the split, or its first eval_tokens + 1 tokens."""
        return self.data.val[: self.train.eval_tokens + 1] if self.train.eval_tokens else self.data.val

    def score_val(self, model: nn.Module, device: torch.device, batches: int = 0) -> tuple[float, int]:
        """(summed loss, tokens) over the first `batches` global batches of validation windows (0: all)."""
        rank, world = (0, 1) if self.dist is None else (self.dist.rank, self.dist.world_size)
        B, T = self.train.batch_size, self.config.block_size
        windows = None if self.train.eval_tokens else batches * B * world or None
        nll, n = score_tokens(model, self._val(), T, T, B, device, windows, rank, world)
        sums = D.all_reduce_mean(torch.tensor([nll, n], dtype=torch.float64, device=device), self.dist) * world
        return float(sums[0]), int(round(float(sums[1])))

    def final_metrics(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """The validation set scored once more at the end - the whole split, or its first eval_tokens - in
        nats per token and in bits per byte (tokenizer-independent: runs with different vocabularies compare)."""
        nll, tokens = self.score_val(model, device)
        full = summarise(nll, tokens, text_bytes(self.data.tokenizer, np.asarray(self._val())))
        return {"val_loss_full": full["loss"], "val_bits_per_byte": full["bits_per_byte"], "val_tokens_scored": tokens}

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
    fields = dict(
        max_steps=plan.steps,
        batch_size=batch,
        grad_accum=accum,
        lr=plan.lr,
        min_lr_ratio=plan.min_lr / plan.lr,
        warmup_steps=plan.warmup_steps,
        eval_every=timing.eval_every(plan.steps),
        checkpoint_every=timing.checkpoint_every(plan.steps),
        dtype=plan.dtype,  # auto, or what a --minutes probe measured fastest
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


def resumed(
    run: RunDir,
    data: TokenDataset,
    model_config: GPTConfig | None,
    train: TrainConfig | None,
    train_changes: dict[str, Any],
) -> tuple[dict[str, Any], GPTConfig, TrainConfig]:
    """(saved config.json, model, training config) of the run to resume. Configs given again must equal the
    run's (a training config may change what `resumed_train_config` allows); the data must have the run's
    tokenizer. Checked before anything is written."""
    saved = run.saved_config("pretrain")
    saved_model = GPTConfig.from_dict(saved["model"])
    if model_config is not None and model_config != saved_model:
        diff = [k for k, v in model_config.to_dict().items() if saved["model"].get(k) != v]
        raise CgptError(f"{run.config}: the run's model differs in {diff}; a resumed run keeps its model")
    given = {**(dataclasses.asdict(train) if train is not None else {}), **train_changes}
    resumed_train = resumed_train_config(TrainConfig(**saved["train"]), given)
    if data.tokenizer.hash != saved["data"]["tokenizer_hash"]:
        raise CgptError(
            f"{data.directory}: tokenizer {data.tokenizer.hash}, but the run in {run.path} was trained on "
            f"{saved['data']['dir']} with tokenizer {saved['data']['tokenizer_hash']}; resume with that data"
        )
    return saved, saved_model, resumed_train


def pretrain(
    data_dir: str | Path,
    out_dir: str | Path,
    model_config: GPTConfig | None = None,
    train: TrainConfig | None = None,
    plan: Plan | None = None,
    resume: bool = False,
    force: bool = False,
    allow_repeat: bool = False,
    progress: bool = True,
    parallel: str = "ddp",
    log: Any = print,
    train_changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain `model_config` on prepared data into `out_dir`; returns summary.json's contents.

    With `resume`, the run in `out_dir` continues from its last checkpoint with its own saved configuration:
    `model_config`, `train` (and `train_changes`, single fields) may be given again; they must equal the run's,
    except the training fields a resumed run may change (train.recipe.CHANGEABLE_ON_RESUME: extending
    max_steps stretches the cosine over the new horizon). Every check comes before the first write to `out_dir`."""
    run = RunDir(out_dir)
    data = TokenDataset.open(data_dir)
    saved = None
    if resume:
        saved, model_config, train = resumed(run, data, model_config, train, dict(train_changes or {}))
        allow_repeat = allow_repeat or saved.get("allow_repeat", False)
    elif model_config is None or train is None:
        raise ValueError("a new pretraining run needs a model config and a training config")
    elif run.holds_run() and not force:
        raise CgptError(f"{run.path}: already holds a run; pass --resume to continue it or --force to overwrite it")
    if model_config.attention_mask != "causal":  # next-token prediction with the answer in view
        raise ConfigError(f"attention_mask={model_config.attention_mask!r}: a language model is pretrained causal")
    device = train.device if train.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if train.optimizer == "muon" and parallel == "fsdp" and D.launched_by_torchrun():
        raise ConfigError("optimizer='muon' is not supported with --parallel fsdp (it orthogonalises whole matrices, "
                          "FSDP shards them); use ddp or adamw")  # fmt: skip
    dist = D.setup(resolve_device(device).type, parallel)
    world = 1 if dist is None else dist.world_size
    try:
        needed = check_data(data, model_config, train, world, allow_repeat)
        task = PretrainTask(model_config, data, train, dist)
        trainer = Trainer(task, train, run, dist, progress)
        backend, reason = task.model.attention_backend(trainer.device)
        if saved is None:
            config = {
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
        else:  # the run's own record, with what a resume may change
            config = {
                **saved,
                "train": dataclasses.asdict(train),
                "planned_tokens": needed,
                "allow_repeat": allow_repeat,
            }
        if trainer.is_main:
            run.prepare(resume, force)  # takes the run's lock: a second process on this run stops here
            run.write_json(run.config, config)
            if saved is None:
                data.tokenizer.save(run.tokenizer)
            log(json.dumps({k: config[k] for k in ("model", "train")}, separators=(",", ":")))
            log(
                f"{task.model.num_params():,} parameters; {needed:,} tokens over {train.max_steps} steps; "
                f"attention: {backend} ({reason}); device {trainer.device}, {trainer.dtype}"
            )
        return trainer.fit(resume=resume)
    finally:
        run.unlock()
        D.teardown(dist)

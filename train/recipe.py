"""What a recipe hands the training loop: a TrainConfig (how to train) and a Task (what to train on).

Pretraining (train/pretrain.py) and fine-tuning (train/finetune/recipe.py) are Tasks; train/loop.py trains any Task.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from model.config import ConfigError

if TYPE_CHECKING:  # the command line reads TrainConfig's fields without importing torch
    import torch
    from torch import nn

SCHEDULES = ("cosine", "constant")  # train/runtime/optim.py: lr_at
OPTIMIZERS = ("adamw", "sgd", "muon")  # train/runtime/optim.py: build_optimizer
DTYPES = ("auto", "float32", "bfloat16")  # train/runtime/hardware.py: resolve_dtype
DEVICES = r"auto|cpu|cuda(:\d+)?"  # the devices a run may name (train/runtime/hardware.py: resolve_device)
# What a resumed run may change: how long it trains (the cosine then spans the new max_steps, so a run extended
# from 30 to 40 steps continues on the 40-step schedule: Chinchilla's lesson that the cycle must match the
# horizon), how it logs and checkpoints, and where it runs. Everything else would make it another run.
CHANGEABLE_ON_RESUME = ("max_steps", "eval_every", "checkpoint_every", "keep_last", "log_every", "device",
                        "compile", "peak_flops")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 2000
    batch_size: int = 12  # sequences per micro-batch (per rank)
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of the peak (Chinchilla: 10x)
    warmup_steps: int = 100
    schedule: str = "cosine"
    optimizer: str = "adamw"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    momentum: float = 0.9  # SGD only
    grad_clip: float = 1.0  # 0 disables clipping
    eval_every: int = 250
    eval_batches: int = 20  # batches per evaluation; 0: the whole validation set
    # pretraining: > 0 evaluates on the first eval_tokens tokens of the validation split instead (eval_tokens //
    # block_size windows), the same set whatever the batch size - how an IsoFLOP sweep compares its runs
    eval_tokens: int = 0
    checkpoint_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    patience: int = 0  # early stopping after this many evaluations without improvement; 0 disables
    restore_best: bool = False  # load the best checkpoint's weights at the end (fine-tuning)
    seed: int = 1337
    device: str = "auto"
    dtype: str = "auto"
    compile: bool = False
    peak_flops: float = 0.0  # FLOP/s for MFU; 0: the device table (unknown devices get no MFU)

    def __post_init__(self) -> None:
        for name in (
            "max_steps",
            "batch_size",
            "grad_accum",
            "eval_every",
            "checkpoint_every",
            "keep_last",
            "log_every",
        ):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected a positive integer")
        for name in ("warmup_steps", "patience", "eval_batches", "eval_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: expected an integer >= 0")
        if not self.lr > 0:
            raise ConfigError(f"lr={self.lr!r}: expected a positive number")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio={self.min_lr_ratio!r}: expected a number in [0, 1]")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}: expected one of {SCHEDULES}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer={self.optimizer!r}: expected one of {OPTIMIZERS}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r}: expected one of {DTYPES}")
        if not re.fullmatch(DEVICES, self.device):
            raise ConfigError(f"device={self.device!r}: expected auto, cpu, cuda or cuda:N")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("weight_decay and grad_clip must be >= 0")


def resumed_train_config(saved: TrainConfig, given: dict[str, Any]) -> TrainConfig:
    """The saved run's TrainConfig with the fields given again on resuming: a value equal to the saved one is
    fine, a field in CHANGEABLE_ON_RESUME takes the new value, any other difference is refused, naming the
    flag, the run's value and the new one (never silently ignored)."""
    changes = {k: v for k, v in given.items() if getattr(saved, k) != v}
    for name, value in changes.items():
        if name not in CHANGEABLE_ON_RESUME:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"{flag}={value!r} differs from the run's {getattr(saved, name)!r}; a resumed run keeps its "
                f"settings (it may change only {', '.join('--' + c.replace('_', '-') for c in CHANGEABLE_ON_RESUME)})"
            )
    return dataclasses.replace(saved, **changes)


class Task:
    """What a recipe provides. Subclasses: PretrainTask (train/pretrain.py), FinetuneTask (train/finetune/recipe.py)."""

    metric = "val_loss"  # the evaluation key that picks the best checkpoint and drives early stopping
    metric_mode = "min"  # or "max" (accuracy, F1)
    model: nn.Module

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        from train.runtime.optim import param_groups  # torch: imported when training, not with the config

        return param_groups(self.model, weight_decay)

    def next_batch(self, device: torch.device) -> Any:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def micro_step(self, model: nn.Module, batch: Any, scale: float) -> torch.Tensor:
        """Forward and backward for one micro-batch; returns the detached loss. Override for two-pass
        schemes such as adversarial training."""
        loss = self.loss(model, batch)
        (loss * scale).backward()
        return loss.detach()

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        raise NotImplementedError

    def tokens_in(self, batch: Any) -> int:
        raise NotImplementedError

    def final_metrics(self, model: nn.Module, device: torch.device) -> dict[str, Any]:
        """Figures for summary.json computed once, after the last step (in eval mode, under autocast)."""
        return {}

    def flops_per_token(self) -> float | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def checkpoint_extra(self) -> dict[str, Any]:
        """Configs and hashes stored in every checkpoint, so it can be rebuilt and checked on its own."""
        return {}

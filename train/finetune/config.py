"""What a fine-tune is made of: its typed configs, its default schedule, and the TaskModel it describes.

`FinetuneConfig` holds the recipe's choices (task, head, freezing, layer-wise decay, adversarial training,
dropout, how to read the data); `Source` says where the backbone comes from (a pretraining run, or random
initialisation with the architecture and tokenizer of a run, to measure what pretraining is worth);
`DataFiles` names the splits. The loop's `TrainConfig` gets fine-tuning defaults from `finetune_train_config`,
derived from the number of training examples; any value the user sets wins. The TaskModel these configs
describe is built by `train.runs.build_task_model`, for the recipe and for the run loader alike. This module
imports no torch: the command line builds its flags from these dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from model.config import ATTACKS, ATTENTION_BACKENDS, ATTENTION_MASKS, TASKS, ConfigError
from train.finetune.freezing import check_freeze
from train.recipe import TrainConfig

EVAL_BATCH_SIZE = 32  # examples per batch when scoring (evaluate, predict, the loop's evaluations)

# The metrics each task can select the best checkpoint by (the first is the default), and their direction.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "classify": ("accuracy", "macro_f1"),
    "tag": ("f1",),
    "generate": ("val_loss",),
    "regress": ("mse", "mae", "pearson"),
}
# Each task's attention mask when --attention-mask is not given (measured: see README, "Fine-tuning").
# A generation run is a language model and must stay causal.
TASK_ATTENTION_MASKS: dict[str, str] = {
    "classify": "causal",
    "tag": "bidirectional",
    "generate": "causal",
    "regress": "causal",
}
METRIC_MODES = {
    "accuracy": "max",
    "macro_f1": "max",
    "f1": "max",
    "val_loss": "min",
    "mse": "min",
    "mae": "min",
    "pearson": "max",
}


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{name}={value!r} is not allowed: expected {allowed}")


@dataclass(frozen=True)
class FinetuneConfig:
    task: str = "classify"  # the data it reads and the metrics it reports: one of model.heads.TASKS
    head: str | None = None  # a registered head or module.path:ClassName; None: the task's built-in head
    metric: str | None = None  # picks the best checkpoint; None: the task's first in TASK_METRICS
    freeze: str = "none"  # none | embeddings | bottom:K | all-but-head (train/finetune/freezing.py)
    layer_decay: float = 1.0  # layer-wise learning-rate decay; 1 is off
    adversarial: str = "none"  # none | fgm | pgd: perturb the embedding output (model/adversarial.py)
    epsilon: float = 0.05  # L2 radius per example over the whole (T, C) sequence. A 20-token sentence embeds to
    # a norm of ~3 in a small pretrained model; measured on SST-2: 0.05 already costs a fine-tuned 370k-parameter
    # model 17 points of accuracy, and training at 0.25 or 1.0 collapses it to one class
    alpha: float | None = None  # PGD step size; None: 2.5 * epsilon / adv_steps (Madry et al. 2018)
    adv_steps: int = 3  # PGD steps
    dropout: float = 0.1  # replaces the backbone's dropout
    attention: str = "auto"  # the backbone's attention backend (model/attention.py)
    attention_mask: str | None = None  # causal | bidirectional; None: the task's (TASK_ATTENTION_MASKS)
    epochs: float = 3.0  # sets max_steps unless --max-steps is given
    max_train_examples: int = 0  # the first N training examples; 0: all
    text_field: str | None = None  # classify/regress: None means "sentence" or "text", whichever is there
    label_field: str = "label"
    strict: bool = False  # a text longer than the context is an error instead of being cut
    baseline: bool = False  # also fit and score the task's trivial baseline (train/finetune/baseline.py)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            _fail("task", self.task, f"one of {TASKS}")
        if self.metric is not None and self.metric not in TASK_METRICS[self.task]:
            _fail("metric", self.metric, f"one of {TASK_METRICS[self.task]} for task {self.task!r}")
        check_freeze(self.freeze)
        if not 0 < self.layer_decay <= 1:
            _fail("layer_decay", self.layer_decay, "a number in (0, 1]")
        if self.adversarial not in ("none", *ATTACKS):
            _fail("adversarial", self.adversarial, f"one of {('none', *ATTACKS)}")
        if self.epsilon <= 0 or (self.alpha is not None and self.alpha <= 0) or self.adv_steps < 1:
            _fail("epsilon/alpha/adv_steps", (self.epsilon, self.alpha, self.adv_steps), "positive numbers")
        if not 0 <= self.dropout < 1:
            _fail("dropout", self.dropout, "a number in [0, 1)")
        if self.attention not in ATTENTION_BACKENDS:
            _fail("attention", self.attention, f"one of {ATTENTION_BACKENDS}")
        if self.attention_mask is None:
            object.__setattr__(self, "attention_mask", TASK_ATTENTION_MASKS[self.task])
        if self.attention_mask not in ATTENTION_MASKS:
            _fail("attention_mask", self.attention_mask, f"one of {ATTENTION_MASKS}")
        if self.task == "generate" and self.attention_mask != "causal":
            _fail("attention_mask", self.attention_mask, "'causal' for task 'generate' (a language model)")
        if self.baseline and self.task not in ("classify", "tag"):
            _fail("baseline", self.baseline, f"False for task {self.task!r}: only classify and tag have a baseline")
        if self.epochs <= 0 or self.max_train_examples < 0:
            _fail("epochs/max_train_examples", (self.epochs, self.max_train_examples), "epochs > 0, N >= 0")

    @property
    def head_spec(self) -> str:
        return self.head or self.task

    @property
    def metric_name(self) -> str:
        return self.metric or TASK_METRICS[self.task][0]

    @property
    def pgd_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.5 * self.epsilon / self.adv_steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneConfig:
        return cls(**d)


@dataclass(frozen=True)
class Source:
    """The backbone: a run's checkpoint (`run`), or "scratch" with the architecture and tokenizer of `like`"""

    run: str
    like: str | None = None
    checkpoint: str = "best"  # best | last | a checkpoint path

    def __post_init__(self) -> None:
        if (self.run == "scratch") != (self.like is not None):
            raise ConfigError(
                "--from scratch needs --like RUN (the architecture and tokenizer to use), "
                "and --like goes only with --from scratch"
            )


@dataclass(frozen=True)
class DataFiles:
    train: str
    val: str
    test: str | None = None


def finetune_train_config(n_train: int, ft: FinetuneConfig, **overrides: Any) -> TrainConfig:
    """The loop's settings for fine-tuning on `n_train` examples; every key in `overrides` wins.

    Defaults: batch 16; max_steps = ceil(epochs x steps per epoch); an evaluation and a checkpoint once per
    epoch; linear warmup over 6% of the steps then cosine decay to zero (RoBERTa, Liu et al. 2019); lr 1e-4
    for full fine-tuning and 1e-3 for a linear probe, whose only weights start from scratch; weight decay
    0.01; early stopping after 3 evaluations without improvement; the best checkpoint restored at the end.
    """
    batch, accum = overrides.get("batch_size", 16), overrides.get("grad_accum", 1)
    per_epoch = max(1, math.ceil(n_train / (batch * accum)))
    steps = overrides.get("max_steps") or max(1, math.ceil(ft.epochs * per_epoch))
    every = overrides.get("eval_every", min(per_epoch, steps))
    defaults = dict(
        max_steps=steps,
        batch_size=batch,
        lr=1e-3 if ft.freeze == "all-but-head" else 1e-4,
        min_lr_ratio=0.0,
        warmup_steps=round(0.06 * steps),
        weight_decay=0.01,
        eval_every=every,
        eval_batches=0,
        checkpoint_every=every,
        keep_last=1,
        patience=3,
        restore_best=True,
    )
    return TrainConfig(**{**defaults, **overrides})

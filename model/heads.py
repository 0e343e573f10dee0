"""Task heads: what turns the backbone's hidden states into a task's outputs, and owns that task's loss.

    batch {input_ids (B, T), attention_mask (B, T) bool, labels} -> GPT embeddings (+ embed_delta)
          -> GPT blocks + final norm -> hidden states (B, T, C) -> head.project -> outputs

Built in, each registered under a name:
  classify       sequence classification read at the last real token (GPT-1's "extract" position, Radford et
                 al. 2018): outputs (B, K); the data side appends an end-of-text token there.
  classify-mean  the same, mean-pooled over the real tokens.
  tag            token classification (NER): outputs (B, T, K); labels sit on each word's first sub-token and
                 are -100 elsewhere (Devlin et al. 2019, section 5.3).
  generate       language modelling / instruction tuning through the model's own (tied) LM head: outputs
                 (B, T, V); labels are next-token targets, -100 on the prompt and the padding.
  regress        one number per sequence, read at the last real token, trained with mean squared error.

Every head is built as `Head(config, num_labels)`, so a head is named by a string alone: a registry name, or
"module.path:ClassName" for a head the user writes in their own module - which this package never imports
itself: the command line does, when the user names it (`--head`), and hands the class over. `embed_delta` (B, T, C)
is added to the embedding output, never to the weights: adversarial training (model/adversarial.py) perturbs
the input of the blocks without moving the tied LM head. Legend: B batch, T time, C n_embd, K labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from model.config import TASKS, ConfigError, GPTConfig
from model.gpt import GPT

Batch = dict[str, torch.Tensor]


# --- reading the backbone ---------------------------------------------------------------------------------


def hidden_states(model: GPT, batch: Batch, embed_delta: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden states (B, T, C) of a padded batch, with `embed_delta` added to the embedding output."""
    idx, mask = batch["input_ids"], batch["attention_mask"]
    padding = None if bool(mask.all()) else mask  # no padding: keep the fast unmasked attention path
    pos = model.positions(idx, padding_mask=padding)
    x = model.embed(idx, pos)  # (B, T, C)
    if embed_delta is not None:
        x = x + embed_delta
    return model.backbone(x, pos, padding_mask=padding)


def last_token(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, C) at each row's last real token; right and left padding alike."""
    T = mask.shape[1]
    last = T - 1 - mask.flip(-1).int().argmax(-1)  # (B,) index of the last True
    return h[torch.arange(h.shape[0], device=h.device), last]


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, C), the mean over real tokens only."""
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


# --- the base class and the registry ---------------------------------------------------------------------


# The data a head trains on (TASKS, in model/config.py): which reader, label encoding and metrics a recipe uses.


class Head(nn.Module):
    """A task head: subclasses build their projection in __init__ and implement project, loss and predict.

    `task` (one of TASKS) tells a recipe what data the head takes; a user's head inherits "classify".
    """

    task: ClassVar[str] = "classify"

    def __init__(self, config: GPTConfig, num_labels: int) -> None:
        super().__init__()
        self.config = config
        self.num_labels = num_labels

    def forward(self, model: GPT, batch: Batch, embed_delta: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(hidden_states(model, batch, embed_delta), batch)

    def project(self, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError


HEADS: dict[str, type[Head]] = {}


def register_head(name: str) -> Callable[[type[Head]], type[Head]]:
    """Class decorator: make a head available to `get_head(name)`."""

    def add(cls: type[Head]) -> type[Head]:
        if name in HEADS:
            raise ValueError(f"head {name!r} is already registered to {HEADS[name].__qualname__}")
        HEADS[name] = cls
        return cls

    return add


def get_head(spec: str) -> type[Head]:
    """A built-in head class by its registry name ("classify"). A user's "module.path:ClassName" is not looked up
    here: importing a module runs its code, so only the person at the command line may ask for it (`--head`,
    train/cli/flags.py: import_head), and the class is then passed in by value."""
    if spec in HEADS:
        return HEADS[spec]
    if ":" in spec:
        raise ConfigError(
            f"head={spec!r} is a class from a module: it is imported only when named on the command line "
            f"(--head {spec}) or passed as a class"
        )
    raise ConfigError(f"head={spec!r} is not known: expected one of {sorted(HEADS)} or module.path:ClassName")


def check_head_class(cls: object, spec: str) -> type[Head]:
    """`cls` if it is a usable head class (a Head subclass whose task is one of TASKS); else a ConfigError."""
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise ConfigError(f"head={spec!r}: {getattr(cls, '__name__', cls)} is not a subclass of model.heads.Head")
    if cls.task not in TASKS:
        raise ConfigError(f"head={spec!r}: task={cls.task!r} is not one of {TASKS}")
    return cls


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labels that are not -100; logits (..., K), labels (...)."""
    return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten(), ignore_index=-100)


# --- built-in heads --------------------------------------------------------------------------------------


@register_head("classify")
class ClassifyHead(Head):
    """Sequence classification read at the last real token: outputs (B, K)."""

    def __init__(self, config: GPTConfig, num_labels: int) -> None:
        super().__init__(config, num_labels)
        self.score = nn.Linear(config.n_embd, num_labels)

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return last_token(h, mask)

    def project(self, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.score(self.pool(h, batch["attention_mask"]))  # (B, K)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(outputs, batch["labels"])

    def predict(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return outputs.argmax(-1)  # (B,)


@register_head("classify-mean")
class MeanClassifyHead(ClassifyHead):
    """Sequence classification over the mean of the real tokens' hidden states: outputs (B, K)."""

    def pool(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mean_pool(h, mask)


@register_head("tag")
class TagHead(Head):
    """Token classification: outputs (B, T, K); a word's label is predicted at its first sub-token."""

    task = "tag"

    def __init__(self, config: GPTConfig, num_labels: int) -> None:
        super().__init__(config, num_labels)
        self.score = nn.Linear(config.n_embd, num_labels)

    def project(self, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.score(h)  # (B, T, K)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(outputs, batch["labels"])

    def predict(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return outputs.argmax(-1)  # (B, T); train/finetune/encode.py reads them back per word


@register_head("generate")
class GenerateHead(Head):
    """Language modelling through the model's LM head (no new weights): outputs are logits (B, T, V)."""

    task = "generate"

    def forward(self, model: GPT, batch: Batch, embed_delta: torch.Tensor | None = None) -> torch.Tensor:
        return model.lm_head(hidden_states(model, batch, embed_delta))

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return cross_entropy(outputs, batch["labels"])  # labels: next tokens, -100 on prompt and padding

    def predict(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return outputs.argmax(-1)  # (B, T) greedy next tokens


@register_head("regress")
class RegressHead(Head):
    """One number per sequence, read at the last real token and trained with mean squared error."""

    task = "regress"

    def __init__(self, config: GPTConfig, num_labels: int = 1) -> None:
        super().__init__(config, 1)
        self.score = nn.Linear(config.n_embd, 1)

    def project(self, h: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.score(last_token(h, batch["attention_mask"])).squeeze(-1)  # (B,)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.mse_loss(outputs.float(), batch["labels"].float())

    def predict(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return outputs


# --- the assembly ----------------------------------------------------------------------------------------


class TaskModel(nn.Module):
    """A GPT backbone with one head: forward(batch) -> (outputs, loss; None if the batch has no labels)."""

    def __init__(self, backbone: GPT, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self, batch: Batch, embed_delta: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        outputs = self.head(self.backbone, batch, embed_delta)
        loss = self.head.loss(outputs, batch) if "labels" in batch else None
        return outputs, loss

    def predict(self, batch: Batch) -> torch.Tensor:
        outputs, _ = self(batch)
        return self.head.predict(outputs, batch)

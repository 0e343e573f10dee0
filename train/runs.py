"""The one run loader: open a run directory, pick a checkpoint, rebuild the model and its tokenizer, check hashes.

Every command that reads a run goes through here - sample, finetune (its backbone), evaluate, predict, prompt,
sweep - so "which checkpoint", "does the tokenizer match" and "is this the right kind of run" have one answer:

    open_run(dir, which)        RunDir + the chosen checkpoint (best | last | a path) + the run's tokenizer
    load_language_model(...)    a GPT that can score and generate text (a pretraining or `--task generate` run)
    load_finetuned(...)         a TaskModel with its head, labels and FinetuneConfig (a `cgpt finetune` run)
    build_task_model(...)       a backbone + the head a FinetuneConfig names (the recipe builds with it too)

Checkpoints load with `weights_only=True` (train/runtime/checkpoint.py): nothing in a run directory runs code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.config import ConfigError, GPTConfig
from model.gpt import GPT
from model.heads import Head, TaskModel, check_head_class, get_head
from train.data.tokenizer import Tokenizer
from train.errors import CgptError
from train.finetune.config import FinetuneConfig
from train.finetune.readers import LabelSet
from train.runtime.checkpoint import load_checkpoint, load_weights, model_from_state
from train.runtime.hardware import resolve_device
from train.runtime.rundir import RunDir


@dataclass(frozen=True)
class OpenedRun:
    run: RunDir
    checkpoint: Path
    state: dict[str, Any]  # the loaded checkpoint (weights on the CPU)
    tokenizer: Tokenizer

    @property
    def finetuned(self) -> bool:
        return "head" in self.state


def open_run(run_dir: str | Path, which: str = "best") -> OpenedRun:
    """The run in `run_dir` and its checkpoint `which` (best | last | a path), with the run's tokenizer; the
    checkpoint must have been trained with that tokenizer."""
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise CgptError(f"{run.path}: run directory not found")
    path = Path(which) if which not in ("best", "last") else run.final_checkpoint(which)
    state = load_checkpoint(path)
    tokenizer = Tokenizer.load(run.tokenizer)
    if state.get("tokenizer_hash") not in (None, tokenizer.hash):
        raise CgptError(
            f"{path}: trained with tokenizer {state['tokenizer_hash']}, but {run.tokenizer} holds "
            f"{tokenizer.hash}; the run's tokenizer files do not match its checkpoint"
        )
    return OpenedRun(run, path, state, tokenizer)


def load_language_model(
    run_dir: str | Path, which: str = "best", device: str = "auto", **config_overrides: Any
) -> tuple[GPT, Tokenizer]:
    """The GPT (eval mode, on `device`) and tokenizer of a run whose model scores and generates text: a
    pretraining run, or a fine-tune with the generation head (its backbone is the LM)."""
    opened = open_run(run_dir, which)
    head = opened.state.get("head")
    if opened.finetuned and FinetuneConfig.from_dict(opened.state["finetune"]).task != "generate":
        raise CgptError(
            f"{opened.checkpoint}: a fine-tuned {head!r} run has no language-model head to score or generate "
            f"text with; use a pretraining run or a `finetune --task generate` run (`cgpt predict` reads this one)"
        )
    model = model_from_state(opened.state, opened.checkpoint, **config_overrides)
    return model.to(resolve_device(device)).eval(), opened.tokenizer


def build_task_model(
    backbone: GPT, ft: FinetuneConfig, num_labels: int, seed: int, head_class: type[Head] | None = None
) -> TaskModel:
    """The backbone with `ft`'s head: a built-in one by name, or `head_class` for a user's "module:Class" head
    (imported by whoever trusts it, never because a file names it). The head is initialised under its own
    seed, without touching the global RNG; a head whose task differs from ft.task is refused."""
    cls = get_head(ft.head_spec) if head_class is None else check_head_class(head_class, ft.head_spec)
    if cls.task != ft.task:
        raise ConfigError(f"head={ft.head_spec!r} reads {cls.task!r} data, but task={ft.task!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = cls(backbone.config, num_labels)
    return TaskModel(backbone, head)


def check_user_head(spec: str, head_class: type[Head] | None, where: str | Path) -> None:
    """A run's "module:Class" head is used only when the user named that same head (`--head`)."""
    if ":" not in spec:
        return
    if head_class is None:
        raise CgptError(
            f"{where}: the run's head {spec!r} is a class from a module, and nothing a run directory names is "
            f"imported; pass --head {spec} to import it (only for code you trust)"
        )
    named = f"{head_class.__module__}:{head_class.__qualname__}"
    if named != spec:
        raise CgptError(f"{where}: the run's head is {spec!r}, but --head names {named!r}")


@dataclass
class Finetuned:
    model: TaskModel  # in eval mode
    tokenizer: Tokenizer
    ft: FinetuneConfig
    labels: LabelSet | None
    checkpoint: Path

    @property
    def block_size(self) -> int:
        return self.model.backbone.config.block_size


def load_finetuned(
    run_dir: str | Path, which: str = "best", device: str = "auto", head_class: type[Head] | None = None
) -> Finetuned:
    """The TaskModel, tokenizer and settings of a `cgpt finetune` run, from its directory alone. A run whose head
    is a user's "module:Class" needs that class passed in (`head_class`, imported by the caller): a run
    directory from a stranger must not get code imported."""
    opened = open_run(run_dir, which)
    state, path = opened.state, opened.checkpoint
    if not opened.finetuned or "finetune" not in state:
        raise CgptError(f"{path}: not a fine-tuned checkpoint (no head); pass a run made by `cgpt finetune`")
    # runs from before --attention-mask were causal: take the mask the backbone was built with
    ft = FinetuneConfig.from_dict(
        {"attention_mask": state["model_config"].get("attention_mask", "causal"), **state["finetune"]}
    )
    check_user_head(ft.head_spec, head_class, path)
    labels = None if state["labels"] is None else LabelSet(tuple(state["labels"]))
    backbone = GPT(GPTConfig.from_dict(state["model_config"]))
    model = build_task_model(backbone, ft, state["num_labels"], seed=0, head_class=head_class)
    load_weights(model, state["model"], path)
    return Finetuned(model.to(resolve_device(device)).eval(), opened.tokenizer, ft, labels, path)

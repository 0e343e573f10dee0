"""Fine-tuning recipe: a pretrained backbone + a task head -> the shared training loop (train/loop.py).

As in GPT-1 (Radford et al. 2018), the whole pretrained transformer is trained further on labelled data, with
a small head on its hidden states (model/heads.py); the recipe only builds things, and the loop that pretrains
runs it - accumulation, clipping, the schedule, evaluation, early stopping, checkpoints and exact resume are
the loop's. What the recipe adds:
  - the backbone from a pretraining run's checkpoint, or the same architecture from random initialisation
    (`Source("scratch", like=RUN)`), so the value of pretraining can be measured with everything else equal;
  - freezing and layer-wise learning-rate decay (train/finetune/freezing.py), as the loop's parameter groups;
  - adversarial training on the embedding output (Miyato et al. 2017: FGM; Madry et al. 2018: PGD): each
    micro-batch adds the loss at the worst-case perturbed embeddings to the clean loss; the logged loss is
    the clean one;
  - the validation metric of the task (accuracy, entity F1, loss, MSE) for the best checkpoint and early
    stopping, and after training the best weights scored on the validation and test files
    (train/finetune/scoring.py).

The run directory holds everything `cgpt evaluate` and `cgpt predict` need: config.json, tokenizer/,
labels.json, checkpoints whose extras name the head, task, labels and configs; summary.json (the loop's
figures + "best_val_metric", "val", "test" in the form of `cgpt evaluate --json`), report_{val,test}.json and,
with matplotlib, confusion_{val,test}.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import GPT, GPTConfig, flops_per_token
from model.adversarial import adversarial_loss
from model.heads import Batch, Head
from train.data.tokenizer import Tokenizer
from train.errors import CgptError
from train.finetune.baseline import baseline
from train.finetune.config import (
    EVAL_BATCH_SIZE,
    METRIC_MODES,
    DataFiles,
    FinetuneConfig,
    Source,
    finetune_train_config,
)
from train.finetune.encode import ExampleBatches
from train.finetune.freezing import freeze, layer_scales
from train.finetune.metrics import confusion_matrix, plot_confusion_matrix, save_report
from train.finetune.scoring import describe, scalars, score
from train.finetune.splits import FinetuneData, read_data
from train.loop import Trainer
from train.recipe import Task, TrainConfig, resumed_train_config
from train.runs import build_task_model, check_user_head, open_run
from train.runtime.checkpoint import model_from_state
from train.runtime.distributed import launched_by_torchrun
from train.runtime.hardware import autocast
from train.runtime.optim import param_groups
from train.runtime.rundir import RunDir

# --- what the recipe builds ---------------------------------------------------------------------------------


def load_source(source: Source, ft: FinetuneConfig, seed: int) -> tuple[GPT, Tokenizer, str]:
    """(backbone, tokenizer, checkpoint path): the run's weights, or its architecture initialised from `seed`.
    The backbone takes ft's dropout, attention backend and attention mask."""
    opened = open_run(source.like if source.run == "scratch" else source.run, source.checkpoint)
    state, path, tokenizer = opened.state, opened.checkpoint, opened.tokenizer
    if opened.finetuned:
        raise CgptError(f"{path}: a fine-tuned checkpoint; start from a pretraining run")
    overrides = {"dropout": ft.dropout, "attention": ft.attention, "attention_mask": ft.attention_mask}
    if source.run == "scratch":
        model = GPT(GPTConfig.from_dict({**state["model_config"], **overrides}), torch.Generator().manual_seed(seed))
    else:
        model = model_from_state(state, path, **overrides)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise CgptError(
            f"{opened.run.tokenizer}: {tokenizer.vocab_size} tokens, more than the model's vocab_size "
            f"{model.config.vocab_size}"
        )
    return model, tokenizer, str(path)


class FinetuneTask(Task):
    """A TaskModel trained on shuffled batches of the training split, scored on the validation split."""

    def __init__(
        self,
        backbone: GPT,
        tokenizer: Tokenizer,
        ft: FinetuneConfig,
        data: FinetuneData,
        train: TrainConfig,
        head_class: type[Head] | None = None,
    ) -> None:
        self.ft, self.data, self.train, self.tokenizer = ft, data, train, tokenizer
        self.metric, self.metric_mode = ft.metric_name, METRIC_MODES[ft.metric_name]
        if data.labels is not None:
            self.num_labels = len(data.labels)
        else:  # the regression head has one output; the generation head reads the vocabulary
            self.num_labels = 1 if ft.task == "regress" else backbone.config.vocab_size
        self.model = build_task_model(backbone, ft, self.num_labels, train.seed, head_class)
        self.frozen = freeze(self.model, ft.freeze, backbone.config.n_layer)
        self.batches = ExampleBatches(data.train.encoded, train.batch_size, train.seed, tokenizer.pad_id)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        n_layer = self.model.backbone.config.n_layer
        scales = layer_scales(self.model, self.ft.layer_decay, n_layer) if self.ft.layer_decay < 1 else None
        groups = param_groups(self.model, weight_decay, scales)
        if not groups:
            raise CgptError(
                f"freeze={self.ft.freeze!r} leaves nothing to train: head {self.ft.head_spec!r} "
                "has no weights of its own"
            )
        return groups

    def next_batch(self, device: torch.device) -> Batch:
        return {k: v.to(device) for k, v in next(self.batches).items()}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        _, loss = model(batch)
        return loss

    def micro_step(self, model: nn.Module, batch: Batch, scale: float) -> torch.Tensor:
        """Clean loss, plus under adversarial training the loss at the perturbed embedding output."""
        loss, ft = self.loss(model, batch), self.ft
        total = loss
        if ft.adversarial != "none":
            kind, eps, alpha, steps = ft.adversarial, ft.epsilon, ft.pgd_alpha, ft.adv_steps
            total = loss + adversarial_loss(self.model, batch, kind, eps, alpha, steps, forward=model)
        (total * scale).backward()
        return loss.detach()

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        return scalars(score(model, self.data.val, device, EVAL_BATCH_SIZE, self.train.eval_batches).metrics)

    def tokens_in(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())

    def flops_per_token(self) -> float:
        return flops_per_token(self.model.backbone.config)

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.load_state_dict(state["batches"])

    def checkpoint_extra(self) -> dict[str, Any]:
        labels = None if self.data.labels is None else list(self.data.labels.names)
        return {
            "model_config": self.model.backbone.config.to_dict(),
            "tokenizer_hash": self.tokenizer.hash,
            "data_hash": self.data.hash,
            "head": self.ft.head_spec,  # ("task" is the loop's key: the data order; ft holds the task kind)
            "labels": labels,
            "num_labels": self.num_labels,
            "finetune": self.ft.to_dict(),
        }


# --- the run ------------------------------------------------------------------------------------------------


def _resumed(
    run: RunDir, source: Source | None, files: DataFiles | None, ft: FinetuneConfig | None
) -> tuple[dict[str, Any], Source, DataFiles, FinetuneConfig]:
    """The saved run's settings; any given again must be the run's own (a differing one is refused, naming it)."""
    saved = run.saved_config("finetune")
    own = Source(**saved["source"]), DataFiles(**saved["data"]["files"]), FinetuneConfig.from_dict(saved["finetune"])
    for given, theirs in zip((source, files, ft), own, strict=True):
        if given is not None and _absolute(given) != _absolute(theirs):
            raise CgptError(f"{run.config}: the run was made with {theirs}, not {given}; a resumed run keeps them")
    return saved, *own


def _absolute(x: Any) -> Any:
    """DataFiles with absolute paths (a run resumed from another directory must find its files); else x."""
    if not isinstance(x, DataFiles):
        return x
    return DataFiles(*(None if p is None else os.path.abspath(p) for p in dataclasses.astuple(x)))


def _resolved(source: Source, origin: str, files: DataFiles, task: FinetuneTask, backend: str) -> dict[str, Any]:
    data = task.data
    splits = {"train": data.train, "val": data.val, "test": data.test}
    return {
        "command": "finetune",
        "source": dataclasses.asdict(source),
        "origin": origin,
        "model": task.model.backbone.config.to_dict(),
        "finetune": task.ft.to_dict(),
        "train": dataclasses.asdict(task.train),
        "data": {
            "files": dataclasses.asdict(files),
            "tokenizer_hash": task.tokenizer.hash,
            "data_hash": data.hash,
            "examples": {k: len(s.encoded) for k, s in splits.items() if s is not None},
            "truncated": {k: s.truncated for k, s in splits.items() if s is not None},
        },
        "labels": None if data.labels is None else list(data.labels.names),
        "frozen": task.frozen,
        "attention_backend": backend,
    }


def final_report(
    run: RunDir, trainer: Trainer, task: FinetuneTask, summary: dict[str, Any], log: Any = print
) -> dict[str, Any]:
    """Score the (restored best) model on val and test; write reports, confusion matrices and summary.json."""
    model, labels = task.model.eval(), task.data.labels
    results: dict[str, Any] = {"val": None, "test": None}
    for name, split in (("val", task.data.val), ("test", task.data.test)):
        if split is None:
            continue
        with autocast(trainer.device, trainer.dtype):
            scores = score(model, split, trainer.device, EVAL_BATCH_SIZE)
        results[name] = scores.metrics
        save_report(scores.metrics, run.path / f"report_{name}.json")
        if labels is not None and scores.true:
            matrix = confusion_matrix(scores.true, scores.pred, len(labels))
            plot_confusion_matrix(matrix, labels.names, run.path / f"confusion_{name}.png")
        log(describe(scores.metrics, f"{name} ({split.path})"))
    summary = {**summary, "best_val_metric": summary["best_metric"], **results}
    if task.ft.baseline:
        summary["baseline"] = _baseline(task, results, log)
    run.write_json(run.summary, summary)
    return summary


def _baseline(task: FinetuneTask, results: dict[str, Any], log: Any) -> dict[str, Any]:
    """The task's trivial baseline on the same files, printed beside the model's scores."""
    data, metric = task.data, "accuracy" if task.ft.task == "classify" else "f1"
    evals = {name: split.examples for name, split in (("val", data.val), ("test", data.test)) if split is not None}
    report = baseline(task.ft.task, data.train.examples, evals, data.labels)
    for name in evals:
        if name in report and results.get(name):
            log(
                f"{name} {metric}: model {results[name][metric]:.4f}, baseline {report[name][metric]:.4f} "
                f"({report['name']})"
            )
    return report


def _announce(task: FinetuneTask, trainer: Trainer, origin: str, backend: str, log: Any) -> None:
    ft, train, data, config = task.ft, task.train, task.data, task.model.backbone.config
    log(json.dumps({"finetune": ft.to_dict(), "train": dataclasses.asdict(train)}, separators=(",", ":")))
    trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    log(
        f"from {origin}: {task.model.backbone.num_params():,} backbone parameters, {trainable:,} trainable "
        f"(freeze {ft.freeze}); {len(data.train.encoded)} training examples, {train.max_steps} steps of "
        f"{train.batch_size * train.grad_accum}; attention {backend}; device {trainer.device}"
    )
    for split in (data.train, data.val, data.test):
        if split is not None and split.truncated:
            log(f"{split.describe(config.block_size)} (--strict makes this an error)")


def finetune(
    out_dir: str | Path,
    source: Source | None = None,
    files: DataFiles | None = None,
    ft: FinetuneConfig | None = None,
    train_overrides: dict[str, Any] | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    log: Any = print,
    head_class: type[Head] | None = None,
) -> dict[str, Any]:
    """Fine-tune into `out_dir`; returns summary.json's contents.

    `train_overrides` are TrainConfig fields that replace the fine-tuning defaults (finetune_train_config).
    With `resume`, source, files and ft come from the run's config.json (given again, they must be the run's),
    and the overrides apply to its saved TrainConfig as train.recipe.resumed_train_config allows; the weights
    come from the last checkpoint. `head_class` is the class of a user's "module:Class" head (ft.head), imported
    by the caller."""
    run, overrides = RunDir(out_dir), dict(train_overrides or {})
    if launched_by_torchrun():
        raise CgptError("fine-tuning runs in one process; start it without torchrun")
    if run.holds_run() and not (resume or force):
        raise CgptError(f"{run.path}: already holds a run; pass --resume to continue it or --force to overwrite it")
    saved = None
    if resume:
        saved, source, files, ft = _resumed(run, source, files, ft)
        origin = saved["origin"]
        backbone, tokenizer = GPT(GPTConfig.from_dict(saved["model"])), Tokenizer.load(run.tokenizer)
    elif source is None or files is None or ft is None:
        raise ValueError("a new fine-tuning run needs a source, data files and a FinetuneConfig")
    else:
        files = _absolute(files)
        backbone, tokenizer, origin = load_source(source, ft, overrides.get("seed", TrainConfig.seed))
    data = read_data(ft, files, tokenizer, backbone.config.block_size)
    if saved is not None:
        train = resumed_train_config(TrainConfig(**saved["train"]), overrides)
    else:
        train = finetune_train_config(len(data.train.encoded), ft, **overrides)
    check_user_head(ft.head_spec, head_class, run.path)
    task = FinetuneTask(backbone, tokenizer, ft, data, train, head_class)
    trainer = Trainer(task, train, run, None, progress)
    backend, _ = backbone.attention_backend(trainer.device)
    run.prepare(resume, force)  # takes the run's lock: a second process on this run stops here
    try:
        if force and not resume:  # what prepare does not know to clear: the last run's reports
            for stale in [run.path / "labels.json", *run.path.glob("report_*.json"), *run.path.glob("confusion_*.png")]:
                stale.unlink(missing_ok=True)
        if saved is None:
            run.write_json(run.config, _resolved(source, origin, files, task, backend))
            tokenizer.save(run.tokenizer)
            if data.labels is not None:
                data.labels.save(run.path / "labels.json")
        else:  # the run's own record, with what a resume may change
            run.write_json(run.config, {**saved, "train": dataclasses.asdict(train)})
        _announce(task, trainer, origin, backend, log)
        return final_report(run, trainer, task, trainer.fit(resume=resume), log)
    finally:
        run.unlock()

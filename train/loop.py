"""THE training loop, shared by pretraining and fine-tuning (one loop, many recipes).

A recipe hands the loop a `Task` and a `TrainConfig` (train/recipe.py): the model to train, where micro-batches
come from, how a micro-batch turns into a loss (and gradients), and how to evaluate. The loop owns everything
else: seeding, gradient accumulation, autocast, clipping, the optimizer and LR schedule, evaluation every K
steps, metrics.jsonl, the progress bar, atomic checkpoints with every RNG state, exact resume, early stopping,
and the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from train.errors import CgptError
from train.recipe import Task, TrainConfig
from train.runtime import distributed as D
from train.runtime.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from train.runtime.hardware import autocast, peak_flops, resolve_device, resolve_dtype
from train.runtime.optim import build_optimizer, lr_at, set_lr
from train.runtime.rundir import RunDir


@dataclass
class LoopState:
    step: int = 0
    tokens: int = 0
    best: float | None = None
    bad_evals: int = 0
    train_s: float = 0.0  # time spent in training steps, summed over resumes (evaluation excluded)
    wall_s: float = 0.0  # everything: steps, evaluation, checkpoints
    train_loss: float | None = None
    stopped_early: bool = False
    last: dict[str, Any] = dataclasses.field(default_factory=dict)  # the latest evaluation results


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


class Trainer:
    """Runs a Task under a TrainConfig into a RunDir. `fit()` returns the summary dict."""

    def __init__(
        self, task: Task, config: TrainConfig, run: RunDir, dist: D.DistInfo | None = None, progress: bool = True
    ) -> None:
        self.task, self.cfg, self.run, self.dist = task, config, run, dist
        self.is_main = dist is None or dist.is_main
        self.world = 1 if dist is None else dist.world_size
        self.device = D.device_for(dist, resolve_device(config.device))
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.progress = progress and self.is_main
        self.state = LoopState()
        self.model = task.model.to(self.device)
        self.wrapped = D.wrap(self.model, dist, self.device)
        self.optimizer = build_optimizer(
            task.param_groups(config.weight_decay),
            config.optimizer,
            config.lr,
            (config.beta1, config.beta2),
            config.momentum,
            self.device,
        )
        self.forward_model = torch.compile(self.wrapped) if config.compile else self.wrapped
        peak = config.peak_flops or peak_flops(self.device)
        self.peak = peak * self.world if peak else None

    # --- checkpoints --------------------------------------------------------------------------------------

    def save(self, path: Any) -> None:
        weights = D.full_state_dict(self.model, self.dist)  # collective under FSDP: every rank calls it
        optim = D.full_optimizer_state(self.model, self.optimizer, self.dist)
        if not self.is_main:
            return
        save_checkpoint(
            path,
            {
                "model": weights,
                "optimizer": optim,
                "loop": dataclasses.asdict(self.state),
                "rng": capture_rng(),
                "task": self.task.state_dict(),
                "train_config": dataclasses.asdict(self.cfg),
                **self.task.checkpoint_extra(),
            },
        )

    def _latest_loadable(self) -> tuple[Any, dict[str, Any]] | None:
        """(path, checkpoint) of the newest step checkpoint that loads; a damaged newer one (a truncated file, a
        disk that filled up) is skipped with a one-line warning naming both."""
        found = [p for _, p in reversed(self.run.step_checkpoints())]
        for i, path in enumerate(found):
            try:
                return path, load_checkpoint(path, map_location="cpu")
            except CgptError as err:
                fallback = found[i + 1] if i + 1 < len(found) else "step 0"
                print(f"warning: {err}; resuming from {fallback} instead", file=sys.stderr)
        return None

    def resume(self) -> None:
        latest = self._latest_loadable()
        if latest is None:  # killed before its first checkpoint: start again from step 0
            if self.is_main:
                self.run.truncate_metrics(after_step=0)
            return
        path, ckpt = latest
        for key, value in self.task.checkpoint_extra().items():
            if key.endswith("hash") and ckpt.get(key) != value:
                raise CgptError(f"{path}: {key} {ckpt.get(key)!r} does not match this run's {value!r}")
        state = LoopState(**ckpt["loop"])
        if state.step > self.cfg.max_steps:
            raise CgptError(f"--max-steps {self.cfg.max_steps} is below step {state.step}, where {path} stopped")
        D.load_full_states(self.model, self.optimizer, ckpt["model"], ckpt["optimizer"], self.dist)
        self.state = state
        self.task.load_state_dict(ckpt["task"])
        restore_rng(ckpt["rng"])
        if self.is_main:
            self.run.truncate_metrics(after_step=self.state.step)
            print(f"resumed from {path} at step {self.state.step} ({self.state.tokens:,} tokens)")
            saved_steps = ckpt["train_config"]["max_steps"]
            if saved_steps != self.cfg.max_steps:
                c = self.cfg
                lr = lr_at(state.step, c.max_steps, c.lr, c.warmup_steps, c.min_lr_ratio, c.schedule)
                print(f"max_steps {saved_steps} -> {c.max_steps}: the {c.schedule} schedule now spans "
                      f"{c.max_steps} steps (lr {lr:.3g} at step {state.step})")  # fmt: skip

    # --- one optimizer step -------------------------------------------------------------------------------

    def train_step(self) -> tuple[float, float, int]:
        """(loss, grad norm, tokens) for one optimizer step of grad_accum micro-batches."""
        cfg, total, tokens = self.cfg, torch.zeros((), device=self.device), 0
        set_lr(
            self.optimizer,
            lr_at(self.state.step, cfg.max_steps, cfg.lr, cfg.warmup_steps, cfg.min_lr_ratio, cfg.schedule),
        )
        for micro in range(cfg.grad_accum):
            batch = self.task.next_batch(self.device)
            tokens += self.task.tokens_in(batch)
            sync = micro == cfg.grad_accum - 1 or not hasattr(self.wrapped, "no_sync")
            with contextlib.nullcontext() if sync else self.wrapped.no_sync(), autocast(self.device, self.dtype):
                total += self.task.micro_step(self.forward_model, batch, 1.0 / cfg.grad_accum)
        loss = D.all_reduce_mean(total / cfg.grad_accum, self.dist).item()
        if not math.isfinite(loss):
            last = self.run.latest_checkpoint()
            raise CgptError(
                f"non-finite loss ({loss}) at step {self.state.step + 1}; stopped. Last good "
                f"checkpoint: {last if last else 'none yet'} (lower --lr or check the data)"
            )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, float(norm), tokens * self.world

    # --- evaluation ---------------------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.dtype):
            results = self.task.evaluate(self.model, self.device)
        self.model.train()
        value = results[self.task.metric]
        if _improved(value, self.state.best, self.task.metric_mode):
            self.state.best, self.state.bad_evals = value, 0
            self.save(self.run.best_checkpoint)
        else:
            self.state.bad_evals += 1
            self.state.stopped_early = 0 < self.cfg.patience <= self.state.bad_evals
        self.state.last = results
        return results

    # --- the loop -----------------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        seed_everything(self.cfg.seed + (0 if self.dist is None else self.dist.rank))  # dropout, ...
        if resume:
            self.resume()  # restores the RNG states saved with the checkpoint
        cfg, st = self.cfg, self.state
        self.model.train()
        bar = tqdm(
            total=cfg.max_steps,
            initial=st.step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc="train",
            leave=None,  # left on screen when it is the only bar, cleared when it sits below a sweep's
        )
        window = [0, 0.0]  # tokens and seconds since the last log line, for tokens/s
        while st.step < cfg.max_steps and not st.stopped_early:
            start = time.perf_counter()
            loss, norm, tokens = self.train_step()
            dt = time.perf_counter() - start
            st.step, st.tokens, st.train_s, st.train_loss = st.step + 1, st.tokens + tokens, st.train_s + dt, loss
            window = [window[0] + tokens, window[1] + dt]
            record: dict[str, Any] = {}
            if st.step % cfg.log_every == 0 or st.step == cfg.max_steps:
                record = self.train_record(loss, norm, window[0] / max(window[1], 1e-9))
                window = [0, 0.0]
            if st.step % cfg.eval_every == 0 or st.step == cfg.max_steps:
                record = {**(record or self.train_record(loss, norm, None)), **self.evaluate()}
            if record and self.is_main:
                self.run.append_metrics(record)
                bar.set_postfix(self.postfix(record), refresh=False)
            bar.update(1)
            if st.step % cfg.checkpoint_every == 0 or st.step == cfg.max_steps or st.stopped_early:
                st.wall_s += time.perf_counter() - start  # counted before saving, so it is in the checkpoint
                self.save(self.run.checkpoint_path(st.step))
                if self.is_main:
                    self.run.prune(cfg.keep_last)
            else:
                st.wall_s += time.perf_counter() - start
        bar.close()
        return self.finish()

    def train_record(self, loss: float, norm: float, tokens_per_s: float | None) -> dict[str, Any]:
        st = self.state
        return {
            "step": st.step,
            "tokens": st.tokens,
            "loss": loss,
            "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0),
            "grad_norm": norm,
            "tokens_per_s": tokens_per_s,
            "mfu": self.mfu(tokens_per_s) if tokens_per_s else None,
            "train_s": st.train_s,  # seconds in training steps so far (evaluation excluded): time to a loss
        }

    def mfu(self, tokens_per_s: float) -> float | str:
        fpt = self.task.flops_per_token()
        if not self.peak or not fpt:
            return "unknown"
        return fpt * tokens_per_s / self.peak

    def postfix(self, record: dict[str, Any]) -> dict[str, str]:
        out = {"loss": f"{record['loss']:.4f}"}
        if record.get("tokens_per_s"):
            out["tok/s"] = f"{record['tokens_per_s']:,.0f}"
        if self.task.metric in record:
            out[self.task.metric] = f"{record[self.task.metric]:.4f}"
        return out

    def finish(self) -> dict[str, Any]:
        st = self.state
        if self.cfg.restore_best and self.run.best_checkpoint.exists():
            best = load_checkpoint(self.run.best_checkpoint, map_location="cpu")
            D.load_full_states(self.model, self.optimizer, best["model"], best["optimizer"], self.dist)
        tokens_per_s = st.tokens / st.train_s if st.train_s else 0.0
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.dtype):
            final = self.task.final_metrics(self.model, self.device)
        summary = {
            "val_loss": st.last.get("val_loss"),
            "train_loss": st.train_loss,
            "tokens": st.tokens,
            "steps": st.step,
            "params": sum(p.numel() for p in self.model.parameters()),
            "wall_s": st.wall_s,
            "train_s": st.train_s,
            "tokens_per_s": tokens_per_s,
            "mfu": self.mfu(tokens_per_s) if tokens_per_s else "unknown",
            "metric": self.task.metric,
            "best_metric": st.best,
            "stopped_early": st.stopped_early,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "world_size": self.world,
            "eval": st.last,
            **final,
        }
        if self.is_main:
            self.run.write_json(self.run.summary, summary)
            self.run.plot_losses()
        return summary

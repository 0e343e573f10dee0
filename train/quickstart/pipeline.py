"""The quickstart: the whole life of a small model in one call, on a corpus every machine has (`cgpt quickstart`).

1. prepare: the Python standard library's own source files (`--input stdlib`, no download), a BPE tokenizer
   trained on them (4096 tokens: a small model should not spend its parameters on a huge embedding);
2. plan: measure this machine's training throughput and choose the compute-optimal model and token count
   for the wall-clock budget (Hoffmann et al. 2022, Approach 3 with the Besiroglu et al. 2024 constants);
3. pretrain: spend exactly that budget, with evaluation, checkpoints and a loss curve;
4. sample: stream a few lines of Python from the trained model.

Everything lands in one directory (data/, plan.json, run/), each step a function other code can call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from train.data.loader import TokenDataset
from train.data.prepare import prepare
from train.errors import CgptError
from train.planner.plan import Plan, plan_for_minutes
from train.planner.probe import make_probe
from train.pretrain import pretrain, train_config_from_plan
from train.runs import load_language_model
from train.runtime.hardware import resolve_device
from train.runtime.rundir import RunDir
from train.sample import stream_text


def prepare_stdlib(data_dir: Path, vocab_size: int, max_files: int | None) -> TokenDataset:
    if not (data_dir / "meta.json").exists():
        print(f"[1/4] prepare: Python standard library -> {data_dir} (BPE, {vocab_size} tokens)")
        summary = prepare(["stdlib"], f"train:{vocab_size}", data_dir, max_files=max_files, workers=2, progress=True)
        print(
            f"      {summary['documents']} files, {summary['train_tokens']:,} train / "
            f"{summary['val_tokens']:,} val tokens, {summary['bytes_per_token']:.2f} bytes per token"
        )
    else:
        print(f"[1/4] prepare: reusing {data_dir}")
    return TokenDataset.open(data_dir)


def plan_budget(
    minutes: float, vocab_size: int, block_size: int, device: str, out: Path, probe_seconds: float = 1.0
) -> Plan:
    print(f"[2/4] plan: probing training throughput on {device} for a {minutes:g}-minute budget ...")
    measure = make_probe(resolve_device(device), seconds=probe_seconds)
    plan = plan_for_minutes(minutes, measure, vocab_size, block_size)
    plan.to_json(out / "plan.json")
    print(
        f"      {plan.params / 1e6:.2f}M parameters ({plan.n_layer} layers x {plan.n_embd}), "
        f"{plan.tokens / 1e6:.1f}M tokens ({plan.tokens / plan.params:.0f} per parameter), "
        f"{plan.flops:.2e} FLOPs at {plan.flops_per_s:.2e} FLOP/s measured"
    )
    return plan


def quickstart(
    out: str | Path,
    minutes: float = 5.0,
    vocab_size: int = 4096,
    block_size: int = 256,
    device: str = "auto",
    force: bool = False,
    max_files: int | None = None,
    prompt: str = "def ",
    progress: bool = True,
    probe_seconds: float = 1.0,
) -> dict[str, Any]:
    """Prepare, plan, pretrain and sample; returns the pretraining summary (with the sample added)."""
    if minutes <= 0:
        raise CgptError(f"--minutes={minutes}: expected a positive number")
    out = Path(out)
    run_dir = out / "run"
    if RunDir(run_dir).holds_run() and not force:
        raise CgptError(
            f"{run_dir}: already holds a run; pass --force to train it again, or sample it with "
            f"`cgpt sample --run {run_dir}`"
        )
    out.mkdir(parents=True, exist_ok=True)
    data = prepare_stdlib(out / "data", vocab_size, max_files)
    plan = plan_budget(minutes, data.tokenizer.vocab_size, block_size, device, out, probe_seconds)
    train = train_config_from_plan(plan, device=device)
    print(f"[3/4] pretrain: {plan.steps} steps of {plan.batch_tokens:,} tokens -> {run_dir}")
    summary = pretrain(
        out / "data", run_dir, plan.model_config(), train, plan, force=force, allow_repeat=True, progress=progress
    )
    print(
        f"      val loss {summary['val_loss']:.3f} after {summary['tokens']:,} tokens in {summary['wall_s']:.0f}s "
        f"({summary['tokens_per_s']:,.0f} tokens/s)"
    )
    print(f"[4/4] sample ({prompt!r}, temperature 0.8):")
    model, tokenizer = load_language_model(run_dir, device=device)
    text = "".join(
        stream_text(
            model,
            tokenizer,
            prompt,
            120,
            0.8,
            50,
            None,
            torch.Generator(device=next(model.parameters()).device).manual_seed(0),
        )
    )
    print(prompt + text)
    return {**summary, "sample": prompt + text}

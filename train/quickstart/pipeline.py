"""The quickstart: the whole life of a small model in one call, on a corpus every machine has (`cgpt quickstart`).

Every stage calls the library functions the individual commands call, and the wall-clock budget is split
between them (`Budget`: about half for pretraining):

1. prepare   the Python standard library's own sources (no download), the files of the held-out test split
             left out; a BPE vocabulary sized for the budget (train/planner/vocab.py, Tao et al. 2024)
2. plan      measure this machine and choose the compute-optimal model for the pretraining share
3. pretrain  spend exactly that budget; print a few samples
4. finetune  two tasks derived from the same corpus (train/quickstart/tasks.py): which package a snippet comes
             from (classification) and the token type of each word (tagging), each from the pretrained model
             and from the same architecture trained from scratch
5. prompt    zero- and few-shot classification of the package task by prompting the pretrained model
6. evaluate  the pretrained model on held-out text: the test split's source files, never seen in pretraining
7. report    report.md beside the loss curve and the confusion matrices, in --out
"""

from __future__ import annotations

import json
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from train.data.corpus import stdlib_files
from train.data.prepare import prepare
from train.errors import CgptError
from train.evaluation.lm import evaluate_text
from train.evaluation.prompt import PromptConfig, prompt
from train.finetune.config import DataFiles, FinetuneConfig, Source
from train.finetune.recipe import finetune
from train.planner.plan import Plan, make_plan
from train.planner.probe import make_probe
from train.planner.timeplan import ProbeOptions, plan_minutes, record_run
from train.planner.vocab import vocab_for_flops
from train.pretrain import pretrain, train_config_from_plan
from train.quickstart.report import write_report
from train.quickstart.tasks import TaskFiles, package_task, split_of, token_task
from train.runs import load_language_model
from train.runtime.hardware import resolve_device
from train.runtime.rundir import RunDir
from train.sample import stream_text

SAMPLE_PROMPTS = ("def ", "class ", "import ")


@dataclass(frozen=True)
class Budget:
    """How `minutes` are spent, in seconds per stage; preparing, sampling and the report take the rest."""

    minutes: float

    def seconds(self, stage: str) -> float:
        share = {"pretrain": 0.5, "finetune": 0.25, "prompt": 0.06, "evaluate": 0.03}[stage]
        return 60.0 * self.minutes * share


def _say(step: int, text: str) -> None:
    print(f"[{step}/7] {text}", flush=True)


def _timed(times: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    times[stage] = time.perf_counter() - start
    return result


def prepare_stdlib(out: Path, budget: Budget, device: torch.device, block_size: int, max_files: int | None,
                   probe_seconds: float, vocab: int | None = None) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Prepare the stdlib minus its test-split files, with a vocabulary sized for the pretraining budget.
    Returns prepare's summary and the held-out test files."""
    files, root = stdlib_files()[:max_files], Path(sysconfig.get_paths()["stdlib"])
    held_out = [str(f) for f in files if split_of(f.relative_to(root)) == "test"] or [str(files[-1])]
    kept = [str(f) for f in files if str(f) not in held_out]
    flops_per_s = make_probe(device, probe_seconds)(make_plan("flops", 1e13, 512, block_size)).flops_per_s  # typical
    vocab = vocab or vocab_for_flops(flops_per_s * budget.seconds("pretrain"), block_size)
    _say(1, f"prepare: {len(kept)} stdlib files ({len(held_out)} held out for testing), BPE {vocab} tokens "
            f"(sized for {flops_per_s * budget.seconds('pretrain'):.2g} FLOPs)")  # fmt: skip
    summary = prepare(kept, f"train:{vocab}", out / "data", workers=2, progress=True, force=True)
    print(f"      {summary['train_tokens']:,} train / {summary['val_tokens']:,} val tokens, "
          f"{summary['bytes_per_token']:.2f} bytes per token")  # fmt: skip
    return summary, held_out


def plan_budget(out: Path, budget: Budget, vocab: int, block_size: int, device: torch.device,
                probe_seconds: float, val_tokens: int = 0) -> Plan:  # fmt: skip
    """The plan for the pretraining share, made as `cgpt pretrain --minutes` makes it: from the machine profile
    where it holds the shapes (train/planner/timing.py; a second quickstart on a machine probes nothing) and
    counting the run's evaluations and checkpoints in the share."""
    minutes = budget.seconds("pretrain") / 60
    _say(2, f"plan: probing training throughput on {device} for {minutes:.2g} minutes of pretraining ...")
    plan = plan_minutes(minutes, vocab, block_size, device, probe=ProbeOptions(seconds=probe_seconds),
                        final_eval_tokens=val_tokens, log=lambda text: None)  # fmt: skip
    plan.to_json(out / "plan.json")
    print(f"      {plan.params / 1e6:.2f}M parameters ({plan.n_layer} layers x {plan.n_embd}), "
          f"{plan.tokens / 1e6:.1f}M tokens ({plan.tokens / plan.params:.0f} per parameter), "
          f"{plan.flops:.2e} FLOPs at {plan.flops_per_s:.2e} FLOP/s measured")  # fmt: skip
    return plan


def pretrain_and_sample(
    out: Path, plan: Plan, device: str, progress: bool, first_prompt: str = "def "
) -> tuple[dict[str, Any], list[str]]:
    _say(3, f"pretrain: {plan.steps} steps of {plan.batch_tokens:,} tokens -> {out / 'run'}")
    train = train_config_from_plan(plan, device=device)
    summary = pretrain(out / "data", out / "run", plan.model_config(), train, plan, force=True, allow_repeat=True,
                       progress=progress)  # fmt: skip
    print(f"      val loss {summary['val_loss']:.3f}, {summary['val_bits_per_byte']:.3f} bits per byte, after "
          f"{summary['tokens']:,} tokens in {summary['wall_s']:.0f}s")  # fmt: skip
    model, tokenizer = load_language_model(out / "run", device=device)
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    prompts = (first_prompt, *(p for p in SAMPLE_PROMPTS if p != first_prompt))[:3]
    samples = [p + "".join(stream_text(model, tokenizer, p, 96, 0.8, 50, None, generator)) for p in prompts]
    for text in samples:
        print("      | " + text.replace("\n", "\n      | "))
    return summary, samples


# Fine-tuning steps run at this fraction of the pretraining tokens/s (per real token): padded batches of short
# examples, a bidirectional mask for tagging, an evaluation each quarter and checkpoints. Measured in the default
# quickstart on 2 CPU cores: 0.33 (classify) and 0.375 (tag) of the rate the step counts had assumed, whose
# stage then took 443 s of its 150.
FINETUNE_SPEED = 0.3


def finetune_tasks(out: Path, budget: Budget, tokens_per_s: float, device: str, progress: bool) -> dict[str, Any]:
    """Both tasks, each from the pretrained run and from scratch, on the same recipe and number of steps, beside
    the task's trivial baseline (train/finetune/baseline.py)."""
    seconds = budget.seconds("finetune") / 4
    tasks = {
        "package": ("classify", package_task(out / "tasks", per_class=max(20, int(seconds * 4)))),
        "tokens": ("tag", token_task(out / "tasks", sentences=max(40, int(seconds * 30)))),
    }
    results: dict[str, Any] = {}
    for name, (task, files) in tasks.items():
        rate = FINETUNE_SPEED * tokens_per_s / (16 * _mean_tokens(out, files))  # optimizer steps per second
        steps = max(10, int(seconds * rate))
        train = {"max_steps": steps, "eval_every": max(1, steps // 4), "checkpoint_every": max(1, steps // 4),
                 "lr": 1e-3, "batch_size": 16, "patience": 0, "device": device}  # fmt: skip
        ft = FinetuneConfig(task=task, text_field="text" if task == "classify" else None, baseline=True)
        result = {"labels": list(files.labels), "counts": files.counts, "steps": steps}
        for origin in ("pretrained", "scratch"):
            _say(4, f"finetune: {name} ({task}), {origin}, {steps} steps")
            source = Source(str(out / "run")) if origin == "pretrained" else Source("scratch", like=str(out / "run"))
            summary = finetune(out / f"ft-{name}-{origin}", source, DataFiles(files.train, files.val, files.test),
                               ft, train, force=True, progress=progress, log=lambda *_: None)  # fmt: skip
            result[origin] = summary["test"]
        result["baseline"] = {"name": summary["baseline"]["name"], **summary["baseline"]["test"]}
        results[name] = result
    return results


def _mean_tokens(out: Path, files: TaskFiles) -> float:
    from train.data.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(out / "data")
    rows = [json.loads(line) for line in Path(files.train).read_text().splitlines()[:200]]
    lengths = [len(tokenizer.encode(r["text"] if "text" in r else " ".join(r["tokens"]))) + 1 for r in rows]
    return sum(lengths) / len(lengths)


def prompt_package_task(out: Path, budget: Budget, labels: list[str], device: str) -> dict[str, Any]:
    """Zero- and 4-shot prompting on the package task's test split, calibrated (Zhao et al. 2021)."""
    files = out / "tasks"
    words = ",".join(f"{label}={label}" for label in labels)
    limit = max(8, int(budget.seconds("prompt") * 2))
    results = {}
    for shots in (0, 4):
        _say(5, f"prompt: the package task, {shots}-shot, {limit} examples")
        config = PromptConfig(run=str(out / "run"), data=str(files / "package_test.jsonl"),
                              template="{text}\n# from the Python package:", labels=words, shots=shots,
                              demos=str(files / "package_train.jsonl"), calibrate=True, limit=limit,
                              text_field="text", device=device, batch_size=8)  # fmt: skip
        results[f"{shots}-shot"] = prompt(config, out / f"prompt-{shots}shot", progress=False)
    return results


def quickstart(out: str | Path, minutes: float = 10.0, block_size: int = 256, device: str = "auto",
               force: bool = False, max_files: int | None = None, progress: bool = True,
               probe_seconds: float = 1.0, vocab_size: int | None = None,
               prompt: str = "def ") -> dict[str, Any]:  # fmt: skip
    """Prepare, plan, pretrain, sample, fine-tune, prompt, evaluate and report; returns the report's figures."""
    if minutes <= 0:
        raise CgptError(f"--minutes={minutes}: expected a positive number")
    out, budget, times = Path(out), Budget(minutes), {}
    if RunDir(out / "run").holds_run() and not force:
        raise CgptError(f"{out / 'run'}: already holds a run; pass --force to run the quickstart again there")
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    data, held_out = _timed(times, "prepare", lambda: prepare_stdlib(out, budget, dev, block_size, max_files,
                                                                     probe_seconds, vocab_size))  # fmt: skip
    plan = _timed(times, "plan", lambda: plan_budget(out, budget, data["vocab_size"], block_size, dev, probe_seconds,
                                                     data["val_tokens"]))  # fmt: skip
    summary, samples = _timed(times, "pretrain", lambda: pretrain_and_sample(out, plan, device, progress, prompt))
    record_run(plan, summary, dev, ProbeOptions(seconds=probe_seconds))  # the profile learns the sustained speed
    tuned = _timed(times, "finetune", lambda: finetune_tasks(out, budget, summary["tokens_per_s"], device, progress))
    prompted = _timed(times, "prompt", lambda: prompt_package_task(out, budget, tuned["package"]["labels"], device))
    _say(6, f"evaluate: the pretrained model on {len(held_out)} held-out stdlib files")
    cap = int(max(20_000, 2 * summary["tokens_per_s"] * budget.seconds("evaluate")))  # a forward is ~1/3 a step
    held = _timed(times, "evaluate", lambda: evaluate_text(out / "run", held_out, device=device, max_tokens=cap))
    figures = {"minutes": minutes, "data": data, "plan": plan.to_dict(), "pretrain": summary, "samples": samples,
               "finetune": tuned, "prompt": prompted, "held_out": held, "stage_seconds": times}  # fmt: skip
    report = write_report(out, figures)
    _say(7, f"report: {report}")
    return figures

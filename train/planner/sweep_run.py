"""Running an IsoFLOP sweep (`cgpt sweep`): every run through `train.pretrain.pretrain()`, the same call
`cgpt pretrain` makes, then the fit (train/planner/fit.py). The design is train/planner/sweep.py.

    SWEEP/sweep.json      the settings and the planned runs
    SWEEP/runs/NAME/      each run: a pretraining run directory (config, metrics, checkpoints, summary)
    SWEEP/runs.jsonl      one line per finished run: params, params_non_embedding, tokens, flops, loss, run, wall_s, ...
    SWEEP/summary.json    the fit, and its plots, once every run has finished

Resuming (`resume=True`, the same settings): runs already in runs.jsonl are skipped; a run that was interrupted
continues from its last checkpoint (pretrain's own exact resume); a run that finished but whose line was not yet
written is reopened at its last step and recorded. A line is appended in one write, so runs.jsonl never holds a
run twice, and a line cut short by a kill is cut off and its run recorded again.

Several devices: `devices` starts one worker process per device, and under torchrun every process is a worker
(the process group only coordinates; each run is a single-process `pretrain`). Workers claim runs through a lock
file per run (fcntl.flock: released by the kernel if a worker dies), so the runs spread over the devices as they
free up and none is trained twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from train.errors import CgptError
from train.planner.runsfile import append_record, read_records
from train.planner.sweep import SweepConfig, SweepRun, describe, design
from train.runtime.files import atomic_write_text

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK")


class Sweep:
    """A sweep directory: its settings, its runs, and what has finished."""

    def __init__(self, config: SweepConfig, out_dir: str | Path) -> None:
        from train.data.loader import TokenDataset

        self.config, self.out = config, Path(out_dir)
        data = TokenDataset.open(config.data)
        self.runs = design(config, data.tokenizer.vocab_size)
        self.val_tokens = min(config.val_tokens, (len(data.val) - 1) // config.block_size * config.block_size)
        if self.val_tokens < config.block_size:
            raise CgptError(f"{config.data}: the validation split holds less than one window of {config.block_size}")
        hungry = max(self.runs, key=lambda r: r.plan.tokens)
        if hungry.plan.tokens > len(data.train):
            raise CgptError(
                f"{config.data}: run {hungry.name} needs {hungry.plan.tokens:,} training tokens, the data holds "
                f"{len(data.train):,}; use smaller budgets, a smaller --span or more text (a sweep never repeats data)"
            )
        self.settings = {
            **config.to_dict(),
            "data": str(Path(config.data).resolve()),
            "tokenizer_hash": data.tokenizer.hash,
            "val_tokens": self.val_tokens,
        }
        self.file, self.records = self.out / "sweep.json", self.out / "runs.jsonl"

    def start(self, resume: bool) -> None:
        """Write sweep.json, or check it against these settings when resuming."""
        if self.file.exists():
            if not resume:
                raise CgptError(f"{self.out}: already holds a sweep; pass --resume to continue it")
            saved = {"arch": "gpt2", **json.loads(self.file.read_text())["settings"]}  # before --arch: GPT-2's
            changed = sorted(k for k in self.settings if saved.get(k) != self.settings[k])
            if changed:
                raise CgptError(f"{self.out}: --resume with other settings than the sweep's ({', '.join(changed)})")
            read_records(self.records, repair=True)  # a line cut short by a kill is cut off: its run is redone
            return
        if resume:
            raise CgptError(f"{self.out}: no sweep to resume (no sweep.json)")
        (self.out / "runs").mkdir(parents=True, exist_ok=True)
        planned = [{"run": f"runs/{r.name}", "budget": r.budget, **r.plan.to_dict()} for r in self.runs]
        atomic_write_text(self.file, json.dumps({"settings": self.settings, "runs": planned}, indent=2) + "\n")

    def finished(self) -> set[str]:
        return {str(r.get("run")) for r in read_records(self.records)}

    def todo(self) -> list[SweepRun]:
        done = self.finished()
        return [r for r in self.runs if f"runs/{r.name}" not in done]


@contextlib.contextmanager
def claim(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on `path` if no other process does; yields whether this one got it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def train_one(sweep: Sweep, run: SweepRun, device: str, progress: bool) -> dict[str, Any]:
    """Train (or resume, or reopen) one run with `pretrain()` and return its runs.jsonl record."""
    from train.pretrain import pretrain, train_config_from_plan
    from train.runtime.rundir import RunDir

    plan, out = run.plan, sweep.out / "runs" / run.name
    train = train_config_from_plan(
        plan, eval_every=plan.steps, eval_tokens=sweep.val_tokens, seed=sweep.config.seed, device=device
    )
    resume = RunDir(out).holds_run()
    s = pretrain(
        sweep.config.data, out, plan.model_config(), train, plan, resume=resume, progress=progress, log=lambda *_: None
    )
    return {
        "run": f"runs/{run.name}",
        "budget": run.budget,
        "params": plan.params,
        "params_non_embedding": run.params_non_embedding,
        "tokens": s["tokens"],
        "flops": float(s["tokens"] * run.flops_per_token),  # model.flops.flops_per_token: the head counted
        "flops_6nd": 6.0 * plan.params * s["tokens"],
        "flops_per_token": run.flops_per_token,
        "loss": s["val_loss"],  # on the first val_tokens tokens of the validation split
        "val_tokens": sweep.val_tokens,
        "train_loss": s["train_loss"],
        "steps": s["steps"],
        "batch_tokens": plan.batch_tokens,
        "lr": plan.lr,
        "n_layer": plan.n_layer,
        "n_embd": plan.n_embd,
        "n_head": plan.n_head,
        "seed": sweep.config.seed,
        "wall_s": s["wall_s"],
        "device": s["device"],
    }


def _bar(sweep: Sweep, progress: bool) -> tqdm:
    """The sweep's bar: FLOPs done of the whole sweep (so its ETA weighs big runs right), runs done in its label."""
    done = sweep.finished()
    return tqdm(
        total=sum(r.flops for r in sweep.runs),
        initial=sum(r.flops for r in sweep.runs if f"runs/{r.name}" in done),
        unit="FLOP",
        unit_scale=True,
        desc=f"sweep {len(done)}/{len(sweep.runs)} runs",
        disable=not progress,
        dynamic_ncols=True,
        position=0,
    )


def _advance(sweep: Sweep, bar: tqdm) -> None:
    done = sweep.finished()
    bar.set_description(f"sweep {len(done)}/{len(sweep.runs)} runs")
    bar.update(sum(r.flops for r in sweep.runs if f"runs/{r.name}" in done) - bar.n)


def work(sweep: Sweep, device: str, progress: bool = True, log: Callable[[str], None] = print) -> None:
    """Train every unfinished run no other worker holds, appending each record as it finishes."""
    bar = _bar(sweep, progress)
    for run in sweep.todo():
        with claim(sweep.out / "runs" / f"{run.name}.lock") as mine:
            if not mine or f"runs/{run.name}" in sweep.finished():
                continue
            record = train_one(sweep, run, device, progress)
            append_record(sweep.records, record)
        _advance(sweep, bar)
        (bar.write if progress else log)(
            f"{run.name}: loss {record['loss']:.4f} after {record['tokens']:,} tokens ({record['wall_s']:.0f} s)"
        )
    bar.close()


def _worker(config: SweepConfig, out: str, device: str, threads: int) -> None:
    """A process started by `devices`: its own torch threads and device; a line per finished run, no bars."""
    import torch

    torch.set_num_threads(threads)
    work(Sweep(config, out), device, progress=False, log=lambda line: print(f"[{device}] {line}", flush=True))


def _spread(sweep: Sweep, devices: list[str], progress: bool) -> None:
    """One worker process per device (spawned: a fresh interpreter, as CUDA needs); CPU workers share the cores.
    This process shows the sweep's bar, following runs.jsonl."""
    cpu_workers = sum(d == "cpu" for d in devices) or 1
    threads = max(1, (os.cpu_count() or 1) // cpu_workers)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker, args=(sweep.config, str(sweep.out), d, threads)) for d in devices]
    for p in procs:
        p.start()
    bar = _bar(sweep, progress)
    while alive := [p.sentinel for p in procs if p.is_alive()]:
        wait(alive, timeout=2.0)
        _advance(sweep, bar)
    bar.close()
    failed = [f"{d} (exit {p.exitcode})" for d, p in zip(devices, procs, strict=True) if p.exitcode]
    if failed:
        raise CgptError(f"{sweep.out}: worker(s) on {', '.join(failed)} failed; see above, then rerun with --resume")


def _torchrun() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when torchrun started this process; its variables are then removed, so
    that each run's `pretrain()` trains alone instead of joining a data-parallel group."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    ranks = (int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    for name in TORCHRUN_VARS:
        os.environ.pop(name, None)
    return ranks


def run_sweep(
    config: SweepConfig,
    out_dir: str | Path,
    resume: bool = False,
    device: str = "auto",
    devices: list[str] | None = None,
    bootstrap: int = 1000,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any] | None:
    """Run (or resume) the sweep, then fit it; the fit summary (None on a torchrun rank other than 0, or when the
    runs are too few to fit)."""
    from train.planner.fitreport import fit_files, format_fit

    ranks = _torchrun()
    if ranks is None:
        sweep = Sweep(config, out_dir)
        sweep.start(resume)
        done = len(sweep.runs) - len(sweep.todo())
        head = f"sweep: {len(sweep.runs)} runs ({done} done), validation on the first {sweep.val_tokens:,} tokens"
        log("\n".join([head, *describe(sweep.runs)]))
        if devices:
            _spread(sweep, devices, progress)
        else:
            work(sweep, device, progress, log)
    else:
        sweep = _torchrun_work(config, out_dir, resume, device, ranks, progress, log)
        if sweep is None:
            return None
    missing = sweep.todo()
    if missing:
        raise CgptError(f"{sweep.out}: {len(missing)} run(s) unfinished; rerun with --resume")
    try:
        summary = fit_files([sweep.records], sweep.out, bootstrap=bootstrap)
    except CgptError as err:  # too few runs to fit (one budget, say): the runs stand, `cgpt fit` can join sweeps
        log(f"no fit: {err}")
        return None
    log(format_fit(summary))
    log(f"wrote {sweep.out / 'summary.json'}" + "".join(f", {p}" for p in summary.get("plots", [])))
    return summary


def _torchrun_work(
    config: SweepConfig,
    out_dir: str | Path,
    resume: bool,
    device: str,
    ranks: tuple[int, int, int],
    progress: bool,
    log: Callable[[str], None],
) -> Sweep | None:
    """Every torchrun process is a worker; rank 0 starts the sweep first and fits it once all are done."""
    import torch
    import torch.distributed as dist

    rank, world, local = ranks
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(days=30))  # barriers only
    try:
        error = [None]
        sweep = Sweep(config, out_dir)
        if rank == 0:
            try:
                sweep.start(resume)
            except CgptError as err:
                error = [str(err)]
        dist.broadcast_object_list(error, src=0)
        if error[0]:
            raise CgptError(error[0])
        if device == "auto":
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        work(sweep, device, progress and rank == 0, log if rank == 0 else lambda *_: None)
        dist.barrier()
        return sweep if rank == 0 else None
    finally:
        dist.destroy_process_group()

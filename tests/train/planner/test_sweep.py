"""IsoFLOP sweeps (train/planner/sweep.py, sweep_run.py): each run spends its budget, sizes surround the law's
optimum, and a sweep killed part-way - by an exception inside a run, by SIGKILL, mid-append - resumes with no run
repeated and none lost; several workers share the runs.

The tiny sweeps here train char-level models of 15k-160k parameters on a repetitive corpus with block size 16,
centred by a law written as a fit's summary.json (N_opt = 2 sqrt(C / 6)) so that 2.4e9 FLOPs already span three
shapes; each run is ~200-300 steps."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import train.pretrain
from tests.paths import REPO
from train import cli
from train.data.prepare import prepare
from train.errors import CgptError
from train.loop import Trainer
from train.planner import scaling, shapes
from train.planner.sweep import SweepConfig, design
from train.planner.sweep_run import run_sweep
from train.pretrain import train_config_from_plan

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(3000))
KEYS = {"params", "params_non_embedding", "tokens", "flops", "loss", "run", "wall_s"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sweep")
    (root / "corpus.txt").write_text(TEXT)
    prepare([str(root / "corpus.txt")], "char", root / "data")
    law = {"E": 1.0, "A": 2.0, "B": 1.0, "alpha": 0.5, "beta": 0.5, "params": "total"}
    (root / "law.json").write_text(json.dumps({**law, "fit_range": {"params": [1e4, 1e5], "tokens": [1e3, 1e5]}}))
    config = dict(sizes=3, span=3.0, block_size=16, val_tokens=4096, constants=str(root / "law.json"))
    return {"root": root, "data": str(root / "data"), "config": config}


def _config(setup: dict[str, Any], budgets: tuple[float, ...]) -> SweepConfig:
    return SweepConfig(data=setup["data"], budgets=budgets, **setup["config"])


def _records(sweep: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (sweep / "runs.jsonl").read_text().splitlines()]


class Steps:
    """Counts the loop's optimizer steps; raises once the count reaches `fail_at` (an interruption mid-run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> None:
        self.count, self.fail_at, original = 0, fail_at, Trainer.train_step

        def step(trainer: Trainer) -> Any:
            self.count += 1
            if self.count == self.fail_at:
                raise RuntimeError("injected interruption")
            return original(trainer)

        monkeypatch.setattr(Trainer, "train_step", step)


def _checkpoint_every_50(monkeypatch: pytest.MonkeyPatch) -> None:
    """Short runs checkpoint only at their end; here every 50 steps, so an interrupted run has one to resume."""
    monkeypatch.setattr(
        train.pretrain,
        "train_config_from_plan",
        lambda plan, **kw: train_config_from_plan(plan, checkpoint_every=50, **kw),
    )


# --- the design ----------------------------------------------------------------------------------------------


def test_each_run_spends_its_budget_with_its_own_schedule() -> None:
    config = SweepConfig(data="unused", budgets=(1e12, 3e12, 1e13), block_size=128)
    runs = design(config, vocab_size=512)
    law = scaling.load_law(config.constants).constants
    for budget in config.budgets:
        mine = [r for r in runs if r.budget == budget]
        assert len(mine) >= 4 and len({r.plan.params for r in mine}) == len(mine)
        centre = scaling.compute_optimal(budget, law)[0]
        targets = sorted(r.plan.target_params for r in mine)
        assert targets[-1] == pytest.approx(4 * centre, rel=1e-6)  # up to N_opt x span
        for r in mine:
            step = r.plan.batch_tokens * r.flops_per_token
            assert budget <= r.flops < budget + step  # tokens x FLOPs/token: C, plus less than one step
            # 6 x every parameter but the position table (the head: the tied token embedding) + attention
            p = r.plan
            positions = 128 * p.n_embd if p.positions == "learned" else 0  # rotary positions have no table
            assert r.flops_per_token == 6 * (p.params - positions) + 12 * p.n_layer * p.n_embd * 128
            train = train_config_from_plan(r.plan)
            assert train.max_steps == r.plan.steps  # the cosine spans exactly this run
            assert train.warmup_steps == shapes.warmup_steps(r.plan.steps) < r.plan.steps // 10
    assert len({r.name for r in runs}) == len(runs)


def test_bad_designs_are_one_line_errors() -> None:
    with pytest.raises(CgptError, match="only 1 distinct model") as err:
        design(SweepConfig(data="unused", budgets=(1e9,), block_size=64), vocab_size=50257)
    assert "\n" not in str(err.value)
    for bad, field in (
        (dict(budgets=()), "budgets"),
        (dict(budgets=(1e12, 1e12)), "each budget once"),
        (dict(budgets=(-1.0,)), "budgets"),
        (dict(sizes=2), "sizes=2"),
        (dict(span=1.0), "span=1.0"),
        (dict(val_tokens=10, block_size=16), "val_tokens=10"),
    ):
        with pytest.raises(CgptError, match=field):
            SweepConfig(**{"data": "unused", "budgets": (1e12,), **bad})


def test_a_sweep_that_would_repeat_data_is_refused_before_it_starts(setup: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(CgptError, match=r"run C1e11-N\d+ needs [\d,]+ training tokens, the data holds 156,") as err:
        run_sweep(_config(setup, (1e11,)), tmp_path / "sweep", progress=False, log=lambda *_: None)
    assert "\n" not in str(err.value) and not (tmp_path / "sweep").exists()


# --- running and resuming ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(setup: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A sweep interrupted inside its third run, then resumed to the end (the counts tell what ran when)."""
    out = tmp_path_factory.mktemp("finished") / "sweep"
    config = _config(setup, (2.4e9, 4.8e9))
    runs = design(config, 42)
    steps = [r.plan.steps for r in runs]
    with pytest.MonkeyPatch.context() as mp:
        _checkpoint_every_50(mp)
        first = Steps(mp, fail_at=steps[0] + steps[1] + 120)
        with pytest.raises(RuntimeError, match="injected"):
            run_sweep(config, out, bootstrap=20, progress=False, log=lambda *_: None)
        lines_before = (out / "runs.jsonl").read_text().splitlines()
        resumed = Steps(mp)
        summary = run_sweep(config, out, resume=True, bootstrap=20, progress=False, log=lambda *_: None)
    return {
        "out": out,
        "config": config,
        "runs": runs,
        "steps": steps,
        "before": lines_before,
        "first": first,
        "resumed": resumed,
        "summary": summary,
    }


def test_an_interrupted_sweep_resumes_without_repeating_or_losing_runs(finished: dict[str, Any]) -> None:
    out, runs, steps = finished["out"], finished["runs"], finished["steps"]
    assert len(finished["before"]) == 2  # two runs had finished when the third was interrupted at its step 120
    assert (out / "runs.jsonl").read_text().splitlines()[:2] == finished["before"]
    records = _records(out)
    assert sorted(r["run"] for r in records) == sorted(f"runs/{r.name}" for r in runs)  # each once
    # the interrupted run went on from its checkpoint at step 100, the others ran whole; the first two not again
    assert finished["resumed"].count == sum(steps) - steps[0] - steps[1] - 100
    for record, run in zip(records, runs, strict=True):
        assert KEYS <= set(record) and record["tokens"] == run.plan.tokens and record["steps"] == run.plan.steps
        assert run.budget <= record["flops"] < run.budget + run.plan.batch_tokens * run.flops_per_token
        assert record["flops"] == record["tokens"] * record["flops_per_token"] and np.isfinite(record["loss"])
        assert record["val_tokens"] == 4096
    assert finished["summary"]["n_runs"] == 6 and (out / "summary.json").exists()


def test_a_line_cut_short_is_recorded_again_from_its_finished_run(
    finished: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "sweep"
    shutil.copytree(finished["out"], out)
    lines = (out / "runs.jsonl").read_text().splitlines(keepends=True)
    (out / "runs.jsonl").write_text("".join(lines[:-1]) + lines[-1][:40])  # killed while appending the last line
    steps = Steps(monkeypatch)
    run_sweep(finished["config"], out, resume=True, bootstrap=0, progress=False, log=lambda *_: None)
    assert steps.count == 0  # the run had finished: reopened at its last step, not trained again
    again = _records(out)
    assert len(again) == 6 and again[-1]["loss"] == json.loads(lines[-1])["loss"]


def test_resume_is_refused_with_other_settings_and_a_sweep_is_never_overwritten(
    finished: dict[str, Any], setup: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    out = str(finished["out"])
    base = [
        "sweep",
        "--data",
        setup["data"],
        "--out",
        out,
        "--sizes",
        "3",
        "--span",
        "3",
        "--block-size",
        "16",
        "--val-tokens",
        "4096",
        "--constants",
        setup["config"]["constants"],
        "--no-progress",
    ]
    for argv, code, message in (
        (["--budgets", "2.4e9,4.8e9"], 1, "already holds a sweep; pass --resume"),
        (["--budgets", "2.4e9,9.6e9", "--resume"], 1, "other settings than the sweep's (budgets)"),
        (["--budgets", "2.4e9", "--out", out + "-none", "--resume"], 1, "no sweep to resume"),
        (["--budgets", "2.4e9,x"], 2, "--budgets"),
        (["--budgets", "2.4e9", "--sizes", "2"], 1, "sizes=2"),
    ):
        assert cli.main([*base, *argv]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not Path(out + "-none").exists()


def test_sigkill_mid_sweep_then_resume(setup: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    argv = [
        "--data",
        setup["data"],
        "--budgets",
        "4.8e9",
        "--out",
        str(out),
        "--sizes",
        "3",
        "--span",
        "3",
        "--block-size",
        "16",
        "--val-tokens",
        "4096",
        "--constants",
        setup["config"]["constants"],
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", "sweep", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "runs.jsonl").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = (out / "runs.jsonl").read_text().splitlines()
    assert 1 <= len(before) < 3, "the kill came after the sweep had finished: nothing left to resume"
    assert cli.main(["sweep", *argv, "--resume"]) == 0  # one budget: no fit (Approach 3 needs 6 runs), no error
    after = (out / "runs.jsonl").read_text().splitlines()
    assert after[: len(before)] == before and len({json.loads(line)["run"] for line in after}) == len(after) == 3


def test_runs_spread_over_several_workers(setup: dict[str, Any], tmp_path: Path) -> None:
    config = _config(setup, (4.8e9,))
    run_sweep(config, tmp_path / "sweep", devices=["cpu", "cpu"], progress=False, log=lambda *_: None)
    records = _records(tmp_path / "sweep")
    assert sorted(r["run"] for r in records) == sorted(f"runs/{r.name}" for r in design(config, 42))


@pytest.mark.slow
def test_under_torchrun_each_rank_trains_whole_runs_with_the_same_results(
    finished: dict[str, Any], setup: dict[str, Any], tmp_path: Path
) -> None:
    """Two torchrun processes share the runs (each trains alone, not data-parallel): every run once, and each
    with exactly the loss the single process got (the interrupted and resumed sweep above)."""
    argv = [
        "--data",
        setup["data"],
        "--budgets",
        "2.4e9,4.8e9",
        "--out",
        str(tmp_path / "sweep"),
        "--sizes",
        "3",
        "--span",
        "3",
        "--block-size",
        "16",
        "--val-tokens",
        "4096",
        "--constants",
        setup["config"]["constants"],
        "--bootstrap",
        "0",
        "--no-progress",
    ]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "train.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "sweep", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    records = _records(tmp_path / "sweep")
    assert len(records) == len({r["run"] for r in records}) == 6
    assert {r["run"]: r["loss"] for r in records} == {r["run"]: r["loss"] for r in _records(finished["out"])}

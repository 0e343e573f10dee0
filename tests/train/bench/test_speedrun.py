"""`cgpt bench speedrun`: the time-to-target bookkeeping, and a whole (tiny) speedrun end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.config import GPTConfig
from train.bench.speedrun import _time_to, format_report, nanogpt_baby, speedrun
from train.data.prepare import prepare
from train.planner.timeplan import ProbeOptions
from train.recipe import TrainConfig

from ..conftest import CORPUS


def test_time_to_target_is_the_first_evaluation_at_or_below_it(tmp_path: Path) -> None:
    rows = [
        {"step": 10, "train_s": 1.0, "loss": 3.0},
        {"step": 20, "train_s": 2.0, "loss": 2.5, "val_loss": 2.4},
        {"step": 30, "train_s": 3.5, "loss": 2.0, "val_loss": 1.9},
        {"step": 40, "train_s": 5.0, "loss": 1.8, "val_loss": 1.95},  # worse again: the first hit counts
        {"step": 50, "train_s": 6.0, "loss": 1.7, "val_loss": 1.7},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seconds, step, curve = _time_to(tmp_path / "m.jsonl", 1.95)
    assert (seconds, step) == (3.5, 30) and [c[0] for c in curve] == [20, 30, 40, 50]
    assert _time_to(tmp_path / "m.jsonl", 1.0)[:2] == (None, None)
    assert _time_to(tmp_path / "m.jsonl", 2.4)[:2] == (2.0, 20)  # at the target counts


def test_nanogpt_baby_is_nanogpts_readme_run() -> None:
    model, train = nanogpt_baby(65)
    assert (model.n_layer, model.n_head, model.n_embd, model.block_size, model.bias) == (4, 4, 128, 64, False)
    assert (model.mlp, model.norm, model.positions) == ("gelu", "layernorm", "learned")
    assert (train.max_steps, train.batch_size, train.lr, train.warmup_steps, train.beta2) == (2000, 12, 1e-3, 100, 0.99)
    assert train.lr * train.min_lr_ratio == pytest.approx(1e-4)


def test_a_tiny_speedrun_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "corpus.txt").write_text(CORPUS * 4)
    prepare([str(tmp_path / "corpus.txt")], "char", tmp_path / "data")
    base = GPTConfig(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=32, bias=False)
    base_train = TrainConfig(max_steps=30, batch_size=4, lr=3e-3, warmup_steps=2)
    report = speedrun(
        tmp_path / "data", tmp_path / "out", target=3.5, minutes=0.15, device="cpu",
        probe=ProbeOptions(seconds=0.05, profile=str(tmp_path / "profile.json")), evals=5, block_size=16,
        progress=False, log=lambda *_: None, baseline=(base, base_train),
    )  # fmt: skip
    assert json.loads((tmp_path / "out" / "speedrun.json").read_text()) == json.loads(json.dumps(report))
    for name in ("planned", "gpt2"):
        run = report[name]
        losses = [loss for _, _, loss in run["curve"]]
        assert len(losses) >= 5 and run["final_loss"] > 0
        if run["time_to_target_s"] is not None:  # the first evaluation at or below the target, in train seconds
            first = next(i for i, v in enumerate(losses) if v <= 3.5)
            assert run["time_to_target_s"] == run["curve"][first][1] <= run["train_s"]
    assert report["gpt2"]["steps"] == 30 and report["gpt2"]["optimizer"] == "adamw"
    m, planned_losses = report["at_gpt2_final"], [loss for _, _, loss in report["planned"]["curve"]]
    assert m["loss"] == report["gpt2"]["final_loss"] and m["gpt2_s"] == report["gpt2"]["train_s"]
    if m["planned_s"] is None:  # the planned run never came down to the baseline's final loss
        assert min(planned_losses) > m["loss"] and m["speedup"] is None
    else:  # the first evaluation at or below it, and the ratio of the two training times
        first = next(i for i, v in enumerate(planned_losses) if v <= m["loss"])
        assert m["planned_s"] == report["planned"]["curve"][first][1]
        assert m["speedup"] == pytest.approx(m["gpt2_s"] / m["planned_s"])
        assert "sooner" in format_report(report)
    assert report["command"]["wall_s"] > 0 and (tmp_path / "out" / "command" / "summary.json").exists()
    assert "time to target" in format_report(report)

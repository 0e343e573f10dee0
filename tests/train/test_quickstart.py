"""`cgpt quickstart` in miniature: every stage runs, the report holds every stage's figures and baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.cli import main


@pytest.mark.slow
def test_quickstart_end_to_end_in_miniature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--minutes", "0.2", "--max-files", "30", "--block-size", "32",
            "--no-progress", "--probe-seconds", "0.1"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert all(f"[{i}/7]" in printed for i in range(1, 8))
    figures = json.loads((out / "figures.json").read_text())
    assert set(figures["stage_seconds"]) == {"prepare", "plan", "pretrain", "finetune", "prompt", "evaluate"}
    plan, summary = json.loads((out / "plan.json").read_text()), json.loads((out / "run" / "summary.json").read_text())
    assert plan["budget"] == "minutes" and summary["tokens"] == plan["tokens"]  # exactly the planned tokens
    assert plan["vocab_size"] == figures["data"]["vocab_size"] < 4096  # sized for the budget
    for task, metric in (("package", "accuracy"), ("tokens", "f1")):
        result = figures["finetune"][task]
        assert 0 <= result["pretrained"][metric] <= 1 and 0 <= result["scratch"][metric] <= 1
        assert 0 <= result["baseline"][metric] <= 1 and result["baseline"]["name"]
    for shots in ("0-shot", "4-shot"):
        result = figures["prompt"][shots]
        assert result["chance"] == pytest.approx(1 / len(figures["finetune"]["package"]["labels"]))
        assert 0 <= result["accuracy"] <= 1 and "majority_baseline" in result and "uncalibrated" in result
    assert figures["held_out"]["bits_per_byte"] > 0 and figures["held_out"]["tokens"] > 0
    report = (out / "report.md").read_text()
    needles = ("## The plan", "from scratch", "trivial baseline", "chance", "majority class", "bits per byte", "def ")
    for needle in (*needles, "loss.png"):
        assert needle in report, needle
    assert main(args) == 1  # a second call refuses to overwrite the run
    assert "already holds a run" in capsys.readouterr().err

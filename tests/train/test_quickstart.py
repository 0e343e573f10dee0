"""`cgpt quickstart`: prepare the stdlib corpus, plan for minutes, pretrain, sample - in miniature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.cli import main


def test_quickstart_end_to_end_in_miniature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qs"
    args = [
        "quickstart",
        "--out",
        str(out),
        "--minutes",
        "0.03",
        "--max-files",
        "8",
        "--vocab-size",
        "300",
        "--block-size",
        "32",
        "--no-progress",
        "--probe-seconds",
        "0.1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[4/4] sample" in printed
    plan = json.loads((out / "plan.json").read_text())
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert plan["budget"] == "minutes" and plan["vocab_size"] == 300
    assert summary["tokens"] == plan["tokens"]  # the loop spends exactly the planned tokens
    assert (out / "run" / "checkpoints" / "best.pt").exists()
    assert main(args) == 1  # a second call refuses to overwrite the run
    assert "already holds a run" in capsys.readouterr().err

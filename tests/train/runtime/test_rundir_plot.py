"""The loss plot's smoothing: a trailing running mean, and loss.png drawn from metrics.jsonl."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from train.runtime.rundir import RunDir, running_mean


def test_running_mean_is_a_trailing_average() -> None:
    assert running_mean([1.0, 2.0, 3.0, 4.0], 2) == [1.0, 1.5, 2.5, 3.5]
    assert running_mean([5.0, 1.0], 1) == [5.0, 1.0]  # a window of 1 changes nothing
    assert running_mean([2.0] * 7, 3) == [2.0] * 7
    with pytest.raises(ValueError, match="window=0"):
        running_mean([1.0], 0)


def test_running_mean_shrinks_noise_by_the_square_root_of_the_window() -> None:
    rng = random.Random(0)
    noise = [rng.gauss(0.0, 1.0) for _ in range(20_000)]
    smooth = running_mean(noise, 16)[16:]
    # the mean of 16 independent unit-variance values has std 1/4; 20k samples pin it within a few percent
    assert statistics.pstdev(smooth) == pytest.approx(0.25, rel=0.05)


def test_loss_png_is_written_from_the_metrics(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    rows = [{"step": s, "tokens": 768 * s, "loss": 4.0 - s / 100} for s in range(1, 101)]
    rows[-1]["val_loss"] = 3.1
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run.plot_losses() == run.plot and run.plot.stat().st_size > 0

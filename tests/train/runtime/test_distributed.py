"""Data parallelism on CPU: 2 processes (gloo) follow the loss trajectory of 1 process with the same global
batch, with DDP and with FSDP2, and write one set of checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from train.data.prepare import prepare
from train.runtime.checkpoint import load_checkpoint

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(400))
COMMON = [
    "--max-steps",
    "6",
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--eval-every",
    "3",
    "--checkpoint-every",
    "3",
    "--log-every",
    "1",
    "--no-progress",
    "--eval-batches",
    "2",
    "--seed",
    "3",
    # SGD with momentum: an update is lr x (a running sum of) gradients, so two runs whose gradients differ in
    # rounding (an all-reduce sums in another order) stay that close in every weight. AdamW's first updates are
    # about lr x sign(g): rounding noise in a nearly-zero gradient entry becomes a full-size step, and a
    # per-weight comparison would test the CPU, not the parallelism. The optimizer state is sharded by FSDP
    # either way (momentum buffers here).
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
]


def _run(args: list[str], nproc: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "train.cli"]
    if nproc > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            "train.cli",
        ]
    out = subprocess.run([*launcher, "pretrain", *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path, parallel: str) -> None:
    (tmp_path / "a.txt").write_text(TEXT)
    data = tmp_path / "data"
    prepare([str(tmp_path / "a.txt")], "char", data)
    single, multi = tmp_path / "single", tmp_path / "multi"
    _run(["--data", str(data), "--out", str(single), "--batch-size", "4", *COMMON], nproc=1)
    _run(["--data", str(data), "--out", str(multi), "--batch-size", "2", "--parallel", parallel, *COMMON], nproc=2)
    a, b = _metrics(single), _metrics(multi)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b]  # throughput counts every rank's tokens
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5, abs=1e-6)
        if "val_loss" in ra:
            assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-5, abs=1e-6)
    wa = load_checkpoint(single / "checkpoints" / "step-00000006.pt")["model"]
    wb = load_checkpoint(multi / "checkpoints" / "step-00000006.pt")["model"]
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    assert json.loads((multi / "summary.json").read_text())["world_size"] == 2
    assert len(list((multi / "checkpoints").glob("step-*.pt"))) == 2  # written once, not once per rank

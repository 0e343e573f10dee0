"""Pretraining end to end on a tiny corpus: run layout, exact token horizon, exact resume after SIGKILL,
refusals that protect data, and a non-finite loss that stops cleanly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from model import preset
from model.config import ConfigError
from train.cli import main
from train.data.loader import TokenDataset
from train.data.prepare import prepare
from train.errors import CgptError
from train.pretrain import PretrainTask, pretrain
from train.recipe import TrainConfig
from train.runtime.checkpoint import load_checkpoint

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(400))
TINY = [
    "--n-layer",
    "1",
    "--n-head",
    "2",
    "--n-embd",
    "32",
    "--block-size",
    "16",
    "--batch-size",
    "4",
    "--eval-batches",
    "2",
    "--log-every",
    "1",
    "--no-progress",
    "--seed",
    "7",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "a.txt").write_text(TEXT)
    prepare([str(root / "a.txt")], "char", root / "data")
    return root / "data"


def _losses(run: Path) -> list[tuple[int, float, float | None]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r.get("val_loss")) for r in records]


def test_run_directory_describes_itself(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                "--data",
                str(data_dir),
                "--out",
                str(run),
                "--max-steps",
                "6",
                "--eval-every",
                "3",
                "--checkpoint-every",
                "3",
                *TINY,
            ]
        )
        == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    for key in ("val_loss", "train_loss", "tokens", "steps", "params", "wall_s", "tokens_per_s", "mfu"):
        assert key in summary
    assert summary["steps"] == 6 and summary["tokens"] == 6 * 4 * 16  # stops exactly at the horizon
    assert summary["mfu"] == "unknown"  # a CPU is not in the peak table: no guess
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"} <= set(records[0])
    assert records[2]["val_loss"] is not None and "val_loss" not in records[0]
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["n_layer"] == 1 and config["train"]["max_steps"] == 6
    ckpt = load_checkpoint(run / "checkpoints" / "step-00000006.pt")
    assert ckpt["loop"]["step"] == 6 and ckpt["tokenizer_hash"] == config["data"]["tokenizer_hash"]
    assert {"torch", "numpy", "python"} <= set(ckpt["rng"]) and "sampler" in ckpt["task"]
    assert (run / "checkpoints" / "best.pt").exists() and (run / "tokenizer").is_dir()


def test_warmup_then_cosine_to_a_tenth(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    main(
        [
            "pretrain",
            "--data",
            str(data_dir),
            "--out",
            str(run),
            "--max-steps",
            "10",
            "--warmup-steps",
            "2",
            "--lr",
            "1e-2",
            "--eval-every",
            "10",
            "--peak-flops",
            "1e12",
            *TINY,
        ]
    )
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    mfu = json.loads((run / "summary.json").read_text())["mfu"]  # against the given peak: a number
    assert isinstance(mfu, float) and 0 < mfu < 1
    assert lrs[0] == pytest.approx(5e-3) and lrs[1] == pytest.approx(1e-2)
    assert lrs[-1] == pytest.approx(1e-3) and all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))


def test_sigkill_then_resume_matches_an_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    args = [
        "--data",
        str(data_dir),
        "--max-steps",
        "80",
        "--eval-every",
        "10",
        "--checkpoint-every",
        "10",
        "--dropout",
        "0.1",
        *TINY,
    ]  # dropout: the torch RNG state must be restored too; 60 steps after the kill point leave time to kill
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["pretrain", "--out", str(full), *args]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", "pretrain", "--out", str(killed), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = killed / "checkpoints" / "step-00000020.pt"
    deadline = time.time() + 120
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists() and not (killed / "summary.json").exists(), "the run was not killed part-way"
    assert main(["pretrain", "--out", str(killed), "--resume", "--data", str(data_dir), "--no-progress"]) == 0
    assert _losses(killed) == _losses(full)
    a = load_checkpoint(full / "checkpoints" / "step-00000080.pt")["model"]
    b = load_checkpoint(killed / "checkpoints" / "step-00000080.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_run_is_refused_unless_resume_or_force(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    base = ["pretrain", "--data", str(data_dir), "--out", str(run), "--max-steps", "2", *TINY]
    assert main(base) == 0
    before = (run / "metrics.jsonl").read_text()
    assert main(base) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == before
    assert main([*base, "--force"]) == 0


def test_a_bidirectional_model_is_not_pretrained(data_dir: Path, tmp_path: Path) -> None:
    train = TrainConfig(max_steps=2, batch_size=4, eval_batches=1)
    model = preset("debug", vocab_size=64, block_size=16, attention_mask="bidirectional")
    with pytest.raises(ConfigError, match="a language model is pretrained causal"):
        pretrain(data_dir, tmp_path / "run", model, train, progress=False)
    assert not (tmp_path / "run" / "config.json").exists()


def test_more_tokens_than_the_data_needs_allow_repeat(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--max-steps", "2000", *TINY]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "epochs" in err and "--allow-repeat" in err and err.count("\n") == 1


def test_resume_keeps_the_runs_allow_repeat(data_dir: Path, tmp_path: Path) -> None:
    """--allow-repeat is part of the run: resuming it needs no second --allow-repeat."""
    run = tmp_path / "r"
    base = ["pretrain", "--data", str(data_dir), "--out", str(run), *TINY]
    assert main([*base, "--max-steps", "400", "--checkpoint-every", "200", "--allow-repeat"]) == 0
    assert json.loads((run / "config.json").read_text())["allow_repeat"] is True
    (run / "checkpoints" / "step-00000400.pt").unlink()  # as if killed after step 200's checkpoint
    assert main(["pretrain", "--data", str(data_dir), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert _losses(run)[-1][0] == 400


def test_missing_data_dir_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 1
    assert "meta.json" in capsys.readouterr().err


def test_an_attention_backend_that_cannot_run_is_one_line(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("kernels.triton_status", lambda: (False, "no CUDA device (test)"))
    run = tmp_path / "r"
    args = ["pretrain", "--data", str(data_dir), "--out", str(run), "--attention", "triton", "--max-steps", "2"]
    assert main([*args, *TINY]) == 1
    err = capsys.readouterr().err
    expected = "attention='triton' cannot run: no CUDA device (test); use attention='sdpa' or 'auto'"
    assert err == f"cgpt pretrain: error: {expected}\n"
    assert not run.exists()  # nothing half-made is left behind


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_loss = PretrainTask.loss
    calls = {"n": 0}

    def loss_that_explodes(self: PretrainTask, model: torch.nn.Module, batch: object) -> torch.Tensor:
        calls["n"] += 1
        loss = real_loss(self, model, batch)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(PretrainTask, "loss", loss_that_explodes)
    train = TrainConfig(max_steps=8, batch_size=4, eval_every=2, checkpoint_every=2, eval_batches=1)
    model = preset("debug", vocab_size=64, block_size=16)
    with pytest.raises(CgptError, match=r"non-finite loss \(nan\) at step 5.*step-00000004\.pt"):
        pretrain(data_dir, tmp_path / "run", model, train, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00000004.pt")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_sample_streams_text_from_a_run(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(data_dir), "--out", str(run), "--max-steps", "3", *TINY]) == 0
    capsys.readouterr()
    args = ["sample", "--run", str(run), "--prompt", "line 1", "--max-new-tokens", "12", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("line 1")  # seeded: reproducible
    assert main([*args[:-2], "--temperature", "0", "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2
    assert main(["sample", "--run", str(tmp_path / "nope"), "--prompt", "x"]) == 1
    assert "run directory not found" in capsys.readouterr().err


def test_the_function_runs_again_in_one_process_with_the_same_result(data_dir: Path, tmp_path: Path) -> None:
    """A sweep calls pretrain() dozens of times in one process: no state leaks from one run into the next,
    and a run between two identical ones (another seed, dropout on) changes nothing."""
    model = preset("debug", vocab_size=64, block_size=16, dropout=0.1)
    train = TrainConfig(max_steps=6, batch_size=4, eval_every=3, eval_batches=1, log_every=1, seed=3)
    first = pretrain(data_dir, tmp_path / "a", model, train, progress=False, log=lambda *_: None)
    pretrain(data_dir, tmp_path / "b", model, dataclasses.replace(train, seed=4), progress=False, log=lambda *_: None)
    again = pretrain(data_dir, tmp_path / "c", model, train, progress=False, log=lambda *_: None)
    assert _losses(tmp_path / "a") == _losses(tmp_path / "c") != _losses(tmp_path / "b")
    assert first["val_loss"] == again["val_loss"] and first["train_loss"] == again["train_loss"]
    weights = [load_checkpoint(tmp_path / r / "checkpoints" / "best.pt")["model"] for r in ("a", "c")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.slow
def test_compiled_training_matches_eager(data_dir: Path, tmp_path: Path) -> None:
    """--compile (torch.compile, inductor on this CPU) trains the same model: the same losses to rounding."""
    base = ["pretrain", "--data", str(data_dir), "--max-steps", "3", "--eval-every", "3", *TINY]
    assert main([*base, "--out", str(tmp_path / "eager")]) == 0
    assert main([*base, "--out", str(tmp_path / "compiled"), "--compile"]) == 0
    eager, compiled = _losses(tmp_path / "eager"), _losses(tmp_path / "compiled")
    assert [r[0] for r in eager] == [r[0] for r in compiled] == [1, 2, 3]
    for (_, a, va), (_, b, vb) in zip(eager, compiled, strict=True):
        assert a == pytest.approx(b, rel=1e-4) and (va is None) == (vb is None)
    config = json.loads((tmp_path / "compiled" / "config.json").read_text())
    assert config["train"]["compile"] is True


def test_eval_tokens_scores_the_same_windows_whatever_the_batch_size(data_dir: Path) -> None:
    """An IsoFLOP sweep's runs have different batch sizes but one validation set: eval_tokens fixes it to the
    first eval_tokens // block_size windows of the split; eval_batches counts batches, so it depends on B."""
    data, model = TokenDataset.open(data_dir), preset("debug", vocab_size=64, block_size=16)

    def val_loss(**train: Any) -> float:
        task = PretrainTask(model, data, TrainConfig(seed=3, **train))
        task.model.eval()
        with torch.no_grad():
            return task.evaluate(task.model, torch.device("cpu"))["val_loss"]

    fixed = [val_loss(batch_size=b, eval_tokens=160) for b in (2, 3, 7)]
    assert fixed[0] == pytest.approx(fixed[1], rel=1e-6) and fixed[0] == pytest.approx(fixed[2], rel=1e-6)
    x = torch.from_numpy(data.val[:161].astype("int64"))
    task = PretrainTask(model, data, TrainConfig(seed=3))
    with torch.no_grad():
        _, direct = task.model.eval()(x[:-1].view(10, 16), x[1:].view(10, 16))  # the first 10 windows
    assert fixed[0] == pytest.approx(direct.item(), rel=1e-6)
    assert val_loss(batch_size=2, eval_batches=2) != pytest.approx(val_loss(batch_size=3, eval_batches=2), rel=1e-6)
    with pytest.raises(ConfigError, match="eval_tokens"):
        TrainConfig(eval_tokens=-1)


def test_muon_trains_and_resumes_exactly(data_dir: Path, tmp_path: Path) -> None:
    """`--optimizer muon` (train/runtime/muon.py): a run cut back to its step-6 checkpoint and resumed ends where
    the uninterrupted run did, bit for bit - Muon's momentum and AdamW's moments are in the checkpoint."""
    args = ["--data", str(data_dir), "--optimizer", "muon", "--eval-every", "6", "--checkpoint-every", "6",
            "--max-steps", "12", *TINY]  # fmt: skip
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["pretrain", "--out", str(full), *args]) == 0
    ckpt = load_checkpoint(full / "checkpoints" / "step-00000012.pt")
    groups = ckpt["optimizer"]["param_groups"]
    assert [g["muon"] for g in groups].count(True) == 1 and groups[0]["lr_scale"] == 10.0
    shutil.copytree(full, cut)
    (cut / "checkpoints" / "step-00000012.pt").unlink()
    (cut / "summary.json").unlink()
    assert main(["pretrain", "--out", str(cut), "--resume", "--data", str(data_dir), "--no-progress"]) == 0
    a = ckpt["model"]
    b = load_checkpoint(cut / "checkpoints" / "step-00000012.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a) and _losses(cut) == _losses(full)
    assert _losses(full)[-1][1] < _losses(full)[0][1]  # and it learns


def test_minutes_plans_the_command_and_teaches_the_profile(data_dir: Path, tmp_path: Path) -> None:
    """`--minutes`: the plan in config.json says its dtype and the rest of the command's time; the machine
    profile (tests/conftest.py gives each test its own) holds the probed shapes and, after the run, how fast it
    really trained; a second plan from it is the same plan."""
    profile = tmp_path / "profile.json"
    args = ["pretrain", "--data", str(data_dir), "--minutes", "0.1", "--probe-seconds", "0.05", "--allow-repeat",
            "--profile", str(profile), "--no-progress"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    plan = config["plan"]
    assert plan["budget"] == "minutes" and plan["overhead_s"] > 0 and plan["dtype"] in ("float32", "bfloat16")
    assert config["train"]["dtype"] == plan["dtype"] and plan["block_size"] == 128  # MINUTES_BLOCK_SIZE
    saved = json.loads(profile.read_text())
    assert saved["shapes"] and saved["calibration"] != 1.0
    from train.planner.plan import Plan
    from train.planner.timeplan import ProbeOptions, plan_minutes

    options = ProbeOptions(profile=str(profile))
    again = [plan_minutes(0.1, plan["vocab_size"], 128, torch.device("cpu"), None, options, 20, 100, log=print)
             for _ in range(2)]  # fmt: skip
    assert again[0] == again[1] and isinstance(again[0], Plan)

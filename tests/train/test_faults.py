"""Fault injection across the commands: each class of fault a user (or a kill) can cause gets a non-zero exit, a
one-line message naming the flag or file, and leaves the run or data directory byte-identical where nothing
should change. Classes: security (nothing a run directory names is imported or unpickled), atomicity (prepare,
checkpoints), resume semantics, locking, and flag validation for every command."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.train.conftest import Files
from train.cli import main
from train.data.prepare import prepare
from train.runtime.checkpoint import load_checkpoint, save_checkpoint
from train.runtime.rundir import RunDir

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(300))
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4",
        "--eval-batches", "2", "--log-every", "1", "--no-progress", "--seed", "7"]  # fmt: skip


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too), path -> sha256: to show a failed command changed nothing."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1) -> str:
    """Run `cgpt argv`; it must exit with `code` (1: refused by the command, 2: by the flag parser) and print
    exactly one line on stderr, which is returned."""
    assert main(argv) == code, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cgpt "), err
    return err


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    (root / "a.txt").write_text(TEXT)
    prepare([str(root / "a.txt")], "char", root / "data")
    return root / "data"


@pytest.fixture
def run4(data_dir: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A finished 4-step pretraining run, and the command that made it."""
    run = tmp_path / "run"
    command = ["pretrain", "--data", str(data_dir), "--out", str(run), "--max-steps", "4", "--eval-every", "2",
               "--checkpoint-every", "2", "--warmup-steps", "1", *TINY]  # fmt: skip
    assert main(command) == 0
    return run, command


# --- security: nothing a run directory names is imported -----------------------------------------------------


def _rename_head(run: Path, spec: str) -> None:
    for path in (run / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)
        state["head"], state["finetune"]["head"] = spec, spec
        save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})


def test_a_checkpoint_naming_a_module_head_imports_nothing(
    classify_run: Path,
    files: Files,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = tmp_path / "stranger"
    subprocess.run(["cp", "-r", str(classify_run), str(run)], check=True)
    marker = tmp_path / "ran"
    (run / "helpers.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\nclass Head: pass\n")
    _rename_head(run, "helpers:Head")
    before = snapshot(run)
    monkeypatch.chdir(run)  # `cd run && cgpt predict --run .`: the run's own helpers.py sits in the working dir
    for argv in (["predict", "--run", ".", "--text", "fine"], ["evaluate", "--run", ".", "--data", files.classify.val]):
        err = fails(capsys, argv)
        assert "pass --head helpers:Head" in err
    assert not marker.exists() and "helpers" not in sys.modules and snapshot(run) == before
    _rename_head(run, "this:Head")  # the Zen of Python prints itself when `this` is imported
    fails(capsys, ["predict", "--run", ".", "--text", "fine"])
    assert "this" not in sys.modules


def test_a_pickle_is_refused_in_one_line(
    classify_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "evil"
    subprocess.run(["cp", "-r", str(classify_run), str(run)], check=True)
    payload = {"format": "chinchilla-gpt/checkpoint", "version": 1, "x": print}  # a global: code, not data
    torch.save(payload, run / "checkpoints" / "best.pt")
    err = fails(capsys, ["predict", "--run", str(run), "--text", "fine"])
    assert "best.pt: refused" in err and "weights_only" in err


# --- data loss ------------------------------------------------------------------------------------------------


def test_prepare_never_replaces_or_half_writes_its_output(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data"
    subprocess.run(["cp", "-r", str(data_dir), str(out)], check=True)
    (tmp_path / "b.txt").write_text("another text\n")
    before = snapshot(out)
    err = fails(capsys, ["prepare", "--input", str(tmp_path / "b.txt"), "--tokenizer", "char", "--out", str(out)])
    assert "already holds prepared data" in err and "--force" in err
    (tmp_path / "empty.txt").write_text("  \n\n")
    fails(
        capsys, ["prepare", "--input", str(tmp_path / "empty.txt"), "--tokenizer", "char", "--out", str(out), "--force"]
    )
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["b.txt", "data", "empty.txt"]
    fails(
        capsys,
        [
            "prepare",
            "--input",
            str(tmp_path / "empty.txt"),
            "--tokenizer",
            "char",
            "--out",
            str(tmp_path / "new" / "d"),
        ],
    )
    assert not (tmp_path / "new").exists()  # a failed prepare leaves nothing behind, not even parents
    assert (
        main(
            [
                "prepare",
                "--input",
                str(tmp_path / "b.txt"),
                "--tokenizer",
                "char",
                "--out",
                str(out),
                "--force",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads((out / "meta.json").read_text())["documents"]["total"] == 1  # replaced, on request


def test_resume_against_other_data_is_refused_before_any_write(
    run4: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, _ = run4
    (tmp_path / "other.txt").write_text("completely different characters: XYZ 0123 !?\n" * 50)
    prepare([str(tmp_path / "other.txt")], "char", tmp_path / "other")
    before = snapshot(run)
    err = fails(capsys, ["pretrain", "--data", str(tmp_path / "other"), "--out", str(run), "--resume"])
    assert "tokenizer" in err and "resume with that data" in err
    assert snapshot(run) == before


# --- resume semantics ------------------------------------------------------------------------------------------


def test_the_same_command_with_resume_appended_is_accepted(
    run4: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, command = run4
    capsys.readouterr()
    assert main([*command, "--resume"]) == 0
    assert "done: 4 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag, value, saved",
    [("--n-embd", "64", "32"), ("--lr", "0.5", "0.001"), ("--batch-size", "8", "4"), ("--flops", "1e12", "None")],
)
def test_a_differing_flag_is_refused_naming_it(
    run4: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str], flag: str, value: str, saved: str
) -> None:
    run, command = run4
    before = snapshot(run)
    err = fails(capsys, [*command, "--resume", flag, value])
    assert flag in err and value in err.replace("1000000000000.0", "1e12") and saved in err
    assert snapshot(run) == before


def test_extending_max_steps_continues_on_the_longer_schedule(
    run4: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, command = run4
    assert main(["pretrain", "--data", command[2], "--out", str(run), "--resume", "--max-steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "max_steps 4 -> 6" in out and "done: 6 steps" in out
    assert json.loads((run / "config.json").read_text())["train"]["max_steps"] == 6
    lrs = [r["lr"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["step"] > 4]
    assert len(lrs) == 2 and lrs[-1] == pytest.approx(1e-4)  # the cosine ends at min_lr at the new last step
    err = fails(capsys, ["pretrain", "--data", command[2], "--out", str(run), "--resume", "--max-steps", "3"])
    assert "--max-steps 3 is below step 6" in err


def test_resume_without_a_run_says_so(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = fails(capsys, ["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "none"), "--resume"])
    assert f"no run to resume in {tmp_path / 'none'}" in err and not (tmp_path / "none").exists()


def test_damage_a_kill_leaves_is_repaired_on_resume(
    run4: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    run, command = run4
    latest = run / "checkpoints" / "step-00000004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a truncated latest checkpoint
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "tok')  # a torn last line
    (run / "checkpoints" / ".step-00000006.pt.abc.tmp").write_bytes(b"half")  # an interrupted atomic write
    assert main([*command, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "step-00000004.pt: not a loadable checkpoint" in err and "resuming from" in err and "step-00000002.pt" in err
    assert "dropped a torn last line" in err
    assert not list((run / "checkpoints").glob(".*.tmp"))
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert steps == [1, 2, 3, 4]  # steps 3 and 4 redone once, the torn record gone
    load_checkpoint(latest)  # rewritten whole


def test_a_second_process_on_a_run_is_refused(run4: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    run, command = run4
    holder = RunDir(run)
    holder.lock()  # as the first process does for the life of its training
    try:
        before = snapshot(run)
        err = fails(capsys, [*command, "--resume", "--max-steps", "6"])
        assert f"in use by pid {os.getpid()}" in err and snapshot(run) == before
    finally:
        holder.unlock()


def test_finetune_resume_accepts_its_own_command_and_refuses_changes(
    pretrained: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ft"
    f = files.classify
    command = ["finetune", "--from", str(pretrained), "--task", "classify", "--train", f.train, "--val", f.val,
               "--out", str(out), "--max-steps", "2", "--no-progress"]  # fmt: skip
    assert main(command) == 0
    assert main([*command, "--resume"]) == 0
    before = snapshot(out)
    assert "--freeze='embeddings' differs from the run's 'none'" in fails(
        capsys, [*command, "--resume", "--freeze", "embeddings"]
    )
    assert "--val=" in fails(capsys, [*command[:8], files.tag.val, *command[9:], "--resume"])
    assert "--seed=3 differs" in fails(capsys, [*command, "--resume", "--seed", "3"])
    assert snapshot(out) == before


# --- one-line errors for every command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, says",
    [
        (["sample", "--run", "R", "--temperature", "-1"], "--temperature"),
        (["sample", "--run", "R", "--temperature", "nan"], "--temperature"),
        (["sample", "--run", "R", "--top-p", "0"], "--top-p"),
        (["sample", "--run", "R", "--top-p", "1.5"], "--top-p"),
        (["sample", "--run", "R", "--top-k", "0"], "--top-k"),
        (["sample", "--run", "R", "--max-new-tokens", "-5"], "--max-new-tokens"),
        (["sample", "--run", "R", "--num-samples", "0"], "--num-samples"),
        (["evaluate", "--run", "R", "--data", "D", "--epsilon", "-1"], "--epsilon"),
        (["evaluate", "--run", "R", "--data", "D", "--epsilon", "nan"], "--epsilon"),
        (["evaluate", "--run", "R", "--data", "D", "--typo-rate", "-0.5"], "--typo-rate"),
        (["evaluate", "--run", "R", "--data", "D", "--typo-rate", "2"], "--typo-rate"),
        (["evaluate", "--run", "R", "--data", "D", "--batch-size", "0"], "--batch-size"),
        (["predict", "--run", "R", "--text", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["plan", "--flops", "-1"], "--flops"),
        (["plan", "--flops", "1e17", "--vocab-size", "0"], "--vocab-size"),
        (["pretrain", "--data", "D", "--out", "O", "--max-steps", "1.5"], "--max-steps"),
        (["prepare", "--input", "x", "--tokenizer", "char", "--out", "O", "--workers", "two"], "--workers"),
        (["finetune", "--out", "O", "--epochs", "inf"], "--epochs"),
        (["quickstart", "--minutes", "0"], "--minutes"),
    ],
)
def test_bad_flag_values_are_one_line_errors(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert says in fails(capsys, argv, code=2)


def test_bad_config_values_are_one_line_errors(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values checked by the config dataclasses (one check per value, whichever command reads it)."""
    base = ["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "r"), *TINY]
    assert "dtype='float8'" in fails(capsys, [*base, "--dtype", "float8"])
    assert "warmup_steps=-1" in fails(capsys, [*base, "--warmup-steps", "-1"])
    assert not (tmp_path / "r").exists()


def test_bad_inputs_name_the_file(
    pretrained: Path, classify_run: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ft = ["finetune", "--from", str(pretrained), "--out", str(tmp_path / "o")]
    assert "is a directory" in fails(
        capsys, [*ft, "--task", "classify", "--train", str(tmp_path), "--val", files.classify.val]
    )
    err = fails(capsys, [*ft, "--task", "tag", "--train", files.classify.train, "--val", files.classify.val])
    assert "looks like a classification file" in err and "--task classify" in err
    assert not (tmp_path / "o").exists()
    assert "is a directory" in fails(capsys, ["evaluate", "--run", str(classify_run), "--data", str(tmp_path)])
    assert "is a directory" in fails(capsys, ["predict", "--run", str(classify_run), "--input", str(tmp_path)])
    assert "no text to predict" in fails(capsys, ["predict", "--run", str(classify_run), "--text", ""])
    assert "no language-model head" in fails(capsys, ["sample", "--run", str(classify_run)])
    (tmp_path / "a.txt").write_text("abc\n")
    (tmp_path / "b.txt").write_text("abc\nabd\n")
    prepare([str(tmp_path / "a.txt")], "char", tmp_path / "chars")
    err = fails(capsys, ["prepare", "--input", str(tmp_path / "b.txt"), "--tokenizer", str(tmp_path / "chars"),
                         "--out", str(tmp_path / "o2")])  # fmt: skip
    assert f"b.txt:2: character 'd' is not in {tmp_path / 'chars'}" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_missing_gpu_is_one_line_and_writes_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = fails(capsys, ["pretrain", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--device", "cuda", *TINY])
    assert "--device='cuda'" in err and "CUDA is not available" in err and not (tmp_path / "r").exists()


def test_a_capped_plan_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--flops", "1e40"]) == 0
    assert "more than the largest shape the planner builds" in capsys.readouterr().out


# --- SIGKILL at random points while checkpoints are written ---------------------------------------------------


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_killed_again_and_again_then_resumed_equals_an_uninterrupted_run(data_dir: Path, tmp_path: Path) -> None:
    """A checkpoint every step, so most kills land in or near a checkpoint write (seeded random times)."""
    args = ["--data", str(data_dir), "--max-steps", "60", "--eval-every", "5", "--checkpoint-every", "1",
            "--keep-last", "2", "--dropout", "0.1", *TINY]  # fmt: skip
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["pretrain", "--out", str(full), *args]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    rng, kills = random.Random(1234), 0
    for _ in range(6):
        resume = ["--resume"] if (killed / "config.json").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "train.cli", "pretrain", "--out", str(killed), *args, *resume],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        start = len(RunDir(killed).step_checkpoints()) and RunDir(killed).step_checkpoints()[-1][0]
        deadline = time.time() + 120  # wait until this process has written a checkpoint of its own, then kill
        while proc.poll() is None and time.time() < deadline:
            steps = RunDir(killed).step_checkpoints()
            if steps and steps[-1][0] > start:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the runs finished before they could be killed"
    assert main(["pretrain", "--out", str(killed), "--resume", "--data", str(data_dir), "--no-progress"]) == 0
    keep = ("step", "loss", "val_loss", "lr", "grad_norm")
    assert [{k: r.get(k) for k in keep} for r in _metrics(killed)] == [
        {k: r.get(k) for k in keep} for r in _metrics(full)
    ]
    a = load_checkpoint(full / "checkpoints" / "step-00000060.pt")["model"]
    b = load_checkpoint(killed / "checkpoints" / "step-00000060.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list((killed / "checkpoints").glob(".*.tmp"))

"""`cgpt bench compile`: our attention kernels lowered to Hopper machine code without a GPU (Triton's bundled
ptxas), every config the autotuner may launch at the benchmark's headline shape, plus the fp32 fixed config.
Compiled Triton is stricter than the interpreter, and a tile that overflows shared memory fails only at
launch on the GPU: this catches both here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.bench import compile as compile_report
from tests.paths import REPO
from train.cli import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the kernel tests run the compiled kernels")
def test_every_launchable_config_compiles_for_hopper_and_fits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compiled, not interpreted
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "train.cli", "bench", "compile", "--quick", "--jobs", "2", "--json", str(out)]
    run = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    if run.returncode != 0 and "No module named 'triton.backends.nvidia" in run.stderr:
        pytest.skip(f"this Triton cannot compile for NVIDIA GPUs: {run.stderr.splitlines()[-1]}")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert all(r["fits"] for r in rows)  # every tile fits the 227 KiB of an H100/H200 block
    half = [r for r in rows if r["dtype"] == "bfloat16" and r["kernel"] != "bwd_pre"]
    assert half and all(r["mma"] == "wgmma" for r in half), half
    default = [r for r in half if r["kernel"] != "bwd_dkdv_atomic_dq"]  # the atomic variant may spill a little
    assert all(r["spill_bytes"] == 0 for r in default), default
    kept = {k: sum(r["kernel"] == k for r in half) for k in ("fwd", "bwd_dkdv", "bwd_dq", "bwd_dkdv_atomic_dq")}
    assert kept == {"fwd": 4, "bwd_dkdv": 3, "bwd_dq": 4, "bwd_dkdv_atomic_dq": 3}  # the pruned space at D 128
    fp32 = [r for r in rows if r["dtype"] == "float32" and r["kernel"] != "bwd_pre"]
    assert len(fp32) == 4 and all((r["BLOCK_M"], r["BLOCK_N"], r["mma"]) == (32, 32, "mma") for r in fp32)
    assert "20 compiles for sm_90" in run.stdout


def test_targets_are_parsed_or_refused() -> None:
    assert compile_report.parse_target("sm_80") == ("cuda", 80, 32)
    with pytest.raises(ValueError, match="expected sm_XY"):
        compile_report.parse_target("hopper")


def test_bad_jobs_and_the_interpreter_give_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    assert main(["bench", "compile", "--jobs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cgpt bench compile: error: argument --jobs: expected a positive integer" in err
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert main(["bench", "compile", "--quick", "--target", "sm_90"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cgpt bench compile: error:") and "unset it for this report" in err

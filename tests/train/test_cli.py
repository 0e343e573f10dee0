"""The `cgpt` entry point: help, version, info, and the one-line error convention."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train.cli import main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "bench"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("cgpt ")


def test_info_json_reports_versions_device_and_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"] and info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["device"]["type"] in ("cpu", "cuda")
    backends = info["attention_backends"]
    assert backends["naive"]["usable"] and backends["sdpa"]["usable"]
    assert backends["auto"]["runs"] in ("sdpa", "triton")
    assert "reason" in backends["triton"]


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "train.cli", "info"], capture_output=True, text=True, check=True)
    assert "attn sdpa" in out.stdout


def test_bench_generate_reports_a_speedup_and_token_parity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "generate", "--new-tokens", "24", "--n-layer", "1", "--n-embd", "64"]) == 0
    out = capsys.readouterr().out
    assert "with KV cache" in out and "same tokens: True" in out


def test_bench_matmul_prints_a_peak_for_mfu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "matmul", "--n", "128", "--seconds", "0.05"]) == 0
    out = capsys.readouterr().out
    peak = float(out.split("--peak-flops ")[1].rstrip(")\n"))
    assert peak > 1e6 and "GFLOP/s" in out

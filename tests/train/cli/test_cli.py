"""The `cgpt` entry point: help, version, info, and the one-line error convention."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train.cli import COMMANDS, build_parser, main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cgpt ")


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["sample", "--run", "r", "--top-p", "1.5"], "--top-p"),
        (["sample", "--run", "r", "--temperature", "nan"], "--temperature"),
        (["pretrain", "--data", "d", "--out", "o", "--flops", "lots"], "--flops"),
        (["pretrain", "--data", "d", "--out", "o", "--lr", "nan"], "--lr"),
        (["evaluate", "--run", "r", "--data", "d", "--typo-rate", "2"], "--typo-rate"),
        (["bench", "kernels", "--modes", "fwd,sideways"], "--modes"),
        (["plan", "--flops", "1e17", "--device", "tpu"], "--device"),
        (["nosuchcommand"], "invalid choice"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and flag in err and err.startswith("cgpt")


def test_budgets_take_suffixes_in_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    """One flag type: `124M` style amounts are read the same by plan and by pretrain."""
    args = build_parser().parse_args(["pretrain", "--data", "d", "--out", "o", "--flops", "2.5B"])
    assert args.flops == 2.5e9
    assert build_parser().parse_args(["plan", "--flops", "2.5B"]).flops == 2.5e9


def test_planning_by_flops_does_not_import_torch() -> None:
    """The planner is pure arithmetic: `cgpt plan --flops` never loads torch or the model code."""
    code = (
        "import sys\n"
        "from train.cli import COMMANDS, build_parser, main\n"
        "assert main(['plan', '--flops', '1e17', '--json']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'model.gpt', 'triton') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)


def test_bench_kernels_names_every_provider_and_mode() -> None:
    """The parser lists providers and modes without importing torch; they must be the benchmark's own."""
    from kernels.bench.attention import MODES, attention_providers
    from train.cli.bench import ATTENTION_MODES, PROVIDERS

    assert ATTENTION_MODES == MODES and PROVIDERS == tuple(p.name for p in attention_providers())


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

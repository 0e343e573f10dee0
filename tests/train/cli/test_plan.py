"""`cgpt plan`, through the real `cgpt` entry point: budgets, --json, --out, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train import cli
from train.cli.flags import amount
from train.cli.plan import CONTRACT_KEYS
from train.planner import probe
from train.planner.plan import Plan


@pytest.fixture
def cgpt(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> object:
    """Run `cgpt plan ...` with only this command registered; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMANDS", {"plan": "train.cli.plan"})

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["plan", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_flops_table(cgpt) -> None:
    code, out, _ = cgpt("--flops", "1e18")
    assert code == 0
    for row in (
        "params N",
        "tokens D",
        "D / N",
        "compute C",
        "shape",
        "steps",
        "batch",
        "learning rate",
        "predicted loss",
        "est. time",
        "Chinchilla",
    ):
        assert row in out


def test_params_json(cgpt) -> None:
    code, out, _ = cgpt("--params", "124M", "--vocab-size", "50257", "--arch", "gpt2", "--json")
    d = json.loads(out)  # stdout is exactly one JSON object
    assert code == 0 and CONTRACT_KEYS <= set(d)
    assert (d["n_layer"], d["n_embd"], d["n_head"], d["params"]) == (12, 768, 12, 124_439_808)


def test_tokens_rule20_json(cgpt) -> None:
    code, out, _ = cgpt("--tokens", "2.5B", "--allocation", "rule20", "--constants", "unrounded", "--json")
    d = json.loads(out)
    assert code == 0 and d["tokens"] >= 2.5e9 and d["allocation"] == "rule20" and d["constants"] == "unrounded"
    assert 19 < d["tokens"] / d["params"] < 22


def test_out_round_trips(cgpt, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    code, out, _ = cgpt("--flops", "1e16", "--vocab-size", "256", "--block-size", "256", "--json", "--out", str(path))
    assert code == 0
    plan = Plan.from_json(path)
    assert plan.to_dict() == json.loads(out) and plan.vocab_size == 256 and plan.block_size == 256


def test_minutes(cgpt, monkeypatch: pytest.MonkeyPatch) -> None:
    # the real probe is tested in test_plan.py; here a fake one keeps the test fast
    monkeypatch.setattr(probe, "make_probe", lambda device, seconds, **kw: lambda plan: 1e9)
    code, out, err = cgpt(
        "--minutes",
        "0.1",
        "--vocab-size",
        "256",
        "--block-size",
        "64",
        "--device",
        "cpu",
        "--probe-seconds",
        "0.05",
        "--json",
    )
    d = json.loads(out)
    assert code == 0 and d["budget"] == "minutes" and d["flops_per_s"] == 1e9 and d["est_seconds"] > 0
    assert "probing" in err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--flops=-1e18"], "--flops"),
        (["--flops", "0"], "--flops"),
        (["--params", "lots"], "--params"),
        (["--tokens", "inf"], "--tokens"),
        (["--minutes", "-5"], "--minutes"),
        (["--flops", "1e18", "--params", "124M"], "--flops and --params"),
        ([], "exactly one budget"),
        (["--flops", "1e18", "--constants", "kaplan"], "--constants"),
        (["--flops", "1e18", "--allocation", "rule30"], "--allocation"),
        (["--flops", "1e18", "--vocab-size", "0"], "--vocab-size"),
        (["--flops", "1e18", "--block-size", "1.5"], "--block-size"),
        (["--minutes", "1", "--probe-seconds", "0"], "--probe-seconds"),
    ],
)
def test_bad_values_are_one_line_errors(cgpt, argv: list[str], flag: str) -> None:
    code, out, err = cgpt(*argv)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("cgpt plan: error:") and flag in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_missing_gpu_is_an_error_not_a_fallback(cgpt) -> None:
    code, _, err = cgpt("--minutes", "1", "--device", "cuda")
    assert code != 0 and "--device" in err and err.count("\n") == 1


def test_unwritable_out_is_an_error(cgpt, tmp_path: Path) -> None:
    code, _, err = cgpt("--flops", "1e15", "--out", str(tmp_path / "no" / "such" / "plan.json"))
    assert code != 0 and "--out" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e18", 1e18),
        ("124M", 124e6),
        ("2.5B", 2.5e9),
        ("1.4T", 1.4e12),
        ("10k", 1e4),
        ("1_000", 1000.0),
        ("3G", 3e9),
    ],
)
def test_amounts_take_suffixes(text: str, value: float) -> None:
    assert amount(text) == pytest.approx(value)

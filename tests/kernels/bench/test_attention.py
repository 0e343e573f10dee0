"""`cgpt bench kernels` on CPU: the correctness pass runs in the interpreter, exits 0 and writes JSON and CSV;
the FLOP formula matches hand-computed values; the correctness gate fails a wrong provider."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from kernels.bench import attention as bench
from kernels.bench import report as bench_cli
from kernels.reference import attention_reference
from train.cli import main


def test_attention_flops_by_hand() -> None:
    # fwd: 4 * B * H * T^2 * D = 4 * 2 * 3 * 128^2 * 64
    assert bench.attention_flops(2, 3, 128, 64, causal=False, mode="fwd") == 25_165_824
    assert bench.attention_flops(2, 3, 128, 64, causal=True, mode="fwd") == 12_582_912
    assert bench.attention_flops(2, 3, 128, 64, causal=False, mode="bwd") == 62_914_560
    assert bench.attention_flops(2, 3, 128, 64, causal=True, mode="fwd+bwd") == 44_040_192
    assert bench.attention_flops(1, 16, 16384, 128, causal=False, mode="fwd") == 4 * 16 * 16384**2 * 128


def test_default_shapes_hold_16k_tokens() -> None:
    sweep = [s for s in bench.default_shapes(quick=False) if s.n_head * s.head_dim == 2048]
    assert {s.seqlen for s in sweep} == {512, 1024, 2048, 4096, 8192, 16384}
    assert all(s.batch * s.seqlen == 16384 for s in sweep)
    assert any(s.n_kv_head < s.n_head for s in bench.default_shapes(quick=True))


def test_headline_shapes_come_first_so_a_budget_cut_keeps_them() -> None:
    shapes = bench.default_shapes(quick=False)
    n = sum(bench.is_headline(s) for s in shapes)
    assert n == 6 and all(bench.is_headline(s) for s in shapes[:n])
    assert {s.seqlen for s in shapes[:n]} == {512, 1024, 2048, 4096, 8192, 16384}
    assert len(set(shapes)) == len(shapes) == 2 * 2 * 2 * 6 + 2


def test_headline_rows_pair_ours_with_the_best_sdpa_backend() -> None:
    shape = bench.AttentionShape(4, 16, 16, 4096, 128, True, torch.bfloat16)
    base = {**bench.asdict(shape), "shape": shape.name, "dtype": "bfloat16", "mode": "fwd+bwd"}
    rows = [
        base | {"provider": p, "tflops": t, "speedup_vs_best_sdpa": r}
        for p, t, r in (
            ("triton", 300.0, 0.75),
            ("sdpa-flash", 400.0, 1.0),
            ("sdpa-math", 20.0, 0.05),
            ("naive", 10.0, 0.02),
        )
    ]
    rows.append(rows[0] | {"mode": "fwd", "tflops": 999.0})  # another mode: not in the headline
    other = bench.AttentionShape(4, 16, 16, 4096, 128, False, torch.bfloat16)  # not causal: not headline
    rows.append(rows[0] | {**bench.asdict(other), "shape": other.name, "dtype": "bfloat16"})
    rows.append(rows[0] | {"provider": "triton-atomic", "tflops": 360.0, "speedup_vs_best_sdpa": 0.9})
    assert bench_cli.headline_rows(rows) == [
        {"T": 4096, "ours": "triton", "tflops": 300.0, "best_sdpa": "sdpa-flash", "sdpa_tflops": 400.0, "ratio": 0.75},
        {
            "T": 4096,
            "ours": "triton-atomic",
            "tflops": 360.0,
            "best_sdpa": "sdpa-flash",
            "sdpa_tflops": 400.0,
            "ratio": 0.9,
        },
    ]


def test_gate_fails_a_wrong_provider_and_reports_a_raising_one() -> None:
    def wrong(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        return attention_reference(q, k, v, causal=not causal)  # the other mask

    def unsupported(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> torch.Tensor:
        raise RuntimeError("no kernel for this shape\nsecond line")

    providers = [
        bench.Provider("naive", attention_reference),
        bench.Provider("wrong", wrong),
        bench.Provider("unsupported", unsupported),
    ]
    shape = bench.AttentionShape(1, 4, 2, 48, 32, True, torch.float32)
    rows = {r["provider"]: r for r in bench.run_attention_bench([shape], providers, (), "cpu")}
    assert rows["naive"]["status"] == "ok" and rows["naive"]["err_o"] < 1e-5
    assert rows["wrong"]["status"] == "FAILED" and "o" in rows["wrong"]["reason"]
    assert rows["wrong"]["ms"] is None  # a failed provider is never timed
    assert rows["unsupported"]["status"] == "n/a"
    assert rows["unsupported"]["reason"] == "RuntimeError: no kernel for this shape"
    assert set(rows["naive"]) == set(bench.ROW_KEYS)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path (correctness pass only)")
def test_cpu_path_checks_and_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    providers = "triton,triton-atomic,sdpa-math,sdpa-cudnn,naive"
    assert main(["bench", "kernels", "--out", str(tmp_path), "--providers", providers]) == 0
    out = capsys.readouterr().out
    assert "timings need a GPU" in out and "4*B*H*T^2*D" in out
    result = json.loads((tmp_path / "attention.json").read_text())
    assert {"python", "torch", "triton", "cuda", "device", "flops"} <= set(result["meta"])
    rows = result["attention"]
    assert len(rows) == 5 * len(bench.check_shapes())
    assert all(r["status"] == "ok" for r in rows if r["provider"] in ("triton", "triton-atomic", "naive", "sdpa-math"))
    assert all(r["status"] == "n/a" and r["reason"] for r in rows if r["provider"] == "sdpa-cudnn")
    with (tmp_path / "attention.csv").open() as f:
        assert tuple(csv.DictReader(f).fieldnames) == bench.ROW_KEYS


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path (correctness pass only)")
def test_budget_stops_starting_shapes_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "kernels", "--out", str(tmp_path), "--providers", "naive", "--budget-s", "1e-9"]) == 0
    result = json.loads((tmp_path / "attention.json").read_text())
    n = len(bench.check_shapes())
    assert result["attention"] == [] and result["lm_kernels"]  # the LM kernels run first, whatever the budget
    assert result["meta"]["cut_by_budget"] == f"{n} of {n} shapes not run (--budget-s 1e-09)"
    assert "budget:" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--modes", "fwd,sideways"], ["--budget-s", "0"], ["--budget-s", "soon"]])
def test_cli_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "kernels", *argv]) == 2
    assert capsys.readouterr().err.startswith("cgpt bench kernels: error: argument")


def test_timed_rows_ratios_and_plot_with_a_stub_timer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path's bookkeeping (TFLOP/s, ratio to the best SDPA backend, utilisation, files) on CPU."""
    ms = {"naive": 4.0, "sdpa-math": 2.0, "sdpa-default": 1.0}
    monkeypatch.setattr(bench, "time_provider", lambda p, inputs, causal, mode: (ms[p.name], 3.0))
    providers = [p for p in bench.attention_providers() if p.name in ms]
    shapes = [bench.AttentionShape(1, 32, 32, t, 64, False, torch.float32) for t in (16, 32)]
    rows = bench.run_attention_bench(shapes, providers, ["fwd", "fwd+bwd"], "cpu", matmul_tflops=1e-6)
    assert len(rows) == 2 * 2 * 3 and all(r["status"] == "ok" for r in rows)
    row = next(r for r in rows if (r["provider"], r["seqlen"], r["mode"]) == ("naive", 32, "fwd+bwd"))
    tflops = 3.5 * 4 * 32 * 32**2 * 64 / 4e-3 / 1e12
    assert row["tflops"] == pytest.approx(tflops) and row["utilisation"] == pytest.approx(tflops / 1e-6)
    assert row["speedup_vs_best_sdpa"] == pytest.approx(0.25) and row["peak_mib"] == 3.0
    paths = bench_cli.write_results(tmp_path, {"device": "stub"}, rows, [{"name": "rmsnorm", "ms": 0.1}])
    plotted = {"attention.png"} if importlib.util.find_spec("matplotlib") else set()  # the optional extra
    assert {p.name for p in paths} == {"attention.json", "attention.csv", "lm_kernels.csv"} | plotted

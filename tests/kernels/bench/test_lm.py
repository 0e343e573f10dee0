"""The LM-kernel benchmark on CPU: a correctness-only pass whose gate catches a wrong kernel."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kernels.bench.lm import NO_GPU, TIMING_KEYS, bench_lm_kernels, gate, lm_cases
from kernels.bench.report import format_table
from kernels.glu import swiglu
from tests.kernels import DEVICE

KEYS = {
    "kernel",
    "shape",
    "dtype",
    "device",
    "pass",
    "gate",
    "max_err",
    "note",
    "copy_gbps",
    "formula",
    *TIMING_KEYS,
}


def swiglu_case() -> object:
    (case,) = [c for c in lm_cases(quick=True, on_gpu=False) if c.kernel == "swiglu"]
    return case


@pytest.mark.skipif(DEVICE == "cuda", reason="the CPU pass (on a GPU the benchmark times instead)")
def test_cpu_pass_checks_every_kernel_and_flags_timing() -> None:
    rows = bench_lm_kernels(quick=True, device="cpu")
    assert {r["kernel"] for r in rows} == {"rms_norm", "layer_norm", "rope", "swiglu", "linear_cross_entropy"}
    for row in rows:
        assert set(row) == KEYS
        assert row["gate"] == "pass", row
        assert row["note"] == NO_GPU and all(row[k] is None for k in TIMING_KEYS)
    assert {r["pass"] for r in rows} == {"fwd", "fwd+bwd"}
    assert "linear_cross_entropy" in format_table(rows, list(rows[0]))


@pytest.mark.parametrize(
    "wrong",
    [
        lambda a, u: swiglu(a, u) * 1.05,  # wrong output
        lambda a, u: swiglu(a, u) + 0.5 * (u - u.detach()),  # right output, wrong d up
    ],
    ids=["forward", "backward"],
)
def test_gate_flags_a_wrong_kernel(wrong: object) -> None:
    bad = dataclasses.replace(swiglu_case(), ours=wrong)
    inputs = bad.make_inputs(torch.bfloat16, torch.device(DEVICE), torch.Generator(DEVICE).manual_seed(0))
    ok, err = gate(bad, inputs)
    assert not ok and err > 0.03
    rows = bench_lm_kernels(quick=True, device=DEVICE, cases=[bad])
    assert [r["gate"] for r in rows] == ["FAIL", "FAIL"]


def test_asking_for_cuda_without_it_raises() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    with pytest.raises(ValueError, match="CUDA"):
        bench_lm_kernels(quick=True, device="cuda")

"""Optimizer groups, the LR schedule, and the MFU peak table."""

from __future__ import annotations

import math

import pytest
import torch

from model import GPT, preset
from train.errors import CgptError
from train.runtime import hardware
from train.runtime.optim import build_optimizer, lr_at, param_groups


def test_weight_decay_on_matrices_only_and_frozen_left_out() -> None:
    model = GPT(preset("baby", vocab_size=64))
    model.transformer.h[0].attn.c_attn.weight.requires_grad_(False)
    groups = param_groups(model, 0.1)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "transformer.wte.weight" in decayed and "transformer.h.1.mlp.c_fc.weight" in decayed
    assert "transformer.h.1.mlp.c_fc.bias" in plain and "transformer.ln_f.weight" in plain
    assert "transformer.h.0.attn.c_attn.weight" not in decayed | plain
    assert "lm_head.weight" not in decayed  # tied: the one tensor appears once, as wte
    opt = build_optimizer(groups, "adamw", 1e-3, (0.9, 0.95), 0.9, torch.device("cpu"))
    assert opt.defaults["betas"] == (0.9, 0.95)
    with pytest.raises(ValueError, match="optimizer='adam'"):
        build_optimizer(groups, "adam", 1e-3, (0.9, 0.95), 0.9, torch.device("cpu"))


def test_schedule_warms_up_linearly_then_cosines_to_the_floor_at_the_last_step() -> None:
    lrs = [lr_at(s, 100, 1.0, 10, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1)  # exactly the floor at the horizon: the schedule matches the run
    mid = 10 + (99 - 10) // 2
    assert lrs[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (mid - 10) / 89)))
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lr_at(50, 100, 1.0, 10, schedule="constant") == 1.0


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H200", 989e12),
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA L4", 121e12),
        ("Some Future GPU", None),
        ("cpu", None),
    ],
)
def test_peak_table_knows_a100_h100_h200_and_never_guesses(
    monkeypatch: pytest.MonkeyPatch, name: str, peak: float | None
) -> None:
    monkeypatch.setattr(hardware, "device_name", lambda device: name)
    assert hardware.peak_flops(torch.device("cpu")) == peak


def test_device_and_dtype_resolution() -> None:
    cpu = torch.device("cpu")
    assert hardware.resolve_dtype("auto", cpu) == torch.float32
    assert hardware.resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(CgptError, match="dtype=.float8."):
        hardware.resolve_dtype("float8", cpu)
    if not torch.cuda.is_available():
        with pytest.raises(CgptError, match="CUDA is not available"):
            hardware.resolve_device("cuda")

"""Devices, dtypes, and peak FLOP/s for MFU (model FLOPs utilisation, Chowdhery et al. 2022, PaLM App. B).

The peak table holds dense bf16 tensor-core figures from NVIDIA's datasheets. A device that is not in the table
gets no MFU ("unknown"), never a guess; on a CPU the peak can be *measured* (a large matmul) instead.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext

import torch

from train.errors import CgptError
from train.recipe import DTYPES

# Dense (not sparse) bf16 peak FLOP/s. Order matters: the first substring found in the device name wins.
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
    ("A10G", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),  # after L40S and L40, which contain "L4"
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16 tensor cores; V100 has no bf16
]


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA when there is a GPU, else the CPU; a missing GPU is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CgptError(f"--device={name!r} is not a device: expected auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise CgptError(f"--device={name!r} cannot be used: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CgptError(f"--device={name!r} cannot be used: CUDA is not available here (use --device cpu)")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX-512 BF16 or AMX), as PyTorch's oneDNN reports it.
    Without them bf16 is emulated and slower than fp32, so a planner's probe does not even try it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: bf16 on CUDA devices that support it, fp32 otherwise (or as asked). On a CPU, `auto`
    is fp32 here; a `--minutes` plan measures bf16 where the CPU has it (train/planner/probe.py) and records the
    faster dtype in the plan, which then names it explicitly."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise CgptError(f"--dtype={name!r} is not allowed: expected one of {DTYPES}")  # TrainConfig checks first
    return getattr(torch, name)


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def peak_flops(device: torch.device) -> float | None:
    """Datasheet dense bf16 peak for a known GPU, else None (MFU is then reported as unknown)."""
    name = device_name(device)
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    return None


def measure_matmul_flops(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 1.0
) -> float:
    """Achieved FLOP/s of an n x n matmul on this device: the practical ceiling (used for a CPU's MFU)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    a @ b  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        a @ b
        runs += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * runs / (time.perf_counter() - start)

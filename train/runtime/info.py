"""What this machine is: versions, the device, and which attention backends can run here (and why not).

`system_info()` is what `cgpt info --json` prints; `cgpt_version()` is what `cgpt --version` prints. torch is
imported by the functions that need it, not by this module: every `cgpt` command reads the version at start-up,
and `cgpt plan --flops` must not pay for torch.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any


def cgpt_version() -> str:
    """The installed chinchilla-gpt version, or 0.0.0+source for a source tree that is not installed."""
    return _version("chinchilla-gpt") or "0.0.0+source"


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def device_info() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {
            "type": "cuda",
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": list(torch.cuda.get_device_capability()),
        }
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def backend_info(device: Any) -> dict[str, Any]:
    """For each attention backend: can it run on `device` (a torch.device; for a head size of 64), and why (not)."""
    from model.attention import BackendError, resolve_backend
    from model.config import GPTConfig

    out: dict[str, Any] = {}
    for name in ("naive", "sdpa", "triton", "auto"):
        config = GPTConfig(vocab_size=256, block_size=64, n_layer=1, n_head=2, n_embd=128, attention=name)
        try:
            picked, reason = resolve_backend(config, device)
            out[name] = {"usable": True, "runs": picked, "reason": reason}
        except BackendError as err:
            out[name] = {"usable": False, "reason": str(err)}
    return out


def system_info() -> dict[str, Any]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "cgpt": cgpt_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": _version("numpy"),
        "tiktoken": _version("tiktoken"),
        "cuda": torch.version.cuda,
        "device": device_info(),
        "attention_backends": backend_info(device),
    }

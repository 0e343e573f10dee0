"""`cgpt info`: versions, the device, and which attention backends can run here (and why not)."""

from __future__ import annotations

import argparse
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from model import GPTConfig
from model.attention import BackendError, resolve_backend


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def device_info() -> dict[str, Any]:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"type": "cuda", "name": props.name, "count": torch.cuda.device_count(),
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": list(torch.cuda.get_device_capability())}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}


def backend_info(device: torch.device) -> dict[str, Any]:
    """For each attention backend: can it run on `device` (for a head size of 64), and why (not)."""
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
    from train.cli import version as cgpt_version

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


def run(args: argparse.Namespace) -> int:
    info = system_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("cgpt", "python", "torch", "triton", "numpy", "tiktoken", "cuda"):
        print(f"{key:>10}: {info[key]}")
    dev = info["device"]
    print(f"{'device':>10}: {dev['type']} ({dev['name']})")
    for name, b in info["attention_backends"].items():
        state = f"yes -> {b['runs']}" if b["usable"] else "no"
        print(f"{'attn ' + name:>10}: {state} ({b['reason']})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="versions, device and usable attention backends")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)

"""`cgpt info`: versions, the device, and which attention backends can run here (and why not)."""

from __future__ import annotations

import argparse
import json

from train.runtime.info import system_info


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="versions, device and usable attention backends")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


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

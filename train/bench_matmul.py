"""`cgpt bench matmul`: this device's achieved matmul FLOP/s - the practical ceiling for MFU on a CPU.

Pass the figure to `cgpt pretrain --peak-flops F` to get an MFU on a device missing from the datasheet table
(train/hardware.py), which otherwise reports MFU as "unknown" rather than guess.
"""

from __future__ import annotations

import argparse

import torch

from train.hardware import measure_matmul_flops, resolve_device, resolve_dtype


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    dtype = torch.float32 if args.dtype == "float32" else resolve_dtype(args.dtype, device)
    flops = measure_matmul_flops(device, dtype, args.n, args.seconds)
    print(f"{args.n}^3 {str(dtype).removeprefix('torch.')} matmul on {device} ({torch.get_num_threads()} threads): "
          f"{flops / 1e9:,.1f} GFLOP/s  (use --peak-flops {flops:.3e})")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("matmul", help="achieved matmul FLOP/s (the MFU ceiling on a CPU)")
    p.add_argument("--n", type=int, default=1024, help="matrix size (default 1024)")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    p.set_defaults(func=run)

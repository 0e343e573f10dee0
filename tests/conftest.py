"""Shared test set-up. Kernels run in Triton's CPU interpreter when there is no GPU.

`TRITON_INTERPRET` is read when `@triton.jit` decorates a function, so it must be set before any kernel module
is imported; conftest.py is imported by pytest before the test modules, which makes this the one safe place.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist each worker is a process: one torch thread each, or two workers on two cores
# oversubscribe the CPU and every matmul slows down many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

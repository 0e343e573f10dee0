"""Shared test set-up. Kernels run in Triton's CPU interpreter when there is no GPU.

`TRITON_INTERPRET` is read when `@triton.jit` decorates a function, so it must be set before any kernel module
is imported; conftest.py is imported by pytest before the test modules, which makes this the one safe place.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist each worker is a process: one torch thread each, or two workers on two cores
# oversubscribe the CPU and every matmul slows down many times over.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that run Triton kernels (marked `kernels`, or under tests/kernels/) need a CUDA GPU or a working
    CPU interpreter. Where neither is there (no triton; a Triton/NumPy pair whose interpreter is broken, see
    kernels.interpreter_problem) they are skipped with that one-line reason; CI has both and runs them all."""
    from kernels import triton_status

    usable, reason = triton_status()
    if usable:
        return
    for item in items:
        in_kernels = "tests/kernels/" in item.nodeid and "test_status.py" not in item.nodeid
        if in_kernels or item.get_closest_marker("kernels"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _own_machine_profile(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--minutes` plans reuse a machine profile (train/planner/timing.py); tests get their own, never ~/.cache."""
    monkeypatch.setenv("CGPT_PROFILE", str(tmp_path_factory.mktemp("profile") / "machine-profile.json"))

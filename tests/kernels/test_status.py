"""kernels.triton_status and the Triton/NumPy combination whose CPU interpreter cannot run our kernels."""

import pytest

import kernels


@pytest.mark.parametrize(
    ("triton_version", "numpy_version", "broken"),
    [
        ("3.6.0", "2.4.0", True),  # Triton 3.6's interpreter calls int() on one-element arrays
        ("3.5.1", "2.5.2", True),
        ("3.6.0", "2.3.5", False),
        ("3.7.1", "2.4.6", False),  # fixed in 3.7
        ("3.9.0", "2.4.6", False),
        ("3.10.0+git3f2a", "3.0.0rc1", False),
    ],
)
def test_interpreter_problem_by_version(triton_version: str, numpy_version: str, broken: bool) -> None:
    problem = kernels.interpreter_problem(triton_version, numpy_version)
    assert (problem is not None) == broken
    if broken:
        assert triton_version in problem and numpy_version in problem and "numpy<2.4" in problem


def test_status_reports_the_problem_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "interpreter_problem", lambda: "Triton 3.6.0's CPU interpreter fails ...")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert kernels.triton_status() == (False, "Triton 3.6.0's CPU interpreter fails ...")

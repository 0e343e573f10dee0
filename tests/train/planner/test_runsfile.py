"""Runs files (train/planner/runsfile.py): JSONL and CSV, derived tokens or FLOPs, budgets, and one-line errors
that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.errors import CgptError
from train.planner.runsfile import append_record, read_records, read_runs


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_and_csv_read_the_same_runs(tmp_path: Path) -> None:
    rows = [{"params": 1e6, "tokens": 2e7, "loss": 3.5}, {"params": 2e6, "flops": 1.2e14, "loss": 3.4}]
    a = read_runs([_jsonl(tmp_path / "r.jsonl", rows)])
    (tmp_path / "r.csv").write_text("params,tokens,flops,loss\n1e6,2e7,,3.5\n2e6,,1.2e14,3.4\n")
    b = read_runs([tmp_path / "r.csv"])
    for x in (a, b):
        assert x.tokens.tolist() == [2e7, 1.2e14 / (6 * 2e6)]  # tokens = C / 6N where only C is given
        assert x.flops.tolist() == [6 * 1e6 * 2e7, 1.2e14]  # flops default to 6ND
        assert x.where[1].endswith(":2") if x is a else x.where[1].endswith(":3")


def test_budgets_come_from_the_budget_key_or_from_flops(tmp_path: Path) -> None:
    flops = [1e15, 1.01e15, 0.99e15, 1e16, 1.02e16]
    rows = [{"params": 1e6 * (i + 1), "flops": c, "loss": 3.0} for i, c in enumerate(flops)]
    grouped = read_runs([_jsonl(tmp_path / "a.jsonl", rows)]).budget
    assert len(np.unique(grouped)) == 2 and grouped[0] == grouped[1] == grouped[2]
    nominal = read_runs([_jsonl(tmp_path / "b.jsonl", [{**r, "budget": 7.0} for r in rows])]).budget
    assert set(nominal) == {7.0}


def test_non_embedding_params(tmp_path: Path) -> None:
    rows = [{"params": 3e6, "params_non_embedding": 1e6, "tokens": 1e8, "loss": 3.0}]
    runs = read_runs([_jsonl(tmp_path / "r.jsonl", rows)], params="non-embedding")
    assert runs.params.tolist() == [1e6] and runs.flops.tolist() == [6 * 3e6 * 1e8]  # C counts every parameter


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no runs"),
        ("\n\n", "no runs"),
        ('{"params": 1e6, "tokens": 1e8, "loss": 3}\n{"params": 1e6,\n', ":2: not valid JSON"),
        ("[1, 2]\n", ":1: expected a JSON object"),
        ('{"params": 1e6, "loss": 3}\n', ":1: missing tokens or flops"),
        ('{"tokens": 1e6, "loss": 3}\n', ":1: missing params"),
        ('{"params": -1, "tokens": 1e8, "loss": 3}\n', ":1: params=-1: expected a positive number"),
        ('{"params": 1e6, "tokens": 1e8, "loss": "x"}\n', ":1: loss='x'"),
        ('{"params": 1e6, "tokens": 1e8, "loss": true}\n', ":1: loss=True"),
        ("params,tokens,loss\n1e6,1e8\n", ":2: 3 columns expected"),
        ("params,tokens,loss\n1e6,1e8,nan\n", ":2: loss='nan'"),
    ],
)
def test_bad_runs_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_text(text)
    with pytest.raises(CgptError, match=message) as err:
        read_runs([path])
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CgptError, match="cannot read"):
        read_runs([tmp_path / "nope.jsonl"])


def test_append_and_repair_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    append_record(path, {"run": "a"})
    append_record(path, {"run": "b"})
    with open(path, "a") as f:
        f.write('{"run": "c", "lo')  # a kill in the middle of a write
    assert [r["run"] for r in read_records(path)] == ["a", "b"]  # read: the torn line is not a record
    assert path.read_text().endswith('"lo')
    assert [r["run"] for r in read_records(path, repair=True)] == ["a", "b"]
    assert path.read_text() == '{"run": "a"}\n{"run": "b"}\n'  # repaired: cut off

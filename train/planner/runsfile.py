"""Runs files: the (params, tokens or flops, loss) of finished training runs, as `cgpt sweep` writes them and
`cgpt fit` reads them.

A sweep appends one JSON object per finished run to runs.jsonl (`append_record`: one write of one whole line, so a
kill leaves at most a torn last line, which `read_records(..., repair=True)` cuts off). `read_runs` reads any JSONL
or CSV (with a header) of such rows - a sweep's, or published results typed in by hand:

    params      N: every parameter, embeddings included (Chinchilla's convention)
    params_non_embedding    N without the token and position tables (Kaplan et al.'s), for --params non-embedding
    tokens      D, training tokens                  } at least one of the two; flops defaults to 6ND and
    flops       C, training FLOPs                   } tokens to C / 6N (Hoffmann et al. 2022)
    loss        the final validation loss (nats per token)
    budget      optional: the IsoFLOP budget C the run belongs to (a sweep writes it)

Runs are grouped into budgets by `budget` when every row has it, else by FLOPs: sorted, a new budget starts where
C grows by more than 5% from the previous run (IsoFLOP grids space their budgets far wider than that).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.errors import CgptError

PARAMS_KINDS = ("total", "non-embedding")
SAME_BUDGET = 1.05  # runs whose FLOPs differ by less than this factor share a budget


@dataclass(frozen=True)
class Runs:
    params: np.ndarray  # (n,) N as asked (total or non-embedding)
    tokens: np.ndarray  # (n,) D
    flops: np.ndarray  # (n,) C
    loss: np.ndarray  # (n,)
    budget: np.ndarray  # (n,) the budget C of each run's IsoFLOP group
    where: tuple[str, ...]  # "file:line" of each run
    params_kind: str  # total | non-embedding

    def __len__(self) -> int:
        return len(self.loss)


def append_record(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write (O_APPEND): concurrent writers never interleave lines."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file (none if it does not exist). A last line without its newline is a write
    cut short (or still under way, in another worker): it is not read, and `repair` cuts it off the file."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):  # a torn last line is not a record
        text = text[: text.rfind("\n") + 1]
        if repair:
            with open(path, "r+") as f:
                f.truncate(len(text.encode()))
    return [row for _, row in _jsonl_rows(path, text)]


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CgptError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise CgptError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        rows.append((number, row))
    return rows


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise CgptError(f"{path}:{reader.line_num}: {len(reader.fieldnames or [])} columns expected")
        rows.append((reader.line_num, {k.strip(): v.strip() for k, v in row.items() if v.strip()}))
    return rows


def _number(row: dict[str, Any], key: str, where: str) -> float:
    value = row[key]
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not 0 < x < math.inf:
        raise CgptError(f"{where}: {key}={value!r}: expected a positive number")
    return x


def _run(row: dict[str, Any], where: str, params_key: str) -> tuple[float, float, float, float, float]:
    """(N, D, C, loss, budget or nan) of one row."""
    missing = [k for k in (params_key, "loss") if k not in row]
    if missing or ("tokens" not in row and "flops" not in row):
        need = missing + (["tokens or flops"] if "tokens" not in row and "flops" not in row else [])
        raise CgptError(f"{where}: missing {', '.join(need)} (each run needs {params_key}, tokens or flops, loss)")
    n, loss = _number(row, params_key, where), _number(row, "loss", where)
    total = _number(row, "params", where) if "params" in row else n  # 6ND counts every parameter
    d = _number(row, "tokens", where) if "tokens" in row else _number(row, "flops", where) / (6 * total)
    c = _number(row, "flops", where) if "flops" in row else 6 * total * d
    budget = _number(row, "budget", where) if "budget" in row else math.nan
    return n, d, c, loss, budget


def read_runs(paths: list[str | Path], params: str = "total") -> Runs:
    """Every run in `paths` (JSONL or CSV, told apart by the first character: { or [ is JSONL)."""
    if params not in PARAMS_KINDS:
        raise CgptError(f"params={params!r} is not known: expected one of {list(PARAMS_KINDS)}")
    key = "params" if params == "total" else "params_non_embedding"
    values, where = [], []
    for path in map(Path, paths):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise CgptError(f"{path}: cannot read it ({err})") from None
        rows = _jsonl_rows(path, text) if text.lstrip()[:1] in ("{", "[") else _csv_rows(path, text)
        if not rows:
            raise CgptError(f"{path}: no runs (expected JSONL or CSV rows of {key}, tokens or flops, loss)")
        for number, row in rows:
            values.append(_run(row, f"{path}:{number}", key))
            where.append(f"{path}:{number}")
    n, d, c, loss, budget = (np.array(v) for v in zip(*values, strict=True))
    return Runs(n, d, c, loss, group_budgets(c, budget), tuple(where), params)


def group_budgets(flops: np.ndarray, nominal: np.ndarray) -> np.ndarray:
    """Each run's budget: its nominal one when every run has one, else the geometric mean of its FLOPs group."""
    if not np.isnan(nominal).any():
        return nominal.copy()
    order = np.argsort(flops)
    starts = np.r_[True, np.diff(np.log(flops[order])) > math.log(SAME_BUDGET)]
    group = np.cumsum(starts) - 1  # (n,) group of each run, in sorted order
    centre = np.exp(np.bincount(group, np.log(flops[order])) / np.bincount(group))
    out = np.empty_like(flops)
    out[order] = centre[group]
    return out

"""Labelled tasks derived from the pretraining corpus itself - the Python standard library - with real labels
and held-out splits, so the quickstart can fine-tune and prompt without downloading anything:

- `package` (sequence classification): which top-level standard-library package a snippet of source comes
  from (asyncio, email, xml, ...): the PACKAGES most present in this Python's library, snippets of
  SNIPPET_LINES consecutive non-blank lines, the same number per package (balanced: chance is 1/K).
- `tokens` (token classification): the type of each token of a line of code, as Python's own `tokenize`
  module labels it - a keyword, a name, an operator, a number, a string or a comment - each token a one-word
  entity (B-KW, B-NAME, ...), so entity F1 is per-token F1.

Splits are by file (a stable hash of its path), never by snippet: no file contributes to two splits, so the
test measures generalisation to unseen code, not memory of neighbouring lines. Files are written in the
formats `cgpt finetune` reads: JSONL {"text", "label"} and {"tokens", "tags"}.
"""

from __future__ import annotations

import hashlib
import io
import json
import keyword
import random
import sysconfig
import tokenize
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from train.data.corpus import stdlib_files
from train.errors import CgptError

PACKAGES = 6  # classes of the package task
SNIPPET_LINES = 6
MIN_FILES = 5  # a package of fewer files would put whole classes in one split
SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}
TOKEN_TAGS = {tokenize.NAME: "NAME", tokenize.OP: "OP", tokenize.NUMBER: "NUM", tokenize.STRING: "STR",
              tokenize.COMMENT: "COMMENT"}  # fmt: skip


@dataclass(frozen=True)
class TaskFiles:
    train: str
    val: str
    test: str
    labels: tuple[str, ...]  # classify: the packages; tag: the token types
    counts: dict[str, int]  # examples per split


def split_of(path: Path) -> str:
    """train | val | test for a file, from a stable hash of its name: the same on every machine and run."""
    x = int(hashlib.sha256(path.as_posix().encode()).hexdigest()[:8], 16) / 16**8
    return "train" if x < SPLITS["train"] else "val" if x < SPLITS["train"] + SPLITS["val"] else "test"


def _package_files(root: Path, files: list[Path]) -> dict[str, list[Path]]:
    by_package: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) > 1 and parts[0] != "encodings":  # codec tables: the same file 120 times, trivially told apart
            by_package[parts[0]].append(path)
    return {p: fs for p, fs in by_package.items() if len(fs) >= MIN_FILES}  # (pydoc_data: one file of text)


def _snippets(path: Path) -> list[str]:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return ["\n".join(lines[i : i + SNIPPET_LINES]) for i in range(0, len(lines) - SNIPPET_LINES + 1, SNIPPET_LINES)]


def package_task(out: Path, per_class: int, seed: int = 0) -> TaskFiles:
    """Write package_{train,val,test}.jsonl: snippets labelled by their top-level package."""
    files = stdlib_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    by_package = _package_files(root, files)
    lines = {p: sum(len(_snippets(f)) for f in fs) for p, fs in by_package.items()}
    chosen = sorted(sorted(lines, key=lambda p: (-lines[p], p))[:PACKAGES])
    if len(chosen) < 2:
        raise CgptError(f"{root}: too few standard-library packages for the package task")
    rng, rows = random.Random(seed), {name: [] for name in SPLITS}
    for package in chosen:
        pools = {name: [] for name in SPLITS}
        for path in by_package[package]:
            pools[split_of(path.relative_to(root))] += _snippets(path)
        for name, pool in pools.items():
            rng.shuffle(pool)
            share = per_class if name == "train" else max(1, per_class // 8)
            rows[name] += [{"text": text, "label": package} for text in pool[:share]]
    return _write(out, "package", rows, tuple(chosen), rng)


def _tagged_line(line: str) -> tuple[list[str], list[str]] | None:
    """(tokens, tags) of one line of code, or None if `tokenize` cannot read it alone (a continued statement)."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    words, tags = [], []
    for tok in toks:
        if tok.type in TOKEN_TAGS and tok.string.strip():
            kind = "KW" if tok.type == tokenize.NAME and keyword.iskeyword(tok.string) else TOKEN_TAGS[tok.type]
            words.append(tok.string)
            tags.append(f"B-{kind}")
    return (words, tags) if 3 <= len(words) <= 40 else None


def token_task(out: Path, sentences: int, seed: int = 0) -> TaskFiles:
    """Write tokens_{train,val,test}.jsonl: lines of code, each token tagged with its type."""
    root = Path(sysconfig.get_paths()["stdlib"])
    rng, rows = random.Random(seed), {name: [] for name in SPLITS}
    wanted = {name: 4 * (sentences if name == "train" else max(1, sentences // 8)) for name in SPLITS}
    files = stdlib_files()
    rng.shuffle(files)  # read files in a seeded order until every split has enough lines to draw from
    for path in files:
        split = split_of(path.relative_to(root))
        if len(rows[split]) >= wanted[split]:
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if tagged := _tagged_line(line.strip()):
                rows[split].append({"tokens": tagged[0], "tags": tagged[1]})
        if all(len(rows[s]) >= wanted[s] for s in SPLITS):
            break
    for name, pool in rows.items():
        rng.shuffle(pool)
        rows[name] = pool[: sentences if name == "train" else max(1, sentences // 8)]
    tags = tuple(sorted({t for row in rows["train"] for t in row["tags"]}))
    return _write(out, "tokens", rows, tags, rng)


def _write(out: Path, name: str, rows: dict[str, list[dict]], labels: tuple[str, ...], rng: random.Random) -> TaskFiles:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, examples in rows.items():
        if not examples:
            raise CgptError(f"the {name} task has no {split} examples on this Python's standard library")
        rng.shuffle(examples)  # classes interleaved
        paths[split] = str(out / f"{name}_{split}.jsonl")
        Path(paths[split]).write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return TaskFiles(paths["train"], paths["val"], paths["test"], labels, {k: len(v) for k, v in rows.items()})

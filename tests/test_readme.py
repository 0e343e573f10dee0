"""README.md's command lines parse with the real `cgpt` parser, so the README cannot drift from the CLI.

Each ```bash block is read as a shell splits it (`\\` continuations, `# comments`, chains on `&&`, `;`, `|`); a
segment that starts with `cgpt` or holds `-m train.cli` (python, torchrun) is parsed, never run, in a temporary
directory where the files it names exist (`--constants sweep/summary.json`). Placeholders README writers may use:
  [--flag VALUE]  optional: a line is parsed without its `[...]` groups, then with all of them.
  [--x a|b|c]     alternatives, in a group only (elsewhere `|` is a pipe): parse k takes the k-th (or the last).
  --flag ...      a flag's placeholder value, parsed as the string "...".
  cgpt cmd ...    a bare `...`: the arguments of the last earlier `cgpt cmd` line without one, put first.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.paths import REPO
from train.cli import build_parser

Argv = list[str]
Group = list[list[str]]  # a `[...]` group: its words, each a list of alternatives
README = (REPO / "README.md").read_text().splitlines()


def _bash_lines() -> list[tuple[int, str]]:
    """(first line number, logical line) of every ```bash block, continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None  # (first line, text so far) of a line continued with `\\`
    inside = False
    for number, line in enumerate(README, 1):
        if line.strip().startswith("```"):
            inside = line.strip() == "```bash"
        elif inside:
            start, text = pending or (number, "")
            pending = (start, f"{text}{line[:-1]} ") if line.endswith("\\") else None
            out += [] if pending else [(start, text + line)]
    return out


def _segments(text: str) -> list[list[str | Group]]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    segments: list[list[str | Group]] = [[]]
    group: list[str] | None = None  # the tokens of an open `[`
    for token in lexer:
        if group is None and token.startswith("["):
            group, token = [], token[1:]
        if group is None and set(token) <= set("&;|"):
            segments.append([])
        elif group is None:
            segments[-1].append(token)
        elif token.endswith("]"):
            words = " ".join([*group, token[:-1]]).replace(" | ", "|").split()
            segments[-1].append([word.split("|") for word in words])
            group = None
        else:
            group.append(token)
    assert group is None, f"README.md: an unclosed [ in {text!r}"
    return segments


def _forms(args: list[str | Group]) -> list[Argv]:
    """Every argv to parse: without groups, then with the k-th alternative of every group."""
    width = max((len(word) for a in args if not isinstance(a, str) for word in a), default=0)
    pick = [[[a] if isinstance(a, str) else [w[min(k, len(w) - 1)] for w in a] for a in args] for k in range(width)]
    return [[a for a in args if isinstance(a, str)]] + [[t for part in form for t in part] for form in pick]


def _commands() -> list[tuple[int, list[Argv]]]:
    """(line, argv forms) of each README command, a bare `...` filled in from the last full line."""
    full: dict[tuple[str, ...], list[str]] = {}  # command words (`sweep`, `bench prompt`) -> last full argv
    found: list[tuple[int, list[Argv]]] = []
    for number, text in _bash_lines():
        for segment in _segments(text):
            hits = [i + 2 for i in range(len(segment) - 1) if segment[i : i + 2] == ["-m", "train.cli"]]
            start = 1 if segment[:1] == ["cgpt"] else (hits or [0])[0]
            forms: list[Argv] = []
            for argv in _forms(segment[start:]) if start else []:
                n = next((i for i, a in enumerate(argv) if a.startswith("-") or a == "..."), len(argv))
                own = [a for i, a in enumerate(argv) if a != "..." or (i and argv[i - 1].startswith("-"))]
                if own == argv and not forms:  # a full line: a later `...` refers to it
                    full[tuple(argv[:n])] = argv
                forms.append(argv if own == argv else full.get(tuple(argv[:n]), argv[:n]) + own[n:])
            found += [(number, forms)] if forms else []
    return found


COMMANDS = _commands()


@pytest.mark.parametrize(("number", "forms"), COMMANDS, ids=[f"README.md:{n}" for n, _ in COMMANDS])
def test_readme_command_parses(
    number: int, forms: list[Argv], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # a flag may check that its file exists (`--constants sweep/summary.json`)
    for name in {a for argv in forms for a in argv if re.fullmatch(r"\w[\w/-]*\.[a-z]+", a)}:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    for argv in forms:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as done:  # 0: --help or --version
            if done.code:
                pytest.fail(f"README.md:{number}: `cgpt {shlex.join(argv)}`: {capsys.readouterr().err}", pytrace=False)
            continue
        assert getattr(args, "func", None), f"README.md:{number}: `cgpt {shlex.join(argv)}` names no command"


def test_readme_quickstart_and_test_command() -> None:
    assert len(COMMANDS) >= 15, f"README.md shows only {len(COMMANDS)} cgpt commands"
    block = README[README.index("```bash") + 1 :]
    assert "cgpt quickstart" in " ".join(block[: block.index("```")]), "the first bash block should run it"
    ci = [" ".join(s.split()) for s in (REPO / ".ci" / "run").read_text().splitlines() if "python -m pytest" in s]
    shown = [(n, " ".join(t.split())) for n, t in _bash_lines() if "python -m pytest" in t]
    same = len(ci) == 1 and shown and all(text == ci[0] for _, text in shown)
    assert same, f"README.md (line, test command): {shown}; .ci/run runs {ci}"

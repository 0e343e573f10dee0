"""Reading a corpus: input specs -> files -> documents, streamed as bounded text pieces.

An input is a file, a directory (searched recursively for `.txt`, `.md`, `.py`, `.jsonl` and `.gz` of those),
a glob, `stdlib` (the Python standard library's own sources, test suites excluded: a default corpus that needs
no download) or a named dataset (`train/data/datasets.py`). Files come in a fixed order (inputs as given, each
directory and glob sorted), so the same inputs always make the same corpus.

A `.jsonl` line is one document (its text field); any other file is one document. A document is streamed as
`Piece`s of about `chunk_chars` characters, cut after a newline that starts a non-blank line where possible,
so a 1 GB file never sits in memory and the regex pre-tokenisation sees the same words it would see unsplit.

Bad input is counted in `CorpusStats` or refused with `strict`: files with NUL bytes in their first 8 KB are
binary (skipped); invalid UTF-8 becomes U+FFFD. Project Gutenberg books lose their licence header and footer
(the text between the `*** START OF` and `*** END OF` markers is kept).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import io
import itertools
import json
import os
import re
import sysconfig
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from train.data.datasets import DATASETS, Fetch, download, sha256_file
from train.data.datasets import dataset_files as _dataset_files
from train.errors import CgptError

TEXT_SUFFIXES = (".txt", ".md", ".py", ".jsonl")
STDLIB = "stdlib"
STDLIB_EXCLUDED = {"test", "tests", "idle_test", "site-packages", "__pycache__"}
SNIFF_BYTES = 8192
_INVALID = re.compile("[\udc80-\udcff]+")  # bytes that `surrogateescape` could not decode
_GUTENBERG_START = re.compile(  # the title after the marker may wrap onto the next line before its "***"
    r"^[ \t]*\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG EBOOK(?:[^*]{0,300}\*\*\*)?[^\n]*\n?",
    re.I | re.M,
)
_GUTENBERG_END = re.compile(r"^[ \t]*\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG EBOOK", re.I | re.M)
_PRODUCED_BY = re.compile(r"\A\s*Produced by.*?(?:\n[ \t\r]*\n|\Z)", re.I | re.S)
_END_OF_LINE = re.compile(  # "End of the Project Gutenberg EBook of ...", wrapped over up to a few lines
    r"^[ \t]*End of (?:the |this )?Project Gutenberg[^\n]*(?:\n[ \t]*\S[^\n]*){0,4}\s*\Z", re.I | re.M
)


# ----------------------------------------------------------------------------------------------------------
# inputs -> files


def _wanted(path: Path) -> bool:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    return name.endswith(TEXT_SUFFIXES)


def _directory_files(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.is_file() and _wanted(p)]
    visible = [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(visible, key=lambda p: p.relative_to(root).as_posix())


def stdlib_files() -> list[Path]:
    """The standard library's `.py` files, test suites and site-packages excluded, sorted by relative path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if name not in STDLIB_EXCLUDED]  # prune the walk
        files += [Path(folder) / name for name in names if name.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def resolve_inputs(
    inputs: Sequence[str],
    cache_dir: str | Path | None = None,
    max_files: int | None = None,
    fetch: Fetch = download,
) -> list[Path]:
    """Files for `inputs`, in order, each once; an input that names nothing is an error."""
    files: list[Path] = []
    for spec in inputs:
        path = Path(spec).expanduser()
        if path.is_dir():
            found = _directory_files(path)
        elif path.is_file():
            found = [path]
        elif spec == STDLIB:
            found = stdlib_files()
        elif spec in DATASETS:
            found = _dataset_files(spec, cache_dir, fetch)
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        else:
            raise CgptError(
                f"input {spec!r}: no such file or directory; expected a path, a glob, {STDLIB!r} "
                f"or a dataset ({', '.join(DATASETS)})"
            )
        if not found:
            raise CgptError(f"input {spec!r}: matches no {'/'.join(TEXT_SUFFIXES)} files (or .gz of them)")
        files.extend(found)
    unique = list(dict.fromkeys(files))
    return unique[:max_files] if max_files is not None else unique


# ----------------------------------------------------------------------------------------------------------
# files -> pieces of documents


@dataclass(frozen=True)
class ReadOptions:
    strict: bool = False  # binary files and invalid UTF-8 are errors instead of being skipped / replaced
    jsonl_field: str = "text"
    chunk_chars: int = 1 << 20

    def __post_init__(self) -> None:
        if not self.jsonl_field:
            raise ValueError("jsonl_field='': expected the name of the JSON field that holds the text")
        if self.chunk_chars < 1024:
            raise ValueError(f"chunk_chars={self.chunk_chars}: expected at least 1024")


@dataclass
class CorpusStats:
    """What reading found, for meta.json: files with their sha256, documents, and what was skipped."""

    files: list[dict] = field(default_factory=list)
    documents: int = 0
    skipped_binary: list[str] = field(default_factory=list)
    invalid_utf8: dict[str, int] = field(default_factory=dict)  # path -> invalid sequences replaced
    gutenberg_stripped: int = 0
    blank_documents: int = 0  # empty or whitespace-only: skipped, no <|endoftext|> of their own


@dataclass(frozen=True)
class Piece:
    doc: int  # index of the document in the corpus
    text: str
    last: bool  # the document's final piece: an <|endoftext|> follows it


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _is_binary(path: Path) -> bool:
    with _open(path) as f:
        return b"\0" in f.read(SNIFF_BYTES)


def _clean(text: str, path: Path, options: ReadOptions, stats: CorpusStats) -> str:
    """Replace undecodable bytes by U+FFFD and count them, or refuse them under `strict`."""
    text, n = _INVALID.subn("\ufffd", text)
    if n:
        if options.strict:
            raise CgptError(f"{path}: invalid UTF-8; expected UTF-8 text (without --strict it is replaced)")
        stats.invalid_utf8[str(path)] = stats.invalid_utf8.get(str(path), 0) + n
    return text


def _cut(buffer: str, size: int) -> int:
    """Where to end a piece: after a newline that starts a non-blank line, else at `size`."""
    end = size
    for _ in range(64):
        i = buffer.rfind("\n", 0, end)
        if i <= 0:
            break
        if not buffer[i + 1].isspace():
            return i + 1
        end = i
    return size


def _rechunk(chunks: Iterator[str], size: int) -> Iterator[str]:
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) > size:
            cut = _cut(buffer, size)
            yield buffer[:cut]
            buffer = buffer[cut:]
    if buffer:
        yield buffer


def _strip_gutenberg(chunks: Iterator[str], stats: CorpusStats) -> Iterator[str]:
    """Keep the text between the Project Gutenberg START and END markers, when the first piece has one."""
    first = next(chunks, "")
    start = _GUTENBERG_START.search(first)
    if start is None:
        yield first
        yield from chunks
        return
    stats.gutenberg_stripped += 1
    text = _PRODUCED_BY.sub("", first[start.end() :].lstrip("\r\n"), count=1).lstrip("\r\n")
    for piece in itertools.chain([text], chunks):
        end = _GUTENBERG_END.search(piece)
        if end is not None:
            yield _END_OF_LINE.sub("", piece[: end.start()].rstrip(), count=1).rstrip()
            return
        yield piece


def _text_chunks(path: Path, options: ReadOptions, stats: CorpusStats) -> Iterator[str]:
    with io.TextIOWrapper(_open(path), encoding="utf-8", errors="surrogateescape", newline="") as f:
        first = True
        while chunk := f.read(options.chunk_chars):
            if first and chunk.startswith("\ufeff"):
                chunk = chunk[1:]
            first = False
            yield _clean(chunk, path, options, stats)


def _jsonl_texts(path: Path, options: ReadOptions, stats: CorpusStats) -> Iterator[str]:
    with io.TextIOWrapper(_open(path), encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                text = json.loads(_clean(line, path, options, stats))[options.jsonl_field]
            except (ValueError, KeyError, TypeError, IndexError) as err:
                raise CgptError(
                    f"{path}:{number}: expected a JSON object with a {options.jsonl_field!r} "
                    f"field ({type(err).__name__}: {err})"
                ) from err
            if not isinstance(text, str):
                raise CgptError(f"{path}:{number}: field {options.jsonl_field!r} is not a string")
            yield text


def _pieces(doc: int, chunks: Iterator[str]) -> Iterator[Piece]:
    """Pieces of one document with the last one marked. Chunks of only whitespace before the first text are
    dropped, so an empty or whitespace-only document yields nothing."""
    previous = None
    for chunk in chunks:
        if chunk and (previous is not None or not chunk.isspace()):
            if previous is not None:
                yield Piece(doc, previous, last=False)
            previous = chunk
    if previous is not None:
        yield Piece(doc, previous, last=True)


def _file_documents(path: Path, options: ReadOptions, stats: CorpusStats) -> Iterator[Iterator[str]]:
    """Each document of one file as an iterator of its text chunks."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        for text in _jsonl_texts(path, options, stats):
            yield _rechunk(iter([text]), options.chunk_chars)
    else:
        chunks = _rechunk(_text_chunks(path, options, stats), options.chunk_chars)
        yield _strip_gutenberg(chunks, stats)


def read_corpus(files: Sequence[Path], options: ReadOptions, stats: CorpusStats) -> Iterator[Piece]:
    """Every document of every file as pieces, in order; fills `stats` as it goes."""
    for path in files:
        try:
            if _is_binary(path):
                if options.strict:
                    raise CgptError(f"{path}: binary file (NUL bytes in its first 8 KB); expected text")
                stats.skipped_binary.append(str(path))
                continue
            record = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            first_doc = stats.documents
            for document in _file_documents(path, options, stats):
                blank = True
                for piece in _pieces(stats.documents, document):
                    blank = False
                    yield piece
                    if piece.last:
                        stats.documents += 1
                stats.blank_documents += blank
        except (OSError, EOFError) as err:
            raise CgptError(f"{path}: could not be read ({type(err).__name__}: {err})") from err
        record["documents"] = stats.documents - first_doc
        stats.files.append(record)


def first_line_with(files: list[Path], char: str) -> str:
    """ "file:line" of the first line holding `char` (an error path: a second pass over the files is fine)."""
    for path in files:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                for n, line in enumerate(f, start=1):
                    if char in line:
                        return f"{path}:{n}"
    return "the corpus"

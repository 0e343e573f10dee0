"""Labelled data for fine-tuning: read files, check them, and collect their labels.

    file -> read_* -> examples (text, labels, file:line) -> LabelSet (from training data only)
         -> train/finetune/encode.py (token ids, truncation, batches)

Formats: classification from TSV/CSV with a header (SST-2's `sentence<TAB>label`) or JSONL
`{"text", "label"}`; tagging from CoNLL columns (word first, tag last, blank line between sentences,
`-DOCSTART-` skipped; IOB1 is normalised to BIO, Tjong Kim Sang & Veenstra 1999) or JSONL
`{"tokens", "tags"}`; generation from JSONL `{"prompt", "response"}`. Every problem a user can fix raises
`CgptError` naming the file:line or the field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.errors import CgptError


@dataclass(frozen=True)
class TextExample:
    text: str
    label: str | None  # None when the file has no labels (prediction)
    where: str  # "file:line"


@dataclass(frozen=True)
class TaggedExample:
    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None  # BIO
    where: str  # file:line of the first word


@dataclass(frozen=True)
class GenerationExample:
    prompt: str
    response: str
    where: str


Example = TextExample | TaggedExample | GenerationExample


# --- reading files ------------------------------------------------------------------------------------------


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file; one-line errors for a missing file, a directory, bad UTF-8, no text."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CgptError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CgptError(f"{path}: is a directory; expected a file") from None
    except PermissionError:
        raise CgptError(f"{path}: permission denied") from None
    except UnicodeDecodeError as err:
        raise CgptError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not any(line.strip() for line in lines):
        raise CgptError(f"{path}: empty file")
    return lines


def _jsonl(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Each non-blank line as a JSON object, with its "file:line"."""
    for n, line in enumerate(read_lines(path), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CgptError(f"{path}:{n}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise CgptError(f"{path}:{n}: expected a JSON object, got {type(record).__name__}")
            yield record, f"{path}:{n}"


def _field(record: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in record:
        raise CgptError(f"{where}: missing field {name!r} (has: {', '.join(record) or 'none'})")
    if not isinstance(record[name], kind):
        raise CgptError(
            f"{where}: field {name!r} should be {getattr(kind, '__name__', 'text or number')}, "
            f"got {type(record[name]).__name__}"
        )
    return record[name]


def _rows(path: str | Path) -> Iterator[tuple[list[str], int]]:
    """TSV split on every tab (no quoting: SST-2 text holds bare quotes) or CSV as the csv module reads it."""
    lines = read_lines(path)
    if str(path).endswith(".csv"):
        reader = csv.reader(lines)
        for row in reader:
            yield row, reader.line_num
    else:
        for n, line in enumerate(lines, start=1):
            yield line.split("\t"), n


def read_classification(
    path: str | Path, text_field: str | None = None, label_field: str | None = "label"
) -> list[TextExample]:
    """Texts and labels from TSV/CSV with a header, or JSONL; label_field=None reads texts alone.

    The text field defaults to "sentence" or else "text", whichever the file has.
    """
    if str(path).endswith((".jsonl", ".json")):
        return _classification_jsonl(path, text_field, label_field)
    sep = "comma" if str(path).endswith(".csv") else "tab"
    rows = (item for item in _rows(path) if any(cell.strip() for cell in item[0]))  # skip blank lines
    header, header_line = next(rows, ([], 1))
    text_field = text_field or next((f for f in ("sentence", "text") if f in header), "sentence")
    wanted = [text_field] + ([label_field] if label_field else [])
    for name in wanted:
        if name not in header:
            raise CgptError(
                f"{path}:{header_line}: missing column {name!r} (header has: {', '.join(header) or 'nothing'})"
            )
    text_at, label_at = header.index(text_field), header.index(label_field) if label_field else None
    examples = []
    for row, n in rows:
        if len(row) != len(header):
            raise CgptError(
                f"{path}:{n}: expected {len(header)} {sep}-separated columns ({', '.join(header)}), got {len(row)}"
            )
        label = None if label_at is None else row[label_at]
        examples.append(_text_example(row[text_at], label, f"{path}:{n}"))
    if not examples:
        raise CgptError(f"{path}: no examples after the header")
    return examples


def _classification_jsonl(path: str | Path, text_field: str | None, label_field: str | None) -> list[TextExample]:
    examples = []
    for record, where in _jsonl(path):
        name = text_field or next((f for f in ("text", "sentence") if f in record), "text")
        label = None if label_field is None else _field(record, label_field, (str, int, float), where)
        examples.append(_text_example(_field(record, name, str, where), label, where))
    return examples


def _text_example(text: str, label: Any, where: str) -> TextExample:
    label = None if label is None else str(label).strip()
    if label == "":
        raise CgptError(f"{where}: empty label")
    return TextExample(text.strip(), label, where)  # SST-2 ends every sentence with a space


def read_tagging(path: str | Path, with_tags: bool = True) -> list[TaggedExample]:
    """Sentences of words and BIO tags from CoNLL columns or JSONL {"tokens", "tags"}."""
    if str(path).endswith((".jsonl", ".json")):
        examples = []
        for record, where in _jsonl(path):
            words = _field(record, "tokens", list, where)
            tags = _field(record, "tags", list, where) if with_tags else None
            examples.append(_tagged(words, tags, where))
        return examples
    first = next(line for line in read_lines(path) if line.strip())
    if str(path).endswith((".tsv", ".csv")) or "\t" in first:
        raise CgptError(
            f"{path}: this looks like a classification file (tab- or comma-separated, header {first[:40]!r}), "
            "not CoNLL columns; use --task classify"
        )
    examples = list(_conll_sentences(path, with_tags))
    if not examples:
        raise CgptError(f"{path}: no sentences (only -DOCSTART- and blank lines)")
    return examples


def _conll_sentences(path: str | Path, with_tags: bool) -> Iterator[TaggedExample]:
    width, first_line, words, tags, start = 0, 0, [], [], 0
    for n, line in enumerate([*read_lines(path), ""], start=1):
        cols = line.split()
        if cols and cols[0] != "-DOCSTART-":
            if width == 0:
                width, first_line = len(cols), n
            if len(cols) != width or (with_tags and width < 2):
                raise CgptError(
                    f"{path}:{n}: expected {max(width, 2)} space-separated columns "
                    f"(word first, tag last; as on line {first_line}), got {len(cols)}"
                )
            start = start or n
            words.append(cols[0])
            tags.append(cols[-1])
        elif words:  # a blank or -DOCSTART- line ends the sentence
            yield _tagged(words, tags if with_tags else None, f"{path}:{start}")
            words, tags, start = [], [], 0


def _tagged(words: list[Any], tags: list[Any] | None, where: str) -> TaggedExample:
    if not words or not all(isinstance(w, str) and w for w in words):
        raise CgptError(f"{where}: 'tokens' should be a non-empty list of non-empty strings")
    if tags is not None and len(tags) != len(words):
        raise CgptError(f"{where}: {len(words)} tokens but {len(tags)} tags")
    return TaggedExample(tuple(words), None if tags is None else to_bio(tags, where), where)


def to_bio(tags: Sequence[str], where: str = "tags") -> tuple[str, ...]:
    """IOB1 (or BIO) -> BIO: an I-X that does not continue an X entity begins one, so becomes B-X."""
    out: list[str] = []
    for i, tag in enumerate(tags):
        prefix, _, kind = str(tag).partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not kind):
            raise CgptError(f"{where}: tag {tag!r} (word {i + 1}) is not O, B-TYPE or I-TYPE")
        if prefix == "I" and (not out or out[-1][2:] != kind):
            tag = f"B-{kind}"
        out.append(tag)
    return tuple(out)


def read_generation(path: str | Path) -> list[GenerationExample]:
    """Prompt/response pairs from JSONL {"prompt", "response"}."""
    return [GenerationExample(_field(r, "prompt", str, w), _field(r, "response", str, w), w) for r, w in _jsonl(path)]


# --- labels --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSet:
    """The label names a model predicts, read from the training data: sorted, numbers by value."""

    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: Sequence[str]) -> LabelSet:
        def key(name: str) -> tuple[int, float, str]:
            try:
                return (0, float(name), name)
            except ValueError:
                return (1, 0.0, name)

        return cls(tuple(sorted(set(labels), key=key)))

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, label: str, where: str) -> int:
        if label not in self.names:
            raise CgptError(
                f"{where}: label {label!r} never appears in the training data (known: {', '.join(self.names)})"
            )
        return self.names.index(label)

    def decode(self, index: int) -> str:
        return self.names[index]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"labels": list(self.names)}, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LabelSet:
        return cls(tuple(json.loads(Path(path).read_text())["labels"]))


def label_set(examples: Sequence[TextExample | TaggedExample]) -> LabelSet:
    """The labels (or tags) of a training set."""
    names = [tag for ex in examples if isinstance(ex, TaggedExample) and ex.tags for tag in ex.tags]
    names += [ex.label for ex in examples if isinstance(ex, TextExample) and ex.label is not None]
    return LabelSet.from_labels(names)

"""Labelled data for fine-tuning: read files, check them, encode them into token ids, and batch them.

    file -> read_* -> examples (text, labels, file:line) -> LabelSet (from training data only)
         -> encode_* -> Encoded (token ids + labels, cut to the context) -> collate / ExampleBatches

Formats: classification from TSV/CSV with a header (SST-2's `sentence<TAB>label`) or JSONL
`{"text", "label"}`; tagging from CoNLL columns (word first, tag last, blank line between sentences,
`-DOCSTART-` skipped; IOB1 is normalised to BIO, Tjong Kim Sang & Veenstra 1999) or JSONL
`{"tokens", "tags"}`; generation from JSONL `{"prompt", "response"}`. Every problem a user can fix raises
`CgptError` naming the file:line or the field.
Token conventions, with E the tokenizer's end-of-text id:
  classification  text + [E]; the heads read the last token, GPT-1's "extract" position (Radford et al. 2018).
  tagging         word i > 0 is encoded as " " + word, as it would be tokenized mid-sentence; its label sits
                  on its first sub-token and -100 on the rest (Devlin et al. 2019, section 5.3).
  generation      [E] + prompt + response + [E]: inputs drop the last token, labels the first (next-token
                  targets), and a label is -100 wherever the token it predicts is still [E] + prompt.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from train.errors import CgptError


class TokenizerLike(Protocol):
    eot_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


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


# --- reading files ------------------------------------------------------------------------------------------


def _lines(path: str | Path) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CgptError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise CgptError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not any(line.strip() for line in lines):
        raise CgptError(f"{path}: empty file")
    return lines


def _jsonl(path: str | Path) -> Iterator[tuple[dict[str, Any], str]]:
    """Each non-blank line as a JSON object, with its "file:line"."""
    for n, line in enumerate(_lines(path), start=1):
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
    lines = _lines(path)
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
                f"{path}:{header_line}: missing column {name!r} "
                f"(header has: {', '.join(header) or 'nothing'})"
            )
    text_at, label_at = header.index(text_field), header.index(label_field) if label_field else None
    examples = []
    for row, n in rows:
        if len(row) != len(header):
            raise CgptError(
                f"{path}:{n}: expected {len(header)} {sep}-separated columns "
                f"({', '.join(header)}), got {len(row)}"
            )
        label = None if label_at is None else row[label_at]
        examples.append(_text_example(row[text_at], label, f"{path}:{n}"))
    if not examples:
        raise CgptError(f"{path}: no examples after the header")
    return examples


def _classification_jsonl(
    path: str | Path, text_field: str | None, label_field: str | None
) -> list[TextExample]:
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
    examples = list(_conll_sentences(path, with_tags))
    if not examples:
        raise CgptError(f"{path}: no sentences (only -DOCSTART- and blank lines)")
    return examples


def _conll_sentences(path: str | Path, with_tags: bool) -> Iterator[TaggedExample]:
    width, first_line, words, tags, start = 0, 0, [], [], 0
    for n, line in enumerate([*_lines(path), ""], start=1):
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
    return [
        GenerationExample(_field(r, "prompt", str, w), _field(r, "response", str, w), w)
        for r, w in _jsonl(path)
    ]


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
                f"{where}: label {label!r} never appears in the training data "
                f"(known: {', '.join(self.names)})"
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


# --- encoding into token ids ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """One example as token ids, ready to collate."""

    input_ids: tuple[int, ...]
    label: int | float | None = None  # classification (index) or regression (value)
    token_labels: tuple[int, ...] | None = None  # tagging / generation: one per input id, -100 ignored
    word_starts: tuple[bool, ...] | None = None  # tagging: True on each word's first sub-token
    n_words: int = 0  # tagging: words in the sentence, including any cut off by truncation
    where: str = ""


def _encode(tokenizer: TokenizerLike, text: str, where: str) -> list[int]:
    """Token ids of `text`; a tokenizer's complaint (say, an unknown character) gains the file:line."""
    try:
        return tokenizer.encode(text)
    except CgptError as err:
        raise CgptError(f"{where}: {err}") from None


def _fit(ids: list[int], max_len: int, where: str, strict: bool) -> tuple[list[int], bool]:
    """`ids` cut to max_len, and whether it had to be; under strict, too long is an error."""
    if len(ids) <= max_len:
        return ids, False
    if strict:
        raise CgptError(f"{where}: {len(ids)} tokens exceed the context of {max_len} (strict mode)")
    return ids[:max_len], True


def encode_classification(
    examples: Sequence[TextExample],
    tokenizer: TokenizerLike,
    labels: LabelSet | None,
    max_len: int,
    strict: bool = False,
    regression: bool = False,
) -> tuple[list[Encoded], int]:
    """text + [eot] per example, labels as indices (or floats under regression); returns (encoded, n_cut)."""
    out, cut = [], 0
    for ex in examples:
        ids = _encode(tokenizer, ex.text, ex.where) + [tokenizer.eot_id]
        ids, was_cut = _fit(ids, max_len, ex.where, strict)
        ids[-1] = tokenizer.eot_id  # the pooled position stays the extract token after a cut
        cut += was_cut
        out.append(Encoded(tuple(ids), _label(ex, labels, regression), where=ex.where))
    return out, cut


def _label(ex: TextExample, labels: LabelSet | None, regression: bool) -> int | float | None:
    if ex.label is None:
        return None
    if regression:
        try:
            return float(ex.label)
        except ValueError:
            raise CgptError(f"{ex.where}: label {ex.label!r} is not a number (regression)") from None
    if labels is None:
        raise ValueError("classification labels need a LabelSet")
    return labels.encode(ex.label, ex.where)


def encode_tagging(
    examples: Sequence[TaggedExample],
    tokenizer: TokenizerLike,
    labels: LabelSet | None,
    max_len: int,
    strict: bool = False,
) -> tuple[list[Encoded], int]:
    """Words -> sub-tokens, each word's tag on its first sub-token; returns (encoded, n_cut)."""
    out, cut = [], 0
    for ex in examples:
        ids: list[int] = []
        starts: list[bool] = []
        for i, word in enumerate(ex.tokens):
            piece = _encode(tokenizer, word if i == 0 else " " + word, f"{ex.where} (word {i + 1})")
            if not piece:
                raise CgptError(f"{ex.where}: word {i + 1} {word!r} encodes to no tokens")
            ids += piece
            starts += [True] + [False] * (len(piece) - 1)
        ids, was_cut = _fit(ids, max_len, ex.where, strict)
        cut += was_cut
        n = len(ids)
        out.append(
            Encoded(
                tuple(ids),
                token_labels=_token_labels(ex, labels, starts[:n]),
                word_starts=tuple(starts[:n]),
                n_words=len(ex.tokens),
                where=ex.where,
            )
        )
    return out, cut


def _token_labels(ex: TaggedExample, labels: LabelSet | None, starts: list[bool]) -> tuple[int, ...] | None:
    if ex.tags is None:
        return None
    if labels is None:
        raise ValueError("tagging labels need a LabelSet")
    tags = iter(  # every tag is checked, also those of words cut off by truncation
        [
            labels.encode(tag, f"{ex.where} (word {i + 1} {w!r})")
            for i, (w, tag) in enumerate(zip(ex.tokens, ex.tags, strict=True))
        ]
    )
    return tuple(next(tags) if start else -100 for start in starts)


def encode_prompt(tokenizer: TokenizerLike, prompt: str) -> list[int]:
    """[eot] + prompt: what generation starts from, at training and at prediction time alike."""
    return [tokenizer.eot_id] + tokenizer.encode(prompt)


def encode_generation(
    examples: Sequence[GenerationExample], tokenizer: TokenizerLike, max_len: int, strict: bool = False
) -> tuple[list[Encoded], int]:
    """Next-token targets on the response (and its closing eot) only; returns (encoded, n_cut)."""
    out, cut = [], 0
    for ex in examples:
        prompt = [tokenizer.eot_id] + _encode(tokenizer, ex.prompt, ex.where)  # as encode_prompt
        ids = prompt + _encode(tokenizer, ex.response, ex.where) + [tokenizer.eot_id]
        targets = [t if i + 1 >= len(prompt) else -100 for i, t in enumerate(ids[1:])]  # target i is ids[i+1]
        inputs, was_cut = _fit(ids[:-1], max_len, ex.where, strict)
        targets = targets[: len(inputs)]
        if all(t == -100 for t in targets):
            raise CgptError(f"{ex.where}: the prompt alone fills the context of {max_len} tokens")
        cut += was_cut
        out.append(Encoded(tuple(inputs), token_labels=tuple(targets), where=ex.where))
    return out, cut


# --- batching ---------------------------------------------------------------------------------------------

PADDING_SIDES = ("right", "left")


def collate(examples: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest: input_ids (B, T), attention_mask (B, T) bool, and labels (B,) or (B, T)."""
    if padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side={padding_side!r}: expected one of {PADDING_SIDES}")
    T = max(len(e.input_ids) for e in examples)

    def pad(seq: Sequence[Any], fill: Any) -> list[Any]:
        fills = [fill] * (T - len(seq))
        return fills + list(seq) if padding_side == "left" else list(seq) + fills

    batch = {
        "input_ids": torch.tensor([pad(e.input_ids, pad_id) for e in examples], dtype=torch.long),
        "attention_mask": torch.tensor([pad([True] * len(e.input_ids), False) for e in examples]),
    }
    first = examples[0]
    if first.token_labels is not None:
        batch["labels"] = torch.tensor([pad(e.token_labels, -100) for e in examples], dtype=torch.long)
    elif first.label is not None:
        dtype = torch.float32 if isinstance(first.label, float) else torch.long
        batch["labels"] = torch.tensor([e.label for e in examples], dtype=dtype)
    if first.word_starts is not None:
        batch["word_starts"] = torch.tensor([pad(e.word_starts, False) for e in examples])
        batch["n_words"] = torch.tensor([e.n_words for e in examples])
    return batch


def word_predictions(predictions: torch.Tensor, batch: dict[str, torch.Tensor], fill: int) -> list[list[int]]:
    """Per-token predictions (B, T) -> one per word; words cut off by truncation get `fill` (e.g. "O")."""
    out = []
    rows = zip(predictions.tolist(), batch["word_starts"].tolist(), batch["n_words"].tolist(), strict=True)
    for row, starts, n_words in rows:
        words = [p for p, start in zip(row, starts, strict=True) if start]
        out.append(words + [fill] * (n_words - len(words)))
    return out


def batches(
    examples: Sequence[Encoded], batch_size: int, pad_id: int, padding_side: str = "right"
) -> Iterator[dict[str, torch.Tensor]]:
    """One pass in file order, for evaluation and prediction."""
    for i in range(0, len(examples), batch_size):
        yield collate(examples[i : i + batch_size], pad_id, padding_side)


class ExampleBatches:
    """Shuffled batches for training, epoch after epoch, from an explicit generator.

    Each epoch is one `torch.randperm`; `state_dict` keeps the generator state from that epoch's start and the
    position within it, so a resumed run draws exactly the batches an uninterrupted one would have.
    """

    def __init__(
        self,
        examples: Sequence[Encoded],
        batch_size: int,
        seed: int,
        pad_id: int,
        padding_side: str = "right",
    ) -> None:
        if not examples or batch_size < 1:
            raise ValueError(f"need examples and batch_size >= 1, got {len(examples)} and {batch_size}")
        self.examples, self.batch_size = examples, batch_size
        self.pad_id, self.padding_side = pad_id, padding_side
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch, self.position = 0, 0
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state = self.generator.get_state()
        self.order = torch.randperm(len(self.examples), generator=self.generator).tolist()

    def __iter__(self) -> ExampleBatches:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.position >= len(self.examples):
            self.epoch, self.position = self.epoch + 1, 0
            self._start_epoch()
        chosen = self.order[self.position : self.position + self.batch_size]
        self.position += len(chosen)
        return collate([self.examples[i] for i in chosen], self.pad_id, self.padding_side)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "generator": self._epoch_state.clone(),
            "num_examples": len(self.examples),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_examples"] != len(self.examples):
            raise CgptError(
                f"the saved batch order covers {state['num_examples']} examples, "
                f"but the data now has {len(self.examples)}"
            )
        self.generator.set_state(state["generator"])
        self._start_epoch()
        self.epoch, self.position = state["epoch"], state["position"]

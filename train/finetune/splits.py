"""A data file read and encoded for one fine-tuning task: the `Split` that training, evaluation and the
robustness checks all consume; and a fine-tune's three splits (`read_data`).

    path -> read_examples (the train/finetune/readers.py reader of the task) -> encode (train/finetune/encode.py)
         -> Split

(`cgpt evaluate --attack typo` puts its typos into the examples between the two steps:
train/evaluation/attacks.py.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.errors import CgptError
from train.finetune.config import DataFiles, FinetuneConfig
from train.finetune.encode import Encoded, TokenizerLike, encode_classification, encode_generation, encode_tagging
from train.finetune.readers import (
    Example,
    LabelSet,
    label_set,
    read_classification,
    read_generation,
    read_tagging,
)


@dataclass(frozen=True)
class Split:
    """One file, encoded: `examples` as read (they keep the tags of words cut off by truncation)."""

    path: str
    task: str
    examples: list[Example]
    encoded: list[Encoded]
    truncated: int
    labels: LabelSet | None
    pad_id: int

    def describe(self, max_len: int) -> str:
        cut = f"; {self.truncated} cut to the context of {max_len} tokens" if self.truncated else ""
        return f"{self.path}: {len(self.encoded)} examples{cut}"


def read_examples(ft: FinetuneConfig, path: str | Path, with_labels: bool = True) -> list[Example]:
    """The examples in `path` for ft.task (labels read unless `with_labels` is False)."""
    if ft.task in ("classify", "regress"):
        return read_classification(path, ft.text_field, ft.label_field if with_labels else None)
    if ft.task == "tag":
        return read_tagging(path, with_labels)
    return read_generation(path)


def training_labels(ft: FinetuneConfig, examples: list[Example], path: str | Path) -> LabelSet | None:
    """The labels (classify) or tags (tag) of the training set; None for generate and regress."""
    if ft.task not in ("classify", "tag"):
        return None
    labels = label_set(examples)  # type: ignore[arg-type]
    if ft.task == "classify" and len(labels) < 2:
        raise CgptError(f"{path}: every example has label {labels.names!r}; classification needs two or more")
    return labels


def encode(
    ft: FinetuneConfig,
    path: str | Path,
    examples: list[Example],
    tokenizer: TokenizerLike,
    labels: LabelSet | None,
    max_len: int,
) -> Split:
    """Encode examples read from `path` into a Split (labels checked against `labels`)."""
    args: dict[str, Any] = {"tokenizer": tokenizer, "max_len": max_len, "strict": ft.strict}
    if ft.task == "tag":
        encoded, cut = encode_tagging(examples, labels=labels, **args)  # type: ignore[arg-type]
    elif ft.task == "generate":
        encoded, cut = encode_generation(examples, **args)  # type: ignore[arg-type]
    else:
        regression = ft.task == "regress"
        encoded, cut = encode_classification(
            examples,
            labels=labels,
            regression=regression,  # type: ignore[arg-type]
            **args,
        )
    return Split(str(path), ft.task, examples, encoded, cut, labels, tokenizer.pad_id)


def read_split(
    ft: FinetuneConfig, path: str | Path, tokenizer: TokenizerLike, labels: LabelSet | None, max_len: int
) -> Split:
    """Read and encode a labelled file (an evaluation split)."""
    return encode(ft, path, read_examples(ft, path), tokenizer, labels, max_len)


@dataclass(frozen=True)
class FinetuneData:
    train: Split
    val: Split
    test: Split | None
    labels: LabelSet | None  # from the training file only; val and test may not add any
    hash: str  # sha256 of the training file: a resumed run must see the same data


def read_data(ft: FinetuneConfig, files: DataFiles, tokenizer: TokenizerLike, max_len: int) -> FinetuneData:
    """The train (its first max_train_examples), val and test splits; labels come from train alone."""
    examples = read_examples(ft, files.train)
    if ft.max_train_examples:
        examples = examples[: ft.max_train_examples]
    labels = training_labels(ft, examples, files.train)
    train = encode(ft, files.train, examples, tokenizer, labels, max_len)
    val = read_split(ft, files.val, tokenizer, labels, max_len)
    test = read_split(ft, files.test, tokenizer, labels, max_len) if files.test else None
    return FinetuneData(train, val, test, labels, hashlib.sha256(Path(files.train).read_bytes()).hexdigest())

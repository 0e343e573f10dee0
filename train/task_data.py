"""A data file read and encoded for one fine-tuning task: the `Split` that training, evaluation and the
robustness checks all consume; and a fine-tune's three splits (`read_data`).

    path -> read_examples (the train/tasks.py reader of the task; typos) -> encode (train/encode.py) -> Split

Typos (train/attacks.py: Belinkov & Bisk 2018; Pruthi et al. 2019) are applied to the text as read, before
tokenization, the way a user's misspelling would reach the model: to classification texts, to each tagged word
(the word count, hence the tags, stay aligned) and to generation prompts (never to the response, the target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.attacks import typo, typo_words
from train.encode import Encoded, TokenizerLike, encode_classification, encode_generation, encode_tagging
from train.errors import CgptError
from train.finetune_config import DataFiles, FinetuneConfig
from train.tasks import (
    GenerationExample,
    LabelSet,
    TaggedExample,
    TextExample,
    label_set,
    read_classification,
    read_generation,
    read_tagging,
)

Example = TextExample | TaggedExample | GenerationExample


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


def with_typos(examples: list[Example], rate: float, seed: int) -> list[Example]:
    """The examples with typos in a `rate` fraction of the words; the same seed gives the same typos."""
    rng = random.Random(seed)
    out: list[Example] = []
    for ex in examples:
        if isinstance(ex, TextExample):
            out.append(dataclasses.replace(ex, text=typo(ex.text, rate, rng)))
        elif isinstance(ex, TaggedExample):
            out.append(dataclasses.replace(ex, tokens=tuple(typo_words(ex.tokens, rate, rng))))
        else:
            out.append(dataclasses.replace(ex, prompt=typo(ex.prompt, rate, rng)))
    return out


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
    ft: FinetuneConfig,
    path: str | Path,
    tokenizer: TokenizerLike,
    labels: LabelSet | None,
    max_len: int,
    typo_rate: float = 0.0,
    seed: int = 0,
) -> Split:
    """Read and encode a labelled file (an evaluation split), with typos at `typo_rate` if it is above 0."""
    examples = read_examples(ft, path)
    if typo_rate > 0:
        examples = with_typos(examples, typo_rate, seed)
    return encode(ft, path, examples, tokenizer, labels, max_len)


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

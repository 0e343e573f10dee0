"""Encoding labelled examples into token ids, and batching them: the data side of fine-tuning heads.

    examples (train/finetune/readers.py) -> encode_* -> Encoded (token ids + labels, cut to the context)
                              -> collate (one padded batch) / batches (file order) / ExampleBatches (shuffled)

Token conventions, with E the tokenizer's end-of-text id:
  classification  text + [E]; the heads read the last token, GPT-1's "extract" position (Radford et al. 2018).
  tagging         word i > 0 is encoded as " " + word, as it would be tokenized mid-sentence; its label sits
                  on its first sub-token and -100 on the rest (Devlin et al. 2019, section 5.3).
  generation      [E] + prompt + response + [E]: inputs drop the last token, labels the first (next-token
                  targets), and a label is -100 wherever the token it predicts is still [E] + prompt.
A text longer than the context is cut (and counted), or refused under `strict`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from train.errors import CgptError
from train.finetune.readers import GenerationExample, LabelSet, TaggedExample, TextExample


class TokenizerLike(Protocol):
    eot_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


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

"""Encoding labelled examples: the extract token, first sub-token labels, response-only targets, truncation
and strict mode, collation with either padding side, per-word predictions, and resumable batch order."""

from __future__ import annotations

import pytest
import torch

from train.errors import CgptError
from train.finetune.encode import (
    Encoded,
    ExampleBatches,
    batches,
    collate,
    encode_classification,
    encode_generation,
    encode_prompt,
    encode_tagging,
    word_predictions,
)
from train.finetune.readers import GenerationExample, LabelSet, TaggedExample, TextExample


class ByteTokenizer:
    """Stand-in for train.tokenizer.Tokenizer: one id per UTF-8 byte; 0 ends a text, 1 pads."""

    eot_id, pad_id, vocab_size = 0, 1, 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode())


TOK = ByteTokenizer()


# --- encoding ----------------------------------------------------------------------------------------------


def test_classification_appends_the_extract_token_and_counts_cuts() -> None:
    labels = LabelSet(("neg", "pos"))
    examples = [TextExample("hey", "pos", "f:2"), TextExample("abcdefgh", "neg", "f:3")]
    encoded, cut = encode_classification(examples, TOK, labels, max_len=5)
    assert encoded[0] == Encoded((104, 101, 121, 0), label=1, where="f:2")
    assert encoded[1].input_ids == (97, 98, 99, 100, 0) and encoded[1].label == 0 and cut == 1
    with pytest.raises(CgptError, match=r"f:3: 9 tokens exceed the context of 5"):
        encode_classification(examples, TOK, labels, max_len=5, strict=True)
    with pytest.raises(CgptError, match=r"f:2: label 'pos' never appears"):
        encode_classification(examples, TOK, LabelSet(("neg",)), max_len=5)


def test_regression_labels_are_numbers() -> None:
    encoded, _ = encode_classification([TextExample("a", "2.5", "f:2")], TOK, None, 8, regression=True)
    assert encoded[0].label == 2.5
    with pytest.raises(CgptError, match=r"f:2: label 'x' is not a number"):
        encode_classification([TextExample("a", "x", "f:2")], TOK, None, 8, regression=True)


def test_tags_sit_on_each_words_first_sub_token() -> None:
    labels = LabelSet(("B-PER", "I-PER", "O"))
    ex = TaggedExample(("Al", "Gore", "ok"), ("B-PER", "I-PER", "O"), "f:1")
    (enc,), cut = encode_tagging([ex], TOK, labels, max_len=32)
    assert enc.input_ids == tuple(b"Al Gore ok")  # words after the first carry their leading space
    assert enc.token_labels == (0, -100, 1, -100, -100, -100, -100, 2, -100, -100)
    assert enc.word_starts == (True, False, True, False, False, False, False, True, False, False)
    assert enc.n_words == 3 and cut == 0
    (short,), cut = encode_tagging([ex], TOK, labels, max_len=4)
    assert short.token_labels == (0, -100, 1, -100) and short.n_words == 3 and cut == 1
    bad = TaggedExample(("Al", "Gore"), ("B-PER", "B-LOC"), "dev:7")  # word 2 is cut off, but still checked
    with pytest.raises(CgptError, match=r"dev:7 \(word 2 'Gore'\): label 'B-LOC' never appears"):
        encode_tagging([bad], TOK, labels, max_len=2)


class PickyTokenizer(ByteTokenizer):
    def encode(self, text: str) -> list[int]:
        if "~" in text:
            raise CgptError("character '~' is not in the char tokenizer's 90 characters")
        return [] if text.strip() == "_" else super().encode(text)


def test_tokenizer_complaints_name_the_example() -> None:
    with pytest.raises(CgptError, match=r"f:3: character '~' is not in"):
        encode_classification([TextExample("a~b", None, "f:3")], PickyTokenizer(), None, 8)
    with pytest.raises(CgptError, match=r"f:4 \(word 2\): character '~'"):
        encode_tagging([TaggedExample(("a", "~"), None, "f:4")], PickyTokenizer(), None, 8)
    with pytest.raises(CgptError, match=r"f:5: word 2 '_' encodes to no tokens"):
        encode_tagging([TaggedExample(("a", "_"), None, "f:5")], PickyTokenizer(), None, 8)
    with pytest.raises(CgptError, match=r"g:1: character '~'"):
        encode_generation([GenerationExample("~", "b", "g:1")], PickyTokenizer(), 8)


def test_generation_targets_only_the_response() -> None:
    ex = GenerationExample("ab", "cd", "g:1")
    (enc,), cut = encode_generation([ex], TOK, max_len=32)
    assert encode_prompt(TOK, "ab") == [0, 97, 98]
    assert enc.input_ids == (0, 97, 98, 99, 100)  # [eot] a b c d  (the final eot is only a target)
    assert enc.token_labels == (-100, -100, 99, 100, 0)  # b predicts c, c predicts d, d predicts eot
    (short,), cut = encode_generation([ex], TOK, max_len=3)
    assert short.input_ids == (0, 97, 98) and short.token_labels == (-100, -100, 99) and cut == 1
    with pytest.raises(CgptError, match=r"g:1: the prompt alone fills the context of 2 tokens"):
        encode_generation([ex], TOK, max_len=2)


# --- batching ----------------------------------------------------------------------------------------------


def test_collate_pads_right_or_left() -> None:
    a, b = Encoded((5, 6, 7), label=1), Encoded((8,), label=0)
    right = collate([a, b], pad_id=1)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 1, 1]]
    assert right["attention_mask"].tolist() == [[True] * 3, [True, False, False]]
    assert right["labels"].tolist() == [1, 0] and right["labels"].dtype == torch.long
    left = collate([a, b], pad_id=1, padding_side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [1, 1, 8]]
    assert left["attention_mask"].tolist() == [[True] * 3, [False, False, True]]
    assert collate([Encoded((5,), label=0.5)], 1)["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="padding_side"):
        collate([a], 1, padding_side="middle")


def test_collate_token_labels_and_read_predictions_back_per_word() -> None:
    a = Encoded((5, 6, 7), token_labels=(2, -100, 0), word_starts=(True, False, True), n_words=3)
    b = Encoded((8,), token_labels=(1,), word_starts=(True,), n_words=1)
    batch = collate([a, b], pad_id=1)
    assert batch["labels"].tolist() == [[2, -100, 0], [1, -100, -100]]
    assert batch["word_starts"].tolist() == [[True, False, True], [True, False, False]]
    predictions = torch.tensor([[4, 9, 3], [2, 9, 9]])
    assert word_predictions(predictions, batch, fill=0) == [[4, 3, 0], [2]]  # a's third word was cut off


def _encoded(n: int) -> list[Encoded]:
    return [Encoded((i + 10,) * (1 + i % 3), label=i) for i in range(n)]


def test_batches_keep_file_order() -> None:
    got = [b["labels"].tolist() for b in batches(_encoded(5), 2, pad_id=1)]
    assert got == [[0, 1], [2, 3], [4]]


def test_example_batches_cover_each_epoch_once_in_a_seeded_order() -> None:
    stream = ExampleBatches(_encoded(10), batch_size=4, seed=3, pad_id=1)
    epochs = [sorted(sum((next(stream)["labels"].tolist() for _ in range(3)), [])) for _ in range(2)]
    assert epochs == [list(range(10))] * 2 and stream.epoch == 1
    first = [next(ExampleBatches(_encoded(10), 4, seed=s, pad_id=1))["labels"].tolist() for s in (3, 3, 4)]
    assert first[0] == first[1] != first[2]


def test_example_batches_resume_exactly_across_epochs() -> None:
    stream = ExampleBatches(_encoded(10), batch_size=4, seed=7, pad_id=1)
    for _ in range(5):  # into the second epoch
        next(stream)
    state = stream.state_dict()
    expected = [next(stream)["labels"].tolist() for _ in range(6)]
    resumed = ExampleBatches(_encoded(10), batch_size=4, seed=0, pad_id=1)
    resumed.load_state_dict(state)
    assert [next(resumed)["labels"].tolist() for _ in range(6)] == expected
    with pytest.raises(CgptError, match="covers 10 examples"):
        ExampleBatches(_encoded(9), 4, seed=7, pad_id=1).load_state_dict(state)

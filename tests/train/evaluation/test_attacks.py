"""Character typos: identity at rate 0, one real edit per hit word, seeded determinism, word counts kept."""

from __future__ import annotations

import random

import pytest

from train.evaluation.attacks import typo, typo_word, typo_words

TEXT = "the movie was a charming , often affecting journey ."


def test_rate_zero_is_the_identity() -> None:
    assert typo(TEXT, 0.0, random.Random(0)) == TEXT
    assert typo("  odd   spacing\tkept ", 0.0, random.Random(0)) == "  odd   spacing\tkept "


def test_rate_one_changes_every_word_by_one_edit() -> None:
    rng = random.Random(1)
    words = TEXT.split()
    out = typo_words(words, 1.0, rng)
    assert len(out) == len(words)
    for before, after in zip(words, out, strict=True):
        assert after != before and after  # every word changed, none vanished
        assert abs(len(after) - len(before)) <= 1
        if len(after) == len(before):  # a swap: the same letters
            assert sorted(after) == sorted(before)


def test_each_edit_does_what_it_says() -> None:
    seen = set()
    rng = random.Random(0)
    for _ in range(200):
        out = typo_word("abcd", rng)
        if len(out) == 3:
            seen.add("drop")
            assert any(out == "abcd"[:i] + "abcd"[i + 1 :] for i in range(4))
        elif len(out) == 5:
            seen.add("insert")
            assert any(out[:i] + out[i + 1 :] == "abcd" for i in range(5))
        else:
            seen.add("swap")
            assert out in {"bacd", "acbd", "abdc"}
    assert seen == {"drop", "insert", "swap"}
    assert typo_word("a", rng) != "a" and len(typo_word("a", rng)) == 2  # one letter: only insert fits
    assert all(len(typo_word("aa", rng)) != 2 for _ in range(20))  # no swap of equal letters


def test_the_same_seed_gives_the_same_typos() -> None:
    a = typo(TEXT, 0.3, random.Random(42))
    assert a == typo(TEXT, 0.3, random.Random(42))
    assert a != TEXT
    assert a != typo(TEXT, 0.3, random.Random(43))


def test_rate_is_roughly_the_fraction_of_words_hit() -> None:
    words = ["word"] * 2000
    hit = sum(a != b for a, b in zip(words, typo_words(words, 0.2, random.Random(0)), strict=True))
    assert 0.17 < hit / len(words) < 0.23


def test_whitespace_is_kept_and_words_stay_aligned() -> None:
    text = "  New  York\tcity "
    out = typo(text, 1.0, random.Random(3))
    assert out[:2] == "  " and out.endswith(" ") and "\t" in out
    assert len(out.split()) == 3
    with pytest.raises(ValueError, match="rate"):
        typo(text, 1.5, random.Random(0))

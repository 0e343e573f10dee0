"""Tokenizers: the BPE trainer against its reference, tiktoken compatibility, char-level, named encodings."""

from __future__ import annotations

import random

import pytest
import tiktoken
import tiktoken.load

from train.data import bpe
from train.data.tokenizer import (
    EOT,
    PAD,
    Tokenizer,
    char_tokenizer,
    dump_ranks,
    load_named,
    load_tokenizer,
    read_ranks,
    train_tokenizer,
)
from train.errors import CgptError

TEXT = (
    "The quick brown fox jumps over the lazy dog. It's 2024; the fox's 12345 jumps weren't lazy!\n"
    "def add(a, b):\n    return a + b  # sums\n\n"
    "Naïve café — déjà vu. Ελληνικά κείμενα. 日本語のテキスト。 Emoji: 🦊🐶 \t tabs\r\n"
) * 20


def corpus() -> list[str]:
    rng = random.Random(0)
    words = ["lower", "lowest", "newer", "wider", "new", "low", "wide", "the", "a", "  ", "\n", "1234", "éa"]
    return [TEXT] + [" ".join(rng.choice(words) for _ in range(200)) for _ in range(5)]


@pytest.fixture(scope="module")
def trained() -> Tokenizer:
    return train_tokenizer(corpus(), 400)


def test_fast_trainer_matches_the_reference_merge_for_merge() -> None:
    for pattern in bpe.PATTERNS.values():
        words = bpe.word_counts(bpe.count_pretokens(corpus(), pattern))
        fast = bpe.train_bpe(words, 256 + 150)
        reference = bpe.train_bpe_reference(words, 256 + 150)
        assert list(fast.items()) == list(reference.items())


def test_merge_word_is_left_to_right_and_non_overlapping() -> None:
    assert bpe.merge_word([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]


def test_vocab_size_is_exactly_as_requested(trained: Tokenizer) -> None:
    assert trained.vocab_size == 400
    assert len(trained.ranks) == 398
    assert (trained.eot_id, trained.pad_id) == (398, 399)
    assert trained.special_tokens == {EOT: 398, PAD: 399}


@pytest.mark.parametrize("pattern", ["cl100k", "gpt2"])
def test_round_trip_arbitrary_unicode(pattern: str) -> None:
    tokenizer = train_tokenizer(corpus(), 300, pattern=pattern)
    rng = random.Random(1)
    samples = [TEXT, "", " ", "\x00\x01", "<|endoftext|> is text here", "🦊" * 7]
    samples += ["".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(50)) for _ in range(20)]
    samples = [s for s in samples if not any(0xD800 <= ord(c) <= 0xDFFF for c in s)]
    for text in samples:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert all(0 <= i < tokenizer.eot_id for i in ids)  # specials never come out of ordinary text


def test_bpe_compresses_its_training_text(trained: Tokenizer) -> None:
    assert len(trained.encode(TEXT)) < len(TEXT.encode()) / 2


def test_same_text_and_vocab_give_byte_identical_files(tmp_path, trained: Tokenizer) -> None:
    again = train_tokenizer(corpus(), 400, workers=1)
    trained.save(tmp_path / "a")
    again.save(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer.tiktoken"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert trained.hash == again.hash
    assert train_tokenizer(corpus(), 401).hash != trained.hash


def test_tiktoken_file_loads_with_tiktokens_own_parser(tmp_path, monkeypatch, trained: Tokenizer) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # "" disables tiktoken's download cache
    trained.save(tmp_path)
    ranks = tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tokenizer.tiktoken"))
    assert ranks == trained.ranks == read_ranks(tmp_path / "tokenizer.tiktoken")
    encoding = tiktoken.Encoding("x", pat_str=trained.pattern, mergeable_ranks=ranks, special_tokens={})
    assert encoding.encode_ordinary(TEXT) == trained.encode(TEXT)


def test_save_load_round_trip_and_load_tokenizer_specs(tmp_path, trained: Tokenizer) -> None:
    trained.save(tmp_path)
    for spec in (tmp_path, str(tmp_path / "tokenizer.tiktoken")):
        loaded = load_tokenizer(spec)
        assert (loaded.hash, loaded.vocab_size, loaded.eot_id) == (trained.hash, 400, 398)
        assert loaded.encode(TEXT) == trained.encode(TEXT)
    assert Tokenizer.load(tmp_path).encode_batch(["ab", "cd"]) == [trained.encode("ab"), trained.encode("cd")]


def test_dump_and_read_ranks_round_trip(tmp_path) -> None:
    ranks = {bytes([i]): i for i in range(256)} | {b"\xff\x00ab": 256}
    (tmp_path / "r.tiktoken").write_bytes(dump_ranks(ranks))
    assert read_ranks(tmp_path / "r.tiktoken") == ranks
    (tmp_path / "bad.tiktoken").write_bytes(b"not-base64!! x\n")
    with pytest.raises(CgptError, match="bad.tiktoken:1"):
        read_ranks(tmp_path / "bad.tiktoken")


def test_bad_specs_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(CgptError, match="built from a corpus"):
        load_tokenizer("char")
    with pytest.raises(CgptError, match="expected a prepared directory"):
        load_tokenizer("nonsense")
    with pytest.raises(CgptError, match="next to it, missing.json"):
        load_tokenizer(str(tmp_path / "missing.tiktoken"))
    with pytest.raises(CgptError, match="not found"):
        Tokenizer.load(tmp_path)
    with pytest.raises(CgptError, match="at least 258"):
        train_tokenizer(["abc"], 100)
    with pytest.raises(CgptError, match="larger corpus"):
        train_tokenizer(["abab"], 1000)


def test_char_tokenizer() -> None:
    tokenizer = char_tokenizer(["hello world", "zebra\n"])
    assert tokenizer.chars == "\n abdehlorwz"
    assert tokenizer.vocab_size == len(tokenizer.chars) + 2
    assert (tokenizer.eot_id, tokenizer.pad_id) == (12, 13)
    ids = tokenizer.encode("hello zebra")
    assert ids == [tokenizer.chars.index(c) for c in "hello zebra"]
    assert tokenizer.decode(ids + [tokenizer.eot_id]) == "hello zebra" + EOT
    with pytest.raises(CgptError, match="'Q' is not in"):
        tokenizer.encode("Q")


def test_char_tokenizer_save_load_and_hash(tmp_path) -> None:
    tokenizer = char_tokenizer(["ünïcödé ☃ text"])
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert loaded.kind == "char" and loaded.hash == tokenizer.hash
    assert loaded.encode("☃ text") == tokenizer.encode("☃ text")
    assert char_tokenizer(["other"]).hash != tokenizer.hash


def test_named_encoding_offline_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache

    def offline(url: str) -> bytes:
        raise ConnectionError(f"no network for {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    for name in ("gpt2", "cl100k_base", "o200k_base"):
        with pytest.raises(CgptError, match=f"tokenizer '{name}': not in tiktoken's cache.*https://") as info:
            load_named(name)
        assert "\n" not in str(info.value)
    with pytest.raises(CgptError, match="expected one of"):
        load_named("p99k_base")


def test_named_encoding_from_tiktoken(monkeypatch) -> None:
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256}
    fake = tiktoken.Encoding("gpt2", pat_str=bpe.PATTERNS["gpt2"], mergeable_ranks=ranks, special_tokens={EOT: 257})
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: fake)
    tokenizer = load_tokenizer("gpt2")
    assert (tokenizer.vocab_size, tokenizer.eot_id, tokenizer.pad_id, tokenizer.name) == (
        258,
        257,
        257,
        "gpt2",
    )
    assert tokenizer.encode("abc") == [256, ord("c")]

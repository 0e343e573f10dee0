"""Token shards, `prepare` end to end on files the tests write, the samplers and the dataset."""

from __future__ import annotations

import gzip
import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from train.data.loader import RandomWindowSampler, TokenDataset
from train.data.prepare import is_val, prepare
from train.data.shards import (
    HEADER_BYTES,
    ShardWriter,
    dtype_for_vocab,
    open_shard,
    read_header,
    truncate_shard,
)
from train.data.tokenizer import Tokenizer
from train.errors import CgptError


def write_shard(path: Path, tokens: np.ndarray, dtype: np.dtype) -> None:
    with ShardWriter(path, dtype) as writer:
        writer.write(tokens)


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def write_corpus(root: Path, n_docs: int = 20) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        text = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(50 + i)) + f"\ndocument {i}\n"
        (root / f"doc{i:02d}.txt").write_text(text)
    return root


# ----------------------------------------------------------------------------------------------------------
# shards


@pytest.mark.parametrize("vocab_size, itemsize", [(67, 2), (65_536, 2), (65_537, 4), (100_277, 4)])
def test_shard_header_round_trip_and_dtype(tmp_path, vocab_size: int, itemsize: int) -> None:
    dtype = dtype_for_vocab(vocab_size)
    assert dtype.itemsize == itemsize
    tokens = np.arange(1000, dtype=np.int64) * (vocab_size - 1) // 999
    write_shard(tmp_path / "s.bin", tokens, dtype)
    assert (tmp_path / "s.bin").read_bytes()[:8] == b"CGPTTOK\0"
    assert read_header(tmp_path / "s.bin").count == 1000
    assert (tmp_path / "s.bin").stat().st_size == HEADER_BYTES + 1000 * itemsize
    np.testing.assert_array_equal(open_shard(tmp_path / "s.bin"), tokens)
    truncate_shard(tmp_path / "s.bin", 10)
    np.testing.assert_array_equal(open_shard(tmp_path / "s.bin"), tokens[:10])


def test_bad_shards_are_errors(tmp_path) -> None:
    (tmp_path / "bad.bin").write_bytes(b"\0" * 100)
    with pytest.raises(CgptError, match="bad.bin: not a token shard"):
        open_shard(tmp_path / "bad.bin")
    write_shard(tmp_path / "cut.bin", np.arange(10), np.dtype("<u2"))
    with open(tmp_path / "cut.bin", "r+b") as f:
        f.truncate(HEADER_BYTES + 5)
    with pytest.raises(CgptError, match="cut.bin: 69 bytes, but its header promises 84"):
        open_shard(tmp_path / "cut.bin")
    with ShardWriter(tmp_path / "small.bin", np.dtype("<u2")) as writer, pytest.raises(ValueError):
        writer.write(np.array([70_000]))
    assert len(open_shard(tmp_path / "small.bin")) == 0


# ----------------------------------------------------------------------------------------------------------
# prepare


def test_val_documents_are_spread_evenly() -> None:
    picks = [doc for doc in range(100) if is_val(doc, Fraction(1, 10))]
    assert picks == list(range(9, 100, 10))
    assert not is_val(0, Fraction(9, 10))


def test_prepare_mixed_inputs_end_to_end(tmp_path) -> None:
    root = write_corpus(tmp_path / "corpus", 12)
    (root / "sub").mkdir()
    (root / "sub" / "notes.md").write_text("# Notes\nsome markdown\n")
    (root / "sub" / "code.py").write_text("def f(x):\n    return x * 2\n")
    (root / "sub" / "rows.jsonl").write_text("\n".join(json.dumps({"text": f"row {i}"}) for i in range(3)))
    (root / "sub" / "packed.txt.gz").write_bytes(gzip.compress(b"zipped words here\n"))
    (root / "sub" / "image.txt").write_bytes(b"GIF89a\0\0\0binary")
    (root / "sub" / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    summary = prepare([str(root)], "char", tmp_path / "out")
    assert set(summary) == {"train_tokens", "val_tokens", "vocab_size", "bytes_per_token", "documents"}
    assert summary["documents"] == 12 + 1 + 1 + 3 + 1 + 1  # the binary file is skipped
    data = TokenDataset.open(tmp_path / "out")
    meta = data.meta
    assert meta["skipped_binary_files"] == [str(root / "sub" / "image.txt")]
    assert meta["invalid_utf8"] == {"replaced": 1, "files": {str(root / "sub" / "latin1.txt"): 1}}
    assert meta["documents"] == {"total": 19, "train": 18, "val": 1} and meta["split"]["method"] == "document"
    assert len(data.train) == summary["train_tokens"] and len(data.val) == summary["val_tokens"]
    eot = data.tokenizer.eot_id
    assert int((data.train == eot).sum()) == 18 and int((data.val == eot).sum()) == 1
    assert data.train[-1] == eot and data.val[-1] == eot
    val_text = (root / "doc09.txt").read_text()  # document 9 in corpus order: files sorted by path
    assert data.tokenizer.decode(data.val) == val_text + "<|endoftext|>"
    text_tokens = summary["train_tokens"] + summary["val_tokens"] - 19  # <|endoftext|> is not text
    assert summary["bytes_per_token"] == pytest.approx(meta["text_bytes"] / text_tokens, abs=1e-4)


def test_prepare_is_deterministic_and_worker_independent(tmp_path) -> None:
    root = write_corpus(tmp_path / "corpus", 30)
    a = prepare([str(root)], "train:300", tmp_path / "a", workers=1, chunk_chars=1024)
    b = prepare([str(root)], "train:300", tmp_path / "b", workers=2, chunk_chars=1024)
    assert a == b
    for name in ("train.bin", "val.bin", "tokenizer.json", "tokenizer.tiktoken", "meta.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    data = TokenDataset.open(tmp_path / "a")
    assert data.meta["documents"] == {"total": 30, "train": 27, "val": 3}
    assert data.tokenizer.vocab_size == 300 and data.train.dtype == np.uint16
    docs = data.tokenizer.decode(data.val).split("<|endoftext|>")[:-1]
    assert [doc.rsplit(" ", 1)[1] for doc in docs] == ["9\n", "19\n", "29\n"]


def test_single_document_is_split_by_position(tmp_path) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    (tmp_path / "one.txt").write_text(text)
    summary = prepare([str(tmp_path / "one.txt")], "char", tmp_path / "out")
    assert (summary["train_tokens"], summary["val_tokens"]) == (900, 101)  # 90% / 10% + <|endoftext|>
    data = TokenDataset.open(tmp_path / "out")
    assert data.tokenizer.decode(data.train) == text[:900]
    assert data.tokenizer.decode(data.val) == text[900:] + "<|endoftext|>"
    assert data.meta["split"]["method"] == "position"


def test_tokenizer_sample_may_end_inside_a_large_document(tmp_path) -> None:
    text = " ".join(f"{WORDS[i % 12]}{i}" for i in range(3000))
    (tmp_path / "one.txt").write_text(text)
    options = {"tokenizer_sample_mb": 0.002, "chunk_chars": 1024}  # learn from the first ~2000 characters
    summary = prepare([str(tmp_path / "one.txt")], "train:300", tmp_path / "out", **options)
    data = TokenDataset.open(tmp_path / "out")
    assert summary["documents"] == 1 and data.tokenizer.vocab_size == 300
    assert data.tokenizer.decode(np.concatenate([data.train, data.val])) == text + "<|endoftext|>"


def test_a_one_character_corpus_keeps_a_training_token(tmp_path) -> None:
    (tmp_path / "c.txt").write_text("x")
    summary = prepare([str(tmp_path / "c.txt")], "char", tmp_path / "out")
    assert (summary["train_tokens"], summary["val_tokens"]) == (1, 1)


def test_few_documents_still_get_a_validation_document(tmp_path) -> None:
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"document number {i}\n" * 10)
    summary = prepare([str(tmp_path / "*.txt")], "char", tmp_path / "out")
    data = TokenDataset.open(tmp_path / "out")
    assert data.meta["documents"] == {"total": 3, "train": 2, "val": 1}
    assert data.tokenizer.decode(data.val) == "document number 2\n" * 10 + "<|endoftext|>"
    assert summary["val_tokens"] == len(data.val)


def test_uint32_shards_for_large_vocabularies(tmp_path) -> None:
    write_corpus(tmp_path / "corpus", 3)
    ranks = {bytes([i]): i for i in range(256)}
    big = Tokenizer("bpe", "big", {"<|endoftext|>": 70_000, "<|pad|>": 70_001}, pattern=r"\S+|\s+", ranks=ranks)
    big.save(tmp_path / "tok")
    summary = prepare([str(tmp_path / "corpus")], str(tmp_path / "tok"), tmp_path / "out")
    data = TokenDataset.open(tmp_path / "out")
    assert summary["vocab_size"] == 70_002 and data.train.dtype == np.uint32
    assert data.train.max() == 70_000


@pytest.mark.parametrize(
    "make, spec, options, match",
    [
        (lambda d: None, "char", {}, "matches no .txt"),
        (lambda d: (d / "e.txt").write_text(""), "char", {}, "no text found"),
        (lambda d: (d / "e.txt").write_text("   "), "train:300", {"val_fraction": 0.0}, "val_fraction=0.0"),
        (lambda d: (d / "e.txt").write_text(""), "train:300", {}, "no text found"),
        (lambda d: (d / "w.txt").write_text(" \n\t\n"), "char", {}, "1 blank documents"),
        (lambda d: (d / "b.txt").write_bytes(b"\0\0"), "char", {}, r"1 binary files skipped"),
        (lambda d: (d / "b.txt").write_bytes(b"\0\0"), "char", {"strict": True}, "b.txt: binary file"),
        (lambda d: (d / "u.txt").write_bytes(b"\xff"), "char", {"strict": True}, "u.txt: invalid UTF-8"),
        (lambda d: (d / "t.txt").write_text("x"), "train:12", {}, "VOCAB an integer of at least 258"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, make, spec: str, options: dict, match: str) -> None:
    (tmp_path / "in").mkdir()
    make(tmp_path / "in")
    path = tmp_path / "in" / "*.txt"
    with pytest.raises(CgptError, match="missing.txt': no such file or directory"):
        prepare([str(tmp_path / "in" / "missing.txt")], "char", tmp_path / "out")
    with pytest.raises(CgptError, match=match) as info:
        prepare([str(path)], spec, tmp_path / "out", **options)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_dataset_refuses_another_tokenizer(tmp_path) -> None:
    prepare([str(write_corpus(tmp_path / "corpus", 3))], "char", tmp_path / "out")
    data = TokenDataset.open(tmp_path / "out")
    data.check_tokenizer(data.tokenizer.hash)
    with pytest.raises(
        CgptError, match=f"out: prepared with tokenizer 'char' \\(hash {data.tokenizer.hash}\\).*abc123"
    ):
        data.check_tokenizer("abc123")
    with pytest.raises(CgptError, match="meta.json: not found"):
        TokenDataset.open(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# samplers


def test_sampler_batches_are_shifted_windows() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = RandomWindowSampler(tokens, block_size=16, batch_size=4, seed=0).next_batch("cpu")
    assert x.shape == y.shape == (4, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)


def test_sampler_reaches_both_ends_of_the_data() -> None:
    tokens = np.arange(10, dtype=np.uint16)
    sampler = RandomWindowSampler(tokens, block_size=8, batch_size=64, seed=0)
    x, y = sampler.next_batch()
    assert set(x[:, 0].tolist()) == {0, 1} and y.max() == 9


def test_sampler_is_deterministic_and_restores_exactly(tmp_path) -> None:
    tokens = np.arange(5000, dtype=np.uint16)
    a = RandomWindowSampler(tokens, 32, 8, seed=1234)
    b = RandomWindowSampler(tokens, 32, 8, seed=1234)
    for _ in range(3):
        assert torch.equal(a.next_batch()[0], b.next_batch()[0])
    torch.save(a.state_dict(), tmp_path / "state.pt")
    expected = [a.next_batch()[0] for _ in range(4)]
    restored = RandomWindowSampler(tokens, 32, 8, seed=1234)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.batches == 3
    assert all(torch.equal(restored.next_batch()[0], batch) for batch in expected)
    with pytest.raises(CgptError, match="block_size=32 was saved"):
        RandomWindowSampler(tokens, 64, 8, seed=1234).load_state_dict(a.state_dict())


def test_ranks_draw_distinct_windows() -> None:
    tokens = np.arange(100_000, dtype=np.uint32)
    starts = [RandomWindowSampler(tokens, 8, 16, seed=7, rank=r, world_size=4).next_batch()[0][:, 0] for r in range(4)]
    assert len({tuple(s.tolist()) for s in starts}) == 4
    assert len(set(torch.cat(starts).tolist())) > 60
    assert not torch.equal(starts[0], RandomWindowSampler(tokens, 8, 16, seed=8).next_batch()[0][:, 0])
    # together the ranks draw exactly what one process with a 4x batch draws
    single = RandomWindowSampler(tokens, 8, 64, seed=7).next_batch()[0][:, 0]
    assert torch.equal(torch.cat(starts), single)


def test_too_little_data_for_one_window_is_an_error(tmp_path) -> None:
    write_shard(tmp_path / "val.bin", np.arange(8), np.dtype("<u2"))
    tokens = open_shard(tmp_path / "val.bin")
    with pytest.raises(CgptError, match=r"val.bin: 8 tokens, fewer than one window of block_size \+ 1 = 9"):
        RandomWindowSampler(tokens, block_size=8, batch_size=1, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_reach_cuda_through_pinned_memory() -> None:
    tokens = np.arange(1000, dtype=np.uint16)
    x, y = RandomWindowSampler(tokens, 16, 4, seed=0).next_batch("cuda")
    x_cpu, y_cpu = RandomWindowSampler(tokens, 16, 4, seed=0).next_batch("cpu")
    assert x.is_cuda and y.is_cuda and torch.equal(x.cpu(), x_cpu) and torch.equal(y.cpu(), y_cpu)


def test_state_dict_is_weights_only_loadable() -> None:
    state = RandomWindowSampler(np.arange(100), 8, 2, seed=3).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert torch.equal(loaded["generator"], state["generator"]) and loaded["seed"] == 3

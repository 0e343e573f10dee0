"""`cgpt bench tokenizer`: how fast the BPE trainer learns a vocabulary, and how well it compresses.

Reads the first `--size-mb` MB of a corpus (default: the Python standard library's sources, which every
install has), trains a byte-level BPE of `--vocab` ids on it, then encodes the same text with the result.
Prints the training time and MB/s, tiktoken's encoding MB/s and the bytes per token (UTF-8 bytes / tokens).
"""

from __future__ import annotations

import time

from train.data.corpus import CorpusStats, ReadOptions, read_corpus, resolve_inputs
from train.data.tokenizer import train_tokenizer


def read_text(inputs: list[str], size_bytes: int, cache_dir: str | None = None) -> list[str]:
    """Document pieces from `inputs`, in order, cut so that their UTF-8 total is at most `size_bytes`."""
    texts, total = [], 0
    for piece in read_corpus(resolve_inputs(inputs, cache_dir), ReadOptions(), CorpusStats()):
        data = piece.text.encode("utf-8", "surrogatepass")
        if total + len(data) >= size_bytes:
            texts.append(data[: size_bytes - total].decode("utf-8", "ignore"))
            break
        texts.append(piece.text)
        total += len(data)
    return texts


def bench_tokenizer(
    inputs: list[str],
    size_mb: float,
    vocab: int,
    pattern: str = "cl100k",
    workers: int = 1,
    cache_dir: str | None = None,
) -> dict:
    texts = read_text(inputs, int(size_mb * 1e6), cache_dir)
    n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    start = time.perf_counter()
    tokenizer = train_tokenizer(texts, vocab, pattern=pattern, workers=workers)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    n_tokens = sum(len(ids) for ids in tokenizer.encode_batch(texts))
    encode_s = time.perf_counter() - start
    return {
        "inputs": inputs,
        "mb": round(n_bytes / 1e6, 3),
        "vocab_size": tokenizer.vocab_size,
        "pattern": pattern,
        "workers": workers,
        "train_s": round(train_s, 2),
        "train_mb_per_s": round(n_bytes / 1e6 / train_s, 3),
        "encode_mb_per_s": round(n_bytes / 1e6 / encode_s, 2),
        "bytes_per_token": round(n_bytes / max(n_tokens, 1), 3),
        "tokenizer_hash": tokenizer.hash,
    }


def report(result: dict) -> str:
    """The benchmark's result as the lines `cgpt bench tokenizer` prints."""
    return "\n".join(
        [
            f"BPE trainer: vocab {result['vocab_size']} ({result['pattern']} pre-tokenisation) on {result['mb']} MB "
            f"of {' '.join(result['inputs'])}, {result['workers']} worker(s)",
            f"  train   {result['train_s']:8.2f} s  {result['train_mb_per_s']:8.3f} MB/s",
            f"  encode  {result['encode_mb_per_s']:8.2f} MB/s (tiktoken)",
            f"  bytes/token {result['bytes_per_token']:.3f}",
        ]
    )

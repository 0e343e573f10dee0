"""A language model on held-out text: mean loss per token, perplexity, and bits per byte.

    text files --(prepare's readers)--> documents --(the run's tokenizer)--> one token stream:
        [eot] doc_1 [eot] doc_2 [eot] ...        (the leading end-of-text is context: every text token is scored)
    windows of block_size tokens, `stride` apart --> the summed next-token loss of every token, scored once

With stride = block_size the windows do not overlap (every token sees on average half a context); a smaller
stride slides them, so each scored token sees at least block_size - stride tokens of context, at the cost of
block_size / stride times the compute (the standard sliding-window perplexity of fixed-length models). Only
the last `stride` targets of each window after the first are scored, so every token counts exactly once.

Bits per byte = (summed loss in nats) / ln 2 / (UTF-8 bytes of the text): unlike loss per token, it does not
depend on the tokenizer, so runs with different vocabularies compare (Gao et al. 2020, The Pile). The
end-of-text tokens are scored like any other and carry no bytes.

`score_tokens` is the one scoring function: `cgpt evaluate` on a pretraining run, the training loop's periodic
validation (first windows only) and the full validation pass at the end of `pretrain` all call it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.data.corpus import CorpusStats, ReadOptions, first_line_with, read_corpus, resolve_inputs
from train.data.loader import to_device
from train.data.tokenizer import Tokenizer, UnknownCharacter
from train.errors import CgptError

LN2 = math.log(2.0)


def windows(n_tokens: int, block_size: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(start, length, first scored target) of each window over a stream of `n_tokens`: inputs are
    tokens[start : start + length], targets tokens[start + 1 : start + length + 1], of which those from the
    `first scored` on count. Together the windows score targets 1 .. n_tokens - 1, each once."""
    if not 1 <= stride <= block_size:
        raise CgptError(f"--stride={stride}: expected a number of tokens from 1 to the context, {block_size}")
    scored = 1  # the next target index (into the stream) not yet scored
    while scored < n_tokens:
        end = min(scored - 1 + stride, n_tokens - 1) if scored > 1 else min(block_size, n_tokens - 1)
        start = max(0, end - block_size)  # the window ends at input `end` - 1, target `end`
        yield start, end - start, scored - 1 - start
        scored = end + 1


def score_tokens(
    model: nn.Module,
    tokens: np.ndarray,
    block_size: int,
    stride: int,
    batch_size: int,
    device: torch.device,
    max_windows: int | None = None,
    rank: int = 0,
    world: int = 1,
) -> tuple[float, int]:
    """(summed next-token loss in nats, tokens scored) over the first `max_windows` windows of `tokens` (all by
    default); rank r of `world` scores windows r, r + world, ... (sum the results over ranks)."""
    spans = list(windows(len(tokens), block_size, stride))[:max_windows][rank::world]
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    for length, group in _by_length(spans):
        for i in range(0, len(group), batch_size):
            batch = group[i : i + batch_size]
            x = torch.from_numpy(np.stack([tokens[s : s + length] for s, _ in batch]).astype(np.int64))
            y = torch.from_numpy(np.stack([tokens[s + 1 : s + length + 1] for s, _ in batch]).astype(np.int64))
            for row, (_, first) in enumerate(batch):
                y[row, :first] = -100  # context only: scored by an earlier window
            n = int((y != -100).sum())
            _, loss = model(to_device(x, device), to_device(y, device))
            total += loss.double() * n  # the model's loss is the mean over the scored targets
            count += n
    return float(total), count


def _by_length(spans: Sequence[tuple[int, int, int]]) -> list[tuple[int, list[tuple[int, int]]]]:
    """Windows grouped by length (all but the last are block_size long), keeping their order."""
    groups: dict[int, list[tuple[int, int]]] = {}
    for start, length, first in spans:
        groups.setdefault(length, []).append((start, first))
    return list(groups.items())


def summarise(nll: float, tokens: int, n_bytes: int) -> dict[str, Any]:
    loss = nll / max(tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_byte": nll / LN2 / n_bytes if n_bytes else None,
        "tokens": tokens,
        "bytes": n_bytes,
    }


def text_bytes(tokenizer: Tokenizer, tokens: np.ndarray) -> int:
    """UTF-8 bytes of the text a token stream spells (special tokens spell none)."""
    specials = np.array(sorted(tokenizer.special_tokens.values()))
    text = tokenizer.decode(tokens[~np.isin(tokens, specials)])
    return len(text.encode("utf-8", "surrogatepass"))


def encode_files(
    files: Sequence[str], tokenizer: Tokenizer, cache_dir: str | None = None, max_tokens: int | None = None
) -> tuple[np.ndarray, int]:
    """The token stream [eot] doc [eot] doc ... of the documents in `files` (prepare's readers: files,
    directories, globs, .gz, .jsonl, Gutenberg headers stripped), and the UTF-8 bytes of their text; with
    `max_tokens`, whole pieces are read until the stream holds at least that many tokens."""
    paths = resolve_inputs(files, cache_dir)
    stream, n_bytes, n_tokens = [np.array([tokenizer.eot_id], dtype=np.int64)], 0, 1
    for piece in read_corpus(paths, ReadOptions(), CorpusStats()):
        if max_tokens is not None and n_tokens >= max_tokens:
            break
        try:
            ids = tokenizer.encode_array(piece.text)
        except UnknownCharacter as err:
            raise CgptError(f"{first_line_with(paths, err.char)}: {err}") from None
        stream.append(ids if not piece.last else np.append(ids, tokenizer.eot_id))
        n_tokens += len(stream[-1])
        n_bytes += len(piece.text.encode("utf-8", "surrogatepass"))
    if n_bytes == 0:
        raise CgptError(f"{', '.join(files)}: no text to evaluate")
    return np.concatenate(stream), n_bytes


@torch.no_grad()
def evaluate_text(
    run_dir: str | Path,
    files: Sequence[str],
    stride: int | None = None,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int = 8,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """Loss, perplexity and bits per byte of a pretraining (or generation) run on raw text files: what
    `cgpt evaluate --run PRETRAIN_RUN --data FILE ... --json` prints. `max_tokens` stops reading the files
    once that many tokens are in (whole pieces of documents: the bytes still match the tokens)."""
    from train.runs import load_language_model  # (the run loader needs the fine-tuning side; this module not)
    from train.runtime.hardware import autocast, resolve_dtype

    model, tokenizer = load_language_model(run_dir, checkpoint, device)
    block_size = model.config.block_size
    stride = stride or block_size
    tokens, n_bytes = encode_files(files, tokenizer, max_tokens=max_tokens)
    dev = next(model.parameters()).device
    with autocast(dev, resolve_dtype("auto", dev)):
        nll, scored = score_tokens(model, tokens, block_size, stride, batch_size, dev)
    return {**summarise(nll, scored, n_bytes), "stride": stride, "files": list(files)}


def describe_lm(result: dict[str, Any]) -> str:
    bpb = "n/a" if result["bits_per_byte"] is None else f"{result['bits_per_byte']:.4f}"
    return (
        f"{', '.join(result['files'])}: {result['tokens']:,} tokens ({result['bytes']:,} bytes), stride "
        f"{result['stride']}\nloss {result['loss']:.4f} nats/token  perplexity {result['perplexity']:.2f}  "
        f"bits per byte {bpb}"
    )

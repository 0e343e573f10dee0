"""`prepare`: a pile of raw text -> a tokenizer, train/val token shards and `meta.json`, in bounded memory.

    inputs --resolve--> files --read--> pieces of documents --encode (worker processes)--> train.bin / val.bin

The tokenizer comes first: loaded (a named encoding, a `.tiktoken` file, a directory), or built by one pass
over the corpus (`char`: its characters; `train:VOCAB`: BPE on the first `tokenizer_sample_mb` million
characters). It is saved next to the shards, and workers load it from there. Every document ends with
`<|endoftext|>`.

The split is by document and deterministic: document i goes to validation when the running count
floor((i + 1) * f) steps up, which spreads validation documents evenly through the corpus. If that leaves
validation empty, the last document moves there; a corpus of a single document (tinyshakespeare) is split by
position instead, the first 90% of its tokens for training and the rest for validation, as nanoGPT does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tqdm import tqdm

from train.data.corpus import CorpusStats, Piece, ReadOptions, first_line_with, read_corpus, resolve_inputs
from train.data.pool import ordered_map
from train.data.shards import META_FILE, TRAIN_FILE, VAL_FILE, ShardWriter, dtype_for_vocab, open_shard, truncate_shard
from train.data.tokenizer import Tokenizer, UnknownCharacter, char_tokenizer, load_tokenizer, train_tokenizer
from train.errors import CgptError

FORMAT = "cgpt-tokens"


@dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[str, ...]
    tokenizer: str  # train:VOCAB | FILE.tiktoken | DIR | gpt2 | cl100k_base | o200k_base | char
    out_dir: str
    val_fraction: float = 0.1
    strict: bool = False  # binary files and invalid UTF-8 are errors, not skipped / replaced
    jsonl_field: str = "text"
    cache_dir: str | None = None  # where named datasets are looked for (and downloaded to)
    workers: int = 1  # encoding processes; the output does not depend on it
    max_files: int | None = None  # only the first N files (quick runs)
    tokenizer_sample_mb: float = 100.0  # train:VOCAB learns from the first this many million characters
    chunk_chars: int = 1 << 20  # text per work item: bounds memory per worker
    progress: bool = False
    force: bool = False  # replace an --out folder that already holds prepared data (or anything else)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise CgptError("inputs: expected at least one path, glob, 'stdlib' or dataset name")
        if not 0 < self.val_fraction < 1:
            raise CgptError(f"val_fraction={self.val_fraction}: expected a number between 0 and 1")
        if self.workers < 1:
            raise CgptError(f"workers={self.workers}: expected at least 1")
        if self.max_files is not None and self.max_files < 1:
            raise CgptError(f"max_files={self.max_files}: expected at least 1")
        if self.tokenizer_sample_mb <= 0:
            raise CgptError(f"tokenizer_sample_mb={self.tokenizer_sample_mb}: expected a positive number")
        if self.tokenizer.startswith("train:"):
            _vocab_size(self.tokenizer)


def _vocab_size(spec: str) -> int:
    value = spec.removeprefix("train:")
    if not value.isdigit() or int(value) < 258:
        raise CgptError(f"tokenizer={spec!r}: expected train:VOCAB with VOCAB an integer of at least 258")
    return int(value)


def prepare(
    inputs: Iterable[str],
    tokenizer_spec: str,
    out_dir: str | Path,
    val_fraction: float = 0.1,
    **options: object,
) -> dict:
    """Prepare `inputs` into `out_dir`; returns the summary that `cgpt prepare --json` prints."""
    config = PrepareConfig(tuple(inputs), tokenizer_spec, str(out_dir), val_fraction, **options)  # type: ignore[arg-type]
    return run_prepare(config)


def run_prepare(config: PrepareConfig) -> dict:
    """Prepare into a temporary sibling of `config.out_dir`, renamed into place only when complete: a failed or
    killed prepare leaves the folder as it was (and an existing one is replaced only with `force`)."""
    final = Path(config.out_dir)
    if final.exists() and not final.is_dir():
        raise CgptError(f"{final}: exists and is not a directory")
    if final.is_dir() and any(final.iterdir()) and not config.force:
        held = "prepared data" if (final / META_FILE).exists() else "files"
        raise CgptError(f"{final}: already holds {held}; pass --force to replace it, or choose another --out")
    files = resolve_inputs(config.inputs, config.cache_dir, config.max_files)
    created = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed prepare
        shutil.rmtree(stale, ignore_errors=True)
    staging = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()  # (not tempfile.mkdtemp: its mode 0o700 would end up on the prepared folder)
    try:
        result = _prepare_into(dataclasses.replace(config, out_dir=str(staging)), files)
        _swap_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return result


def _swap_into_place(staging: Path, final: Path) -> None:
    """Rename the finished folder over `final`; an old one is moved aside first and removed last."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old.tmp")
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _prepare_into(config: PrepareConfig, files: list[Path]) -> dict:
    out = Path(config.out_dir)
    options = ReadOptions(config.strict, config.jsonl_field, config.chunk_chars)
    tokenizer = build_tokenizer(config, files, options)
    tokenizer.save(out)
    stats = CorpusStats()
    try:
        counts = encode_corpus(config, files, options, stats, tokenizer)
    except UnknownCharacter as err:  # name the file and line, and the tokenizer
        where = first_line_with(files, err.char)
        raise CgptError(f"{where}: character {err.char!r} is not in {tokenizer.origin}'s {err.n_chars} characters "
                        f"(a char tokenizer knows only the characters it was built from)") from None  # fmt: skip
    meta = make_meta(config, tokenizer, stats, counts)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return summary(meta)


def summary(meta: dict) -> dict:
    return {
        "train_tokens": meta["tokens"]["train"],
        "val_tokens": meta["tokens"]["val"],
        "vocab_size": meta["tokenizer"]["vocab_size"],
        "bytes_per_token": meta["bytes_per_token"],
        "documents": meta["documents"]["total"],
    }


def _empty(config: PrepareConfig, stats: CorpusStats) -> CgptError:
    return CgptError(
        f"inputs {', '.join(config.inputs)}: no text found ({len(stats.files)} files read, "
        f"{len(stats.skipped_binary)} binary files skipped, {stats.blank_documents} blank documents); expected "
        "at least one document with text"
    )


# ----------------------------------------------------------------------------------------------------------
# the tokenizer


def _texts(pieces: Iterable[Piece], max_chars: int | None = None) -> Iterator[str]:
    seen = 0
    for piece in pieces:
        if max_chars is not None and seen >= max_chars:
            return
        seen += len(piece.text)
        yield piece.text


def build_tokenizer(config: PrepareConfig, files: list[Path], options: ReadOptions) -> Tokenizer:
    """Load the requested tokenizer, or build it from a pass over (a sample of) the corpus."""
    if config.tokenizer != "char" and not config.tokenizer.startswith("train:"):
        return load_tokenizer(config.tokenizer)
    stats = CorpusStats()
    pieces = read_corpus(files, options, stats)
    if config.tokenizer == "char":
        tokenizer = char_tokenizer(_texts(pieces))
        if stats.documents == 0:
            raise _empty(config, stats)
        return tokenizer
    sample = _checked_nonempty(_texts(pieces, int(config.tokenizer_sample_mb * 1e6)), config, stats)
    return train_tokenizer(sample, _vocab_size(config.tokenizer), workers=config.workers)


def _checked_nonempty(texts: Iterator[str], config: PrepareConfig, stats: CorpusStats) -> Iterator[str]:
    """`texts`, raising the empty-corpus error (rather than BPE's "too few pairs") if there are none."""
    first = next(texts, None)
    if first is None:
        raise _empty(config, stats)
    yield first
    yield from texts


# ----------------------------------------------------------------------------------------------------------
# encoding into shards


@dataclass
class SplitCounts:
    train_tokens: int = 0
    val_tokens: int = 0
    train_documents: int = 0
    val_documents: int = 0
    text_bytes: int = 0
    method: str = "document"


def is_val(doc: int, fraction: Fraction) -> bool:
    """Document `doc` goes to validation when floor((doc + 1) * fraction) steps up (never doc 0)."""
    return math.floor((doc + 1) * fraction) > math.floor(doc * fraction)


def _batches(pieces: Iterable[Piece], max_chars: int) -> Iterator[list[Piece]]:
    batch: list[Piece] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece.text)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encode(tokenizer: Tokenizer, batch: list[Piece]) -> list[tuple[int, np.ndarray, int]]:
    """(document, token ids with <|endoftext|> after a document's last piece, UTF-8 bytes) per piece."""
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    out = []
    for piece in batch:
        ids = tokenizer.encode_array(piece.text)
        if piece.last:
            ids = np.append(ids, tokenizer.eot_id)
        out.append((piece.doc, ids.astype(dtype), len(piece.text.encode("utf-8", "surrogatepass"))))
    return out


def encode_corpus(
    config: PrepareConfig, files: list[Path], options: ReadOptions, stats: CorpusStats, tokenizer: Tokenizer
) -> SplitCounts:
    """Encode every document into train.bin / val.bin under `config.out_dir`."""
    out, dtype = Path(config.out_dir), dtype_for_vocab(tokenizer.vocab_size)
    fraction = Fraction(config.val_fraction).limit_denominator(1_000_000)
    make_context = functools.partial(Tokenizer.load, out) if config.workers > 1 else lambda: tokenizer
    batches = _batches(read_corpus(files, options, stats), config.chunk_chars)
    counts, current, last_train_start = SplitCounts(), -1, 0
    total = sum(path.stat().st_size for path in files)
    with (
        ShardWriter(out / TRAIN_FILE, dtype) as train,
        ShardWriter(out / VAL_FILE, dtype) as val,
        tqdm(total=total, unit="B", unit_scale=True, disable=not config.progress) as bar,
    ):
        for results in ordered_map(_encode, batches, config.workers, make_context):
            for doc, ids, n_bytes in results:
                to_val = is_val(doc, fraction)
                if doc != current:
                    current = doc
                    counts.val_documents += to_val
                    counts.train_documents += not to_val
                    last_train_start = last_train_start if to_val else train.count
                (val if to_val else train).write(ids)
                counts.text_bytes += n_bytes
                bar.update(n_bytes)
    if stats.documents == 0:
        (out / TRAIN_FILE).unlink()
        (out / VAL_FILE).unlink()
        raise _empty(config, stats)
    counts.train_tokens, counts.val_tokens = train.count, val.count
    if counts.val_tokens == 0:
        _move_tail_to_val(out, counts, last_train_start, config.val_fraction)
    return counts


def _move_tail_to_val(out: Path, counts: SplitCounts, last_start: int, val_fraction: float) -> None:
    """Give validation the last document, or the last `val_fraction` of a corpus that is one document."""
    if counts.train_documents == 1:
        content = counts.train_tokens - 1  # the <|endoftext|> stays with the end of the document
        start = max(1, int(content * (1 - val_fraction)))
        counts.method, counts.val_documents = "position", 1
    else:
        start = last_start
        counts.train_documents, counts.val_documents = counts.train_documents - 1, 1
    tokens = open_shard(out / TRAIN_FILE)
    with ShardWriter(out / VAL_FILE, tokens.dtype) as val:
        for i in range(start, len(tokens), 1 << 24):
            val.write(np.asarray(tokens[i : i + (1 << 24)]))
    del tokens  # unmap before truncating the file under it
    truncate_shard(out / TRAIN_FILE, start)
    counts.train_tokens, counts.val_tokens = start, counts.train_tokens - start


def make_meta(config: PrepareConfig, tokenizer: Tokenizer, stats: CorpusStats, counts: SplitCounts) -> dict:
    specials = counts.train_documents + counts.val_documents - (counts.method == "position")
    text_tokens = counts.train_tokens + counts.val_tokens - specials  # <|endoftext|> carries no text
    return {
        "format": FORMAT,
        "version": 1,
        "tokenizer": {
            "name": tokenizer.name,
            "kind": tokenizer.kind,
            "hash": tokenizer.hash,
            "vocab_size": tokenizer.vocab_size,
            "eot_id": tokenizer.eot_id,
            "pad_id": tokenizer.pad_id,
        },
        "dtype": str(dtype_for_vocab(tokenizer.vocab_size)),
        "files": {"train": TRAIN_FILE, "val": VAL_FILE},
        "split": {"method": counts.method, "val_fraction": config.val_fraction},
        "documents": {"total": stats.documents, "train": counts.train_documents, "val": counts.val_documents},
        "tokens": {"train": counts.train_tokens, "val": counts.val_tokens},
        "text_bytes": counts.text_bytes,
        "bytes_per_token": round(counts.text_bytes / max(text_tokens, 1), 4),
        "inputs": list(config.inputs),
        "input_files": stats.files,
        "skipped_binary_files": stats.skipped_binary,
        "invalid_utf8": {"replaced": sum(stats.invalid_utf8.values()), "files": stats.invalid_utf8},
        "gutenberg_stripped": stats.gutenberg_stripped,
        "blank_documents_skipped": stats.blank_documents,
        "config": {k: v for k, v in asdict(config).items() if k not in ("progress", "out_dir", "workers", "force")},
    }

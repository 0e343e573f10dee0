"""Token shards: one flat array of token ids per split, behind a small fixed header, read by memory-mapping.

Layout (little-endian), after llm.c's `.bin` files:

    offset  size  field
    0       8     magic  b"CGPTTOK\\0"
    8       4     version (1)
    12      4     bytes per token: 2 (uint16) or 4 (uint32)
    16      8     count: number of tokens
    24      40    zeros (reserved), so the tokens start 64-byte aligned
    64      ...   count tokens

uint16 holds any vocabulary of at most 65,536 ids (GPT-2's 50,257 included); larger ones need uint32.
`ShardWriter` streams tokens to disk and writes the count last; `open_shard` maps a shard read-only.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.errors import CgptError

# a prepared data directory: the two shards, the tokenizer files and meta.json (written last, by prepare)
META_FILE, TRAIN_FILE, VAL_FILE = "meta.json", "train.bin", "val.bin"
MAGIC = b"CGPTTOK\0"
VERSION = 1
HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIQ")
_DTYPES = {2: np.dtype("<u2"), 4: np.dtype("<u4")}


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """The smallest token dtype that holds every id below `vocab_size`."""
    return _DTYPES[2] if vocab_size <= 1 << 16 else _DTYPES[4]


@dataclass(frozen=True)
class ShardHeader:
    dtype: np.dtype
    count: int

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, VERSION, self.dtype.itemsize, self.count).ljust(HEADER_BYTES, b"\0")


def read_header(path: str | Path) -> ShardHeader:
    """The header of a shard; an error naming the file if it is not one or is cut short."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as err:
        raise CgptError(f"{path}: cannot read token shard ({err})") from err
    if len(raw) < HEADER_BYTES or raw[:8] != MAGIC:
        raise CgptError(f"{path}: not a token shard (expected magic {MAGIC!r}); run `cgpt prepare` again")
    _, version, itemsize, count = _HEADER.unpack(raw[: _HEADER.size])
    if version != VERSION or itemsize not in _DTYPES:
        raise CgptError(
            f"{path}: shard version {version}, {itemsize}-byte tokens; expected version "
            f"{VERSION} with 2- or 4-byte tokens"
        )
    expected = HEADER_BYTES + count * itemsize
    if path.stat().st_size != expected:
        raise CgptError(f"{path}: {path.stat().st_size} bytes, but its header promises {expected}")
    return ShardHeader(_DTYPES[itemsize], count)


def open_shard(path: str | Path) -> np.ndarray:
    """The shard's tokens as a read-only 1-D memmap (an empty array for an empty shard)."""
    header = read_header(path)
    if header.count == 0:
        return np.empty(0, dtype=header.dtype)
    return np.memmap(path, dtype=header.dtype, mode="r", offset=HEADER_BYTES, shape=(header.count,))


class ShardWriter:
    """Append tokens to a new shard; `close` writes the final count into the header."""

    def __init__(self, path: str | Path, dtype: np.dtype) -> None:
        self.path, self.dtype, self.count = Path(path), np.dtype(dtype), 0
        self._max = np.iinfo(self.dtype).max
        self._file = open(self.path, "wb")
        self._file.write(ShardHeader(self.dtype, 0).pack())

    def write(self, tokens: np.ndarray) -> None:
        if len(tokens) and int(tokens.max()) > self._max:
            raise ValueError(f"token id {int(tokens.max())} does not fit {self.dtype} in {self.path}")
        self._file.write(np.ascontiguousarray(tokens, dtype=self.dtype).tobytes())
        self.count += len(tokens)

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.seek(0)
        self._file.write(ShardHeader(self.dtype, self.count).pack())
        self._file.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_shard(path: str | Path, count: int) -> None:
    """Keep only the first `count` tokens of a shard (used to move its tail to another split)."""
    header = read_header(path)
    if not 0 <= count <= header.count:
        raise ValueError(f"cannot truncate {path} from {header.count} to {count} tokens")
    os.truncate(path, HEADER_BYTES + count * header.dtype.itemsize)
    with open(path, "r+b") as f:
        f.write(ShardHeader(header.dtype, count).pack())

"""Tokenizers: a byte-level BPE trained here, tiktoken's named encodings, and a character-level one.

Every tokenizer is a `Tokenizer`: `encode` (ordinary text, special tokens are not parsed), `decode`,
`vocab_size` (what the model's embedding needs, specials included), `eot_id`, `pad_id`, and a `hash` of its
definition that prepared data and checkpoints record, so a model never reads tokens it was not made for.

BPE tokenizers (ours and OpenAI's) are tiktoken `Encoding`s, so encoding runs at tiktoken's speed. A trained
one (`train_tokenizer`, the merges come from `train/data/bpe.py`) has `vocab_size - 2` mergeable ranks followed by
`<|endoftext|>` and `<|pad|>`. Named encodings keep their own ids; their pad is `<|endoftext|>` (they have no
pad). The character tokenizer's vocabulary is the sorted set of a corpus's characters, then the two specials.

On disk (`save`/`load`): `tokenizer.json` (kind, name, pattern, special tokens, the characters for `char`)
and, for BPE, `tokenizer.tiktoken` in tiktoken's own format (one `base64(token) rank` per line, by rank). The
same definition always gives the same bytes, and `hash` is the sha256 of those bytes."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tiktoken

from train.data import bpe
from train.data.pool import ordered_map
from train.errors import CgptError

EOT = "<|endoftext|>"
PAD = "<|pad|>"
FORMAT = "cgpt-tokenizer"
JSON_FILE, RANKS_FILE = "tokenizer.json", "tokenizer.tiktoken"
# tiktoken's named encodings that this project accepts, and where tiktoken downloads each from.
NAMED_ENCODINGS: dict[str, str] = {
    "gpt2": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


class UnknownCharacter(CgptError):
    """Text holds a character a char tokenizer does not have; callers add the file:line and the tokenizer."""

    def __init__(self, char: str, n_chars: int, origin: str = "the char tokenizer") -> None:
        self.char, self.n_chars, self.origin = char, n_chars, origin
        super().__init__(f"character {char!r} is not in {origin}'s {n_chars} characters")

    def __reduce__(self) -> tuple:  # raised in prepare's worker processes: it must survive pickling
        return UnknownCharacter, (self.char, self.n_chars, self.origin)


class CharEncoding:
    """A tiktoken-shaped character-level encoding: one id per character of a fixed alphabet, then specials."""

    def __init__(self, chars: str, special_tokens: dict[str, int]) -> None:
        self.chars = chars
        self.special_tokens = special_tokens
        self._codepoints = np.array([ord(c) for c in chars], dtype=np.uint32)  # sorted, as `chars` is
        self._itos = list(chars) + [""] * len(special_tokens)
        for token, i in special_tokens.items():
            self._itos[i] = token
        self.n_vocab = len(self._itos)

    def encode_ordinary(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def encode_array(self, text: str) -> np.ndarray:
        """Ids as an int64 array; vectorised through the code points, so a megabyte takes milliseconds."""
        points = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
        ids = np.searchsorted(self._codepoints, points).clip(max=max(len(self.chars) - 1, 0))
        unknown = self._codepoints[ids] != points if len(self.chars) else np.ones(len(points), dtype=bool)
        if unknown.any():
            char = chr(points[np.argmax(unknown)])
            raise UnknownCharacter(char, len(self.chars))
        return ids.astype(np.int64)

    def encode_ordinary_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode_ordinary(text) for text in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._itos[i] for i in ids)


class Tokenizer:
    """One tokenizer definition (BPE ranks + pattern, or characters) with its special tokens."""

    def __init__(
        self,
        kind: str,
        name: str,
        special_tokens: dict[str, int],
        pad: str = PAD,
        pattern: str = "",
        ranks: dict[bytes, int] | None = None,
        chars: str = "",
    ) -> None:
        if kind not in ("bpe", "char"):
            raise ValueError(f"kind={kind!r}: expected 'bpe' or 'char'")
        self.kind, self.name, self.pattern = kind, name, pattern
        self.special_tokens = dict(special_tokens)
        self.ranks, self.chars, self.pad = ranks or {}, chars, pad
        if kind == "bpe":
            self.encoding: tiktoken.Encoding | CharEncoding = tiktoken.Encoding(
                name, pat_str=pattern, mergeable_ranks=self.ranks, special_tokens=self.special_tokens
            )
        else:
            self.encoding = CharEncoding(chars, self.special_tokens)
        self.vocab_size: int = self.encoding.n_vocab
        self.origin = name  # where it was loaded from, for messages (not part of the definition or its hash)
        self.eot_id: int = self.special_tokens[EOT]
        self.pad_id: int = self.special_tokens[pad]

    def __repr__(self) -> str:
        return f"Tokenizer({self.kind}, name={self.name!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str) -> list[int]:
        """Token ids of ordinary text: an `<|endoftext|>` in the text is text, never the special token."""
        try:
            return self.encoding.encode_ordinary(text)
        except UnknownCharacter as err:  # name this tokenizer; callers add the file:line or the flag
            raise UnknownCharacter(err.char, err.n_chars, f"the char tokenizer of {self.origin}") from None

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts))

    def encode_array(self, text: str) -> np.ndarray:
        """`encode` as an int64 array (the char tokenizer skips the Python list)."""
        if isinstance(self.encoding, CharEncoding):
            try:
                return self.encoding.encode_array(text)
            except UnknownCharacter as err:
                raise UnknownCharacter(err.char, err.n_chars, f"the char tokenizer of {self.origin}") from None
        return np.asarray(self.encoding.encode_ordinary(text), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode([int(i) for i in ids])

    def files(self) -> dict[str, bytes]:
        """The tokenizer's files, name -> bytes; the same definition always gives the same bytes."""
        spec: dict[str, object] = {"format": FORMAT, "version": 1, "kind": self.kind, "name": self.name}
        spec.update(special_tokens=self.special_tokens, eot=EOT, pad=self.pad)
        out: dict[str, bytes] = {}
        if self.kind == "bpe":
            spec.update(pattern=self.pattern, ranks=RANKS_FILE)
            out[RANKS_FILE] = dump_ranks(self.ranks)
        else:
            spec["chars"] = self.chars
        out[JSON_FILE] = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()
        return out

    @functools.cached_property
    def hash(self) -> str:
        """sha256 over the tokenizer's files: equal hashes mean equal token ids for every text."""
        digest = hashlib.sha256()
        for name, data in sorted(self.files().items()):
            digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        return digest.hexdigest()

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files().items():
            (directory / name).write_bytes(data)

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """The tokenizer saved in `directory` (a prepared data directory or a run directory)."""
        path = Path(directory) / JSON_FILE
        if not path.is_file():
            raise CgptError(f"{path}: not found; expected the tokenizer files that `cgpt prepare` writes")
        tokenizer = _from_json(path)
        tokenizer.origin = str(directory)
        return tokenizer


def dump_ranks(ranks: dict[bytes, int]) -> bytes:
    """Mergeable ranks in tiktoken's `.tiktoken` format: `base64(token) rank` per line, by rank."""
    lines = (base64.b64encode(token) + b" %d\n" % rank for token, rank in sorted(ranks.items(), key=_rank))
    return b"".join(lines)


def _rank(item: tuple[bytes, int]) -> int:
    return item[1]


def read_ranks(path: Path) -> dict[bytes, int]:
    """Parse a `.tiktoken` file (the format of tiktoken's `load_tiktoken_bpe`, without its download cache)."""
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as err:
            raise CgptError(f"{path}:{number}: expected 'base64-token rank', got {line[:60]!r}") from err
    return ranks


def _from_json(path: Path) -> Tokenizer:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        kind, name, specials, pad = spec["kind"], spec["name"], spec["special_tokens"], spec["pad"]
    except (ValueError, KeyError, TypeError) as err:
        raise CgptError(f"{path}: not a {FORMAT} file (kind, name, special_tokens, pad): {err}") from err
    if kind == "char":
        return Tokenizer("char", name, specials, pad=pad, chars=spec.get("chars", ""))
    ranks = read_ranks(path.parent / spec.get("ranks", RANKS_FILE))
    return Tokenizer("bpe", name, specials, pad=pad, pattern=spec.get("pattern", ""), ranks=ranks)


# ----------------------------------------------------------------------------------------------------------
# building tokenizers: named, from a .tiktoken file, trained on a corpus, character-level


def load_named(name: str) -> Tokenizer:
    """One of tiktoken's encodings, from its cache or downloaded by tiktoken; a clear error otherwise."""
    if name not in NAMED_ENCODINGS:
        raise CgptError(f"tokenizer {name!r}: expected one of {', '.join(NAMED_ENCODINGS)}")
    try:
        encoding = tiktoken.get_encoding(name)
    except Exception as err:  # tiktoken's loader fails in many ways offline: requests, OSError, ImportError
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        raise CgptError(
            f"tokenizer {name!r}: not in tiktoken's cache and could not be downloaded from "
            f"{NAMED_ENCODINGS[name]} ({reason}); connect once to fetch it, or point TIKTOKEN_CACHE_DIR "
            f"at a folder that holds tiktoken's cached copy"
        ) from err
    specials = encoding._special_tokens  # tiktoken keeps the definition only in these attributes
    return Tokenizer("bpe", name, specials, pad=EOT, pattern=encoding._pat_str, ranks=encoding._mergeable_ranks)


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """A tokenizer from a directory (prepared data, a run), a `FILE.tiktoken`, or a named encoding."""
    path = Path(spec)
    if path.is_dir():
        return Tokenizer.load(path)
    if str(spec).endswith(".tiktoken"):
        definition = path.with_suffix(".json")
        if not path.is_file() or not definition.is_file():
            raise CgptError(f"tokenizer {str(spec)!r}: expected {path} and, next to it, {definition.name}")
        return _from_json(definition)
    if spec == "char" or str(spec).startswith("train:"):
        raise CgptError(f"tokenizer {spec!r} is built from a corpus: prepare the data, then load that directory")
    if spec in NAMED_ENCODINGS:
        return load_named(str(spec))
    raise CgptError(
        f"tokenizer {str(spec)!r}: expected a prepared directory, a FILE.tiktoken, "
        f"or one of {', '.join(NAMED_ENCODINGS)}"
    )


def char_tokenizer(texts: Iterable[str]) -> Tokenizer:
    """Character-level: the sorted characters of `texts`, then `<|endoftext|>` and `<|pad|>`."""
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    chars = "".join(sorted(seen))
    return Tokenizer("char", "char", {EOT: len(chars), PAD: len(chars) + 1}, chars=chars)


def _count_batch(pattern: str, texts: list[str]) -> Counter[str]:
    return bpe.count_pretokens(texts, pattern)


def _batches(texts: Iterable[str], max_chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for text in texts:
        batch.append(text)
        size += len(text)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def train_tokenizer(texts: Iterable[str], vocab_size: int, pattern: str = "cl100k", workers: int = 1) -> Tokenizer:
    """Train a byte-level BPE of exactly `vocab_size` ids (merges + the two specials) on `texts`."""
    if pattern not in bpe.PATTERNS:
        raise CgptError(f"pattern={pattern!r}: expected one of {', '.join(bpe.PATTERNS)}")
    if vocab_size < 258:
        raise CgptError(f"vocab_size={vocab_size}: expected at least 258 (256 bytes + 2 special tokens)")
    regex_str = bpe.PATTERNS[pattern]
    counts: Counter[str] = Counter()
    make_context = functools.partial(str, regex_str)
    for part in ordered_map(_count_batch, _batches(texts, 1 << 20), workers, make_context):
        counts.update(part)
    try:
        ranks = bpe.train_bpe(bpe.word_counts(counts), vocab_size - 2)
    except bpe.VocabularyTooLarge as err:
        raise CgptError(f"train:{vocab_size}: {err} (plus 2 special tokens); use a larger corpus") from err
    specials = {EOT: vocab_size - 2, PAD: vocab_size - 1}
    return Tokenizer("bpe", f"bpe-{vocab_size}-{pattern}", specials, pattern=regex_str, ranks=ranks)

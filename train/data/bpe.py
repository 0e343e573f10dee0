"""Byte-level BPE training: pre-token counts in, tiktoken mergeable ranks out.

Byte-pair encoding (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units") over
UTF-8 bytes, as in GPT-2 (Radford et al. 2019): text is first split by a regex into pre-tokens (words,
numbers, punctuation runs, whitespace), merges never cross a pre-token, and the 256 single bytes are the base
vocabulary, so every string is encodable. The result is tiktoken's `mergeable_ranks` (token bytes -> rank,
where rank is also the token id and the merge priority), so encoding then runs in tiktoken's Rust core.

Training works on *unique* pre-tokens with their counts. `train_bpe` keeps pair counts and, for each pair, the
words it occurs in; a merge rewrites only those words and applies the net change in pair counts, and a lazy
max-heap (stale entries are skipped when popped) finds the next best pair. `train_bpe_reference` recounts
every pair before every merge: slow and obviously right, it is the oracle the tests hold the fast trainer to.

Both pick the most frequent pair and break ties by the smaller (left id, right id), so a corpus and a
vocabulary size give one answer. Should a merge ever yield bytes that are already a token (b"ab"+b"c" after
b"a"+b"bc"; greedy merging makes this rare or impossible, no search has found one), words are rewritten to
the existing id and no rank is added, so the ranks stay a valid tiktoken table.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise

import regex

# GPT-2's split (tiktoken's faster equivalent of the released pattern) and cl100k's (case-insensitive
# contractions, digits in runs of at most 3, newlines kept apart from other whitespace).
PATTERNS: dict[str, str] = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k": (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$"""
        r"""|\s*[\r\n]|\s+(?!\S)|\s"""
    ),
}

Pair = tuple[int, int]


class VocabularyTooLarge(ValueError):
    """The corpus runs out of pairs to merge before the vocabulary reaches the requested size."""


def count_pretokens(texts: Iterable[str], pattern: str) -> Counter[str]:
    """How often each pre-token occurs in `texts` (each text is split on its own; none crosses two)."""
    compiled = regex.compile(pattern)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(compiled.findall(text))
    return counts


def word_counts(pretokens: Mapping[str, int]) -> dict[bytes, int]:
    """Pre-token counts keyed by UTF-8 bytes, in sorted order so that training never depends on dict order."""
    counts: dict[bytes, int] = defaultdict(int)
    for text, count in pretokens.items():
        counts[text.encode("utf-8", errors="surrogatepass")] += count
    return dict(sorted(counts.items()))


def merge_word(word: list[int], pair: Pair, new: int) -> list[int]:
    """Replace each non-overlapping occurrence of `pair` in `word`, left to right, by `new`."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def _add_token(vocab: list[bytes], ids: dict[bytes, int], pair: Pair) -> int:
    """The id of the merged pair's bytes, creating the token (with the next rank) if it is new."""
    merged = vocab[pair[0]] + vocab[pair[1]]
    if merged not in ids:
        ids[merged] = len(vocab)
        vocab.append(merged)
    return ids[merged]


def _base_vocab() -> tuple[list[bytes], dict[bytes, int]]:
    vocab = [bytes([i]) for i in range(256)]
    return vocab, {token: i for i, token in enumerate(vocab)}


def _check_size(n_tokens: int) -> None:
    if n_tokens < 256:
        raise ValueError(f"n_tokens={n_tokens} is too small: byte-level BPE needs at least the 256 byte tokens")


# ----------------------------------------------------------------------------------------------------------
# the reference: recount everything before every merge


def train_bpe_reference(words: Mapping[bytes, int], n_tokens: int) -> dict[bytes, int]:
    """Mergeable ranks with exactly `n_tokens` entries, recounting all pairs for each merge (the oracle)."""
    _check_size(n_tokens)
    vocab, ids = _base_vocab()
    symbols = [list(w) for w in words]
    freqs = list(words.values())
    while len(vocab) < n_tokens:
        counts: dict[Pair, int] = defaultdict(int)
        for word, freq in zip(symbols, freqs, strict=True):
            for pair in pairwise(word):
                counts[pair] += freq
        if not counts:
            raise VocabularyTooLarge(f"the corpus supports only {len(vocab)} tokens, not {n_tokens}")
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        new = _add_token(vocab, ids, best)
        symbols = [merge_word(word, best, new) for word in symbols]
    return ids


# ----------------------------------------------------------------------------------------------------------
# the fast path: incremental pair counts and a lazy heap


class _PairIndex:
    """Pair counts over a set of weighted words, where each pair occurs, and a lazy max-heap of counts."""

    def __init__(self, symbols: list[list[int]], freqs: list[int]) -> None:
        self.symbols, self.freqs = symbols, freqs
        self.counts: dict[Pair, int] = defaultdict(int)
        self.where: dict[Pair, set[int]] = defaultdict(set)
        for i, word in enumerate(symbols):
            for pair in pairwise(word):
                self.counts[pair] += freqs[i]
                self.where[pair].add(i)
        # (-count, pair): the most frequent pair first, ties to the smaller pair, as in the reference
        self.heap = [(-count, pair) for pair, count in self.counts.items()]
        heapq.heapify(self.heap)

    def pop_best(self) -> Pair | None:
        """The most frequent pair, skipping heap entries whose count has changed since they were pushed."""
        while self.heap:
            negative, pair = heapq.heappop(self.heap)
            if self.counts.get(pair, 0) == -negative:
                return pair
        return None

    def merge(self, pair: Pair, new: int) -> None:
        """Rewrite the words that hold `pair` and apply the net change in pair counts."""
        delta: dict[Pair, int] = defaultdict(int)
        for i in self.where.pop(pair):
            word = self.symbols[i]
            merged = merge_word(word, pair, new)
            if len(merged) == len(word):  # a stale entry: an earlier merge already consumed the pair here
                continue
            freq = self.freqs[i]
            for old in pairwise(word):
                delta[old] -= freq
            for fresh in pairwise(merged):
                delta[fresh] += freq
                if new in fresh:
                    self.where[fresh].add(i)
            self.symbols[i] = merged
        for changed, d in delta.items():
            if d:
                self._update(changed, self.counts[changed] + d)

    def _update(self, pair: Pair, count: int) -> None:
        if count > 0:
            self.counts[pair] = count
            heapq.heappush(self.heap, (-count, pair))
        else:
            self.counts.pop(pair, None)


def train_bpe(words: Mapping[bytes, int], n_tokens: int) -> dict[bytes, int]:
    """Mergeable ranks with exactly `n_tokens` entries (256 bytes + merges), learnt from weighted words."""
    _check_size(n_tokens)
    vocab, ids = _base_vocab()
    index = _PairIndex([list(w) for w in words], list(words.values()))
    while len(vocab) < n_tokens:
        pair = index.pop_best()
        if pair is None:
            raise VocabularyTooLarge(f"the corpus supports only {len(vocab)} tokens, not {n_tokens}")
        index.merge(pair, _add_token(vocab, ids, pair))
    return ids

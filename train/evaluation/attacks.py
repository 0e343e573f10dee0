"""Character-level typos for robustness evaluation: swap, drop and insert letters inside words.

The edits are those of Belinkov & Bisk 2018 ("Synthetic and Natural Noise Both Break Neural Machine
Translation") and Pruthi et al. 2019 ("Combating Adversarial Misspellings"). Each word is hit independently
with probability `rate`, and a hit word gets one edit chosen uniformly among those that change it: swap two
adjacent, different characters; drop a character (only from words of two or more, so no word disappears);
insert a random lower-case letter. The word count never changes, so tags stay aligned.
Randomness comes only from the `random.Random` passed in: the same seed gives the same typos.

`with_typos` applies them to examples as read, before tokenization, the way a user's misspelling would reach
the model: to classification texts, to each tagged word (the word count, hence the tags, stay aligned) and
to generation prompts (never to the response, the target).
"""

from __future__ import annotations

import dataclasses
import random
import re
import string
from collections.abc import Sequence

from train.finetune.readers import Example, TaggedExample, TextExample

ATTACK_KINDS = ("embedding", "typo")  # what `cgpt evaluate --attack` runs (train/evaluation/evaluate.py)


def _edits(word: str) -> list[str]:
    """The edits that would change `word`."""
    edits = ["insert"]
    if len(word) >= 2:
        edits.append("drop")
    if any(a != b for a, b in zip(word, word[1:], strict=False)):
        edits.append("swap")
    return edits


def typo_word(word: str, rng: random.Random) -> str:
    """One random edit that changes `word`."""
    edit = rng.choice(_edits(word))
    if edit == "swap":
        i = rng.choice([i for i in range(len(word) - 1) if word[i] != word[i + 1]])
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if edit == "drop":
        i = rng.randrange(len(word))
        return word[:i] + word[i + 1 :]
    i = rng.randrange(len(word) + 1)
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]


def typo_words(words: Sequence[str], rate: float, rng: random.Random) -> list[str]:
    """Each word edited with probability `rate`; as many words out as in (for tagging)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"typo rate={rate} must be in [0, 1]")
    return [typo_word(w, rng) if w and rng.random() < rate else w for w in words]


def typo(text: str, rate: float, rng: random.Random) -> str:
    """`text` with typos in a `rate` fraction of its words; whitespace is kept as it was."""
    parts = re.split(r"(\s+)", text)  # words at even indices, the whitespace between them at odd ones
    parts[::2] = typo_words(parts[::2], rate, rng)
    return "".join(parts)


def with_typos(examples: list[Example], rate: float, seed: int) -> list[Example]:
    """The examples with typos in a `rate` fraction of the words; the same seed gives the same typos."""
    rng = random.Random(seed)
    out: list[Example] = []
    for ex in examples:
        if isinstance(ex, TextExample):
            out.append(dataclasses.replace(ex, text=typo(ex.text, rate, rng)))
        elif isinstance(ex, TaggedExample):
            out.append(dataclasses.replace(ex, tokens=tuple(typo_words(ex.tokens, rate, rng))))
        else:
            out.append(dataclasses.replace(ex, prompt=typo(ex.prompt, rate, rng)))
    return out

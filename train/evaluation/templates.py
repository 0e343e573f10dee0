"""Prompt templates and verbalisers: how a labelled example becomes text a language model can continue.

A template holds `{text}` where the input goes; a demonstration is the template filled with a training text,
then the target delimiter, then its label's word. The prompt for one test example (GPT-3's in-context
learning, Brown et al. 2020) is

    demo_1 + fewshot_delimiter + ... + demo_K + fewshot_delimiter + template(text)

and each label is scored as the continuation target_delimiter + word. The delimiters' defaults are
EleutherAI lm-evaluation-harness's ("\\n\\n" between demonstrations, " " before the label word).

Verbalisers map each label to one or more words: "0=negative,1=positive|great" (a label's words are joined
with "|"; a word may not contain "," or "|"). Every problem is a `CgptError` naming the flag it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from train.errors import CgptError

PLACEHOLDER = "{text}"

# Built-in templates, by name: the harness's "Question: ...\nAnswer:" shape, one per kind of task.
BUILTIN_TEMPLATES: dict[str, str] = {
    "sentiment": "Review: {text}\nSentiment:",
    "topic": "Article: {text}\nTopic:",
    "qa": "Question: {text}\nAnswer:",
}

# Contextual calibration's content-free inputs (Zhao et al. 2021, "Calibrate Before Use", section 5).
CONTENT_FREE = ("N/A", "", "[MASK]")


def unescape(value: str) -> str:
    """A command-line string with the escapes \\n, \\t and \\\\ turned into newline, tab and backslash."""
    return re.sub(r"\\([nt\\])", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m.group(1)], value)


def resolve_template(spec: str) -> str:
    """The template a --template value names: a built-in name, @FILE (its final newline dropped), or the text
    itself (escapes such as \\n decoded). It must contain {text}."""
    if spec in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[spec]
    if spec.startswith("@"):
        path = Path(spec[1:])
        try:
            template = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CgptError(f"--template {spec}: cannot read {path} ({type(err).__name__})") from None
        template = template[:-1] if template.endswith("\n") else template
        where = f"{path}:1"
    else:
        template, where = unescape(spec), "--template"
    if PLACEHOLDER not in template:
        known = ", ".join(BUILTIN_TEMPLATES)
        raise CgptError(f"{where}: the template {template!r} has no {PLACEHOLDER} (or name a built-in: {known})")
    return template


def fill(template: str, text: str) -> str:
    """The template with the input in place of every {text} (no other braces are interpreted)."""
    return template.replace(PLACEHOLDER, text)


@dataclass(frozen=True)
class Verbaliser:
    """Each label's words, in the order given: `words[i]` are the words of `labels[i]`."""

    labels: tuple[str, ...]
    words: tuple[tuple[str, ...], ...]

    @classmethod
    def parse(cls, spec: str) -> Verbaliser:
        """'0=negative,1=positive|great' -> labels ('0', '1'), words (('negative',), ('positive', 'great'))."""
        labels: list[str] = []
        words: list[tuple[str, ...]] = []
        for part in (p for p in spec.split(",") if p.strip()):
            label, eq, rest = part.partition("=")
            label = label.strip()
            if not eq or not label:
                raise CgptError(f"--labels: {part.strip()!r} is not LABEL=WORD (e.g. '0=negative,1=positive|great')")
            if label in labels:
                raise CgptError(f"--labels: label {label!r} is given twice")
            group = tuple(w.strip() for w in rest.split("|"))
            if any(not w for w in group):
                raise CgptError(f"--labels: label {label!r} has an empty word, which encodes to no tokens")
            labels.append(label)
            words.append(group)
        if not labels:
            raise CgptError(f"--labels: no labels in {spec!r}; expected e.g. '0=negative,1=positive'")
        if len(labels) < 2:
            raise CgptError(f"--labels: only label {labels[0]!r}; prompting chooses among two or more")
        owner: dict[str, str] = {}
        for label, group in zip(labels, words, strict=True):
            for word in group:
                if word in owner:
                    if owner[word] == label:
                        raise CgptError(f"--labels: label {label!r} lists the word {word!r} twice")
                    raise CgptError(f"--labels: labels {owner[word]!r} and {label!r} share the word {word!r}")
                owner[word] = label
        return cls(tuple(labels), tuple(words))

    @property
    def all_words(self) -> list[tuple[int, str]]:
        """(label index, word) for every word, label by label: the continuations each prompt is scored with."""
        return [(i, w) for i, group in enumerate(self.words) for w in group]

    def index(self, label: str, where: str) -> int:
        """The index of a label read from the data; a label with no word is an error naming file:line."""
        if label not in self.labels:
            raise CgptError(f"{where}: label {label!r} has no verbaliser in --labels (given: {', '.join(self.labels)})")
        return self.labels.index(label)

    def describe(self) -> str:
        return ", ".join(f"{label}={'|'.join(group)}" for label, group in zip(self.labels, self.words, strict=True))

"""K-shot prompts as token requests: demonstrations drawn per example, the context/continuation boundary encoded
as lm-evaluation-harness does, and prompts cut to the model's context.

    example + K demonstrations (seeded draw) -> prompt strings -> [eot] + context tokens + continuation tokens

- Demonstrations: drawn per test example from the pool with the generator seeded by (seed, example index), so a
  draw does not depend on batching or --limit; never an example with the test example's text; with `balanced`,
  K split evenly over the labels (the remainder to labels drawn at random). A demonstration shows its label's
  first word.
- Boundary (the harness's `_encode_pair`): trailing whitespace of the context moves onto the continuation; the
  two are encoded together and the continuation's tokens are those after the context's own encoding, so the
  sequence is exactly the encoding of the whole text. If a BPE merge crosses the boundary (the whole text's
  tokens do not start with the context's), the continuation is encoded on its own instead: no text is ever
  dropped or repeated.
- Every prompt starts with <|endoftext|>, as every document does in pretraining (and as an empty context is
  scored in the harness).
- Too long for the context: whole demonstrations are dropped from the left, then the context's tokens are cut
  from the left; such a prompt is counted as truncated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from train.data.tokenizer import Tokenizer
from train.errors import CgptError
from train.evaluation.loglik import Request
from train.evaluation.templates import CONTENT_FREE, Verbaliser, fill
from train.finetune.readers import TextExample


@dataclass(frozen=True)
class PromptFormat:
    template: str
    verbaliser: Verbaliser
    fewshot_delimiter: str = "\n\n"
    target_delimiter: str = " "
    calibrate: bool = False

    def demonstration(self, example: TextExample) -> str:
        words = self.verbaliser.words[self.verbaliser.labels.index(example.label)]  # type: ignore[arg-type]
        return fill(self.template, example.text) + self.target_delimiter + words[0]

    def inputs(self, text: str) -> tuple[str, ...]:
        """The input itself, then (calibrating) the content-free inputs, all in the same k-shot prompt."""
        return (text, *CONTENT_FREE) if self.calibrate else (text,)


def encode(tokenizer: Tokenizer, text: str, where: str) -> list[int]:
    try:
        return tokenizer.encode(text)
    except CgptError as err:  # the char tokenizer meets a character it does not know
        raise CgptError(f"{where}: {err}") from None


def encode_pair(tokenizer: Tokenizer, context: str, continuation: str, where: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens), the boundary as lm-evaluation-harness encodes it (module doc)."""
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    ctx = encode(tokenizer, context, where)
    whole = encode(tokenizer, context + continuation, where)
    if whole[: len(ctx)] == ctx:
        return ctx, whole[len(ctx) :]
    return ctx, encode(tokenizer, continuation, where)


@dataclass(frozen=True)
class Built:
    """One test example's requests (input-major: for each input, every word of every label) and its prompt."""

    requests: list[Request]
    prompt: str  # the context scored for the example itself (decoded from its tokens if cut)
    demos_dropped: int
    truncated: bool  # demonstrations dropped or tokens cut


def build(
    fmt: PromptFormat, tokenizer: Tokenizer, example: TextExample, demos: Sequence[TextExample], block_size: int
) -> Built:
    """The requests of one example with its demonstrations, cut to fit block_size (+1: the last token is not fed)."""
    words = [fmt.target_delimiter + w for _, w in fmt.verbaliser.all_words]
    eot, room = tokenizer.eot_id, block_size + 1
    for k in range(len(demos), -1, -1):  # drop demonstrations from the left until the prompt fits
        shown = demos[len(demos) - k :]
        prefix = "".join(fmt.demonstration(d) + fmt.fewshot_delimiter for d in shown)
        contexts = [prefix + fill(fmt.template, x) for x in fmt.inputs(example.text)]
        pairs = [[encode_pair(tokenizer, c, w, example.where) for w in words] for c in contexts]
        longest = max(1 + len(ctx) + len(cont) for row in pairs for ctx, cont in row)
        if longest <= room:
            break
    requests, cut = [], k < len(demos)
    for row in pairs:
        for (ctx, cont), word in zip(row, words, strict=True):
            ids = [eot, *ctx]
            over = len(ids) + len(cont) - room
            if over > 0:  # even with no demonstrations: cut the context's tokens from the left
                if len(cont) >= room:
                    raise CgptError(
                        f"--labels: {word!r} is {len(cont)} tokens, too long for the context ({block_size})"
                    )
                ids, cut = ids[over:], True
            requests.append(Request(tuple(ids + cont), len(ids)))
    main = requests[0]
    prompt = contexts[0] if not cut else tokenizer.decode(t for t in main.tokens[: main.start] if t != eot)
    return Built(requests, prompt, len(demos) - k, cut)


class DemoPool:
    """Labelled examples to draw demonstrations from, indexed by text and by label."""

    def __init__(self, examples: Sequence[TextExample], name: str, same_as_data: bool) -> None:
        self.examples, self.name, self.same_as_data = list(examples), name, same_as_data
        self.by_text: dict[str, list[int]] = defaultdict(list)
        self.by_label: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(self.examples):
            self.by_text[ex.text].append(i)
            self.by_label[ex.label].append(i)  # type: ignore[index]

    def check(self, shots: int, balanced: bool, labels: Sequence[str]) -> None:
        """Refuse --shots the pool cannot supply (the test example itself is never a demonstration)."""
        own = 1 if self.same_as_data else 0
        if shots > len(self.examples) - own:
            raise CgptError(
                f"--shots {shots}: the demonstration pool {self.name} has only {len(self.examples) - own} examples"
                + (" besides the test example" if own else "")
            )
        if balanced and shots:
            need = -(-shots // len(labels))
            for label in labels:
                have = len(self.by_label.get(label, ())) - own
                if have < need:
                    raise CgptError(
                        f"--shots {shots} --balanced: needs up to {need} demonstrations of label {label!r}, "
                        f"but {self.name} has {max(have, 0)}" + (" besides the test example" if own else "")
                    )

    def _sample(self, indices: Sequence[int], k: int, text: str, rng: np.random.Generator, where: str) -> list[int]:
        """k of `indices` at random, none with the test example's text."""
        excluded = set(self.by_text.get(text, ()))
        k_all = min(len(indices), k + len(excluded))
        drawn = [int(indices[j]) for j in rng.choice(len(indices), size=k_all, replace=False)]
        picked = [i for i in drawn if i not in excluded][:k]
        if len(picked) < k:
            raise CgptError(f"{where}: only {len(picked)} demonstrations differ from this example; lower --shots")
        return picked

    def draw(
        self, example: TextExample, index: int, seed: int, shots: int, balanced: bool, labels: Sequence[str]
    ) -> list[TextExample]:
        """The demonstrations of the example at `index` of the data, for `seed`."""
        if shots == 0:
            return []
        rng = np.random.default_rng([seed, index])
        if not balanced:
            picked = self._sample(range(len(self.examples)), shots, example.text, rng, example.where)
            return [self.examples[i] for i in picked]
        counts = np.full(len(labels), shots // len(labels))
        counts[rng.choice(len(labels), size=shots % len(labels), replace=False)] += 1
        picked = []
        for label, n in zip(labels, counts, strict=True):
            picked += self._sample(self.by_label[label], int(n), example.text, rng, example.where) if n else []
        return [self.examples[i] for i in rng.permutation(picked)]

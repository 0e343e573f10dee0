"""Honest baselines for `cgpt finetune --baseline`: what a trivial model scores on the same files.

A fine-tuned GPT is worth its compute only where it beats these, so they are reported next to it:

  classify  bag-of-words + bigram logistic regression ("Baselines and Bigrams", Wang & Manning 2012): binary
            presence of lower-cased word unigrams and bigrams, softmax regression with an L2 penalty, fitted by
            full-batch L-BFGS (Liu & Nocedal 1989) in float64 on a sparse design matrix.
            Shapes: N texts, V features, D = V + 1 with the bias column, K labels.
  tag       the CoNLL-2003 shared-task baseline (Tjong Kim Sang & De Meulder 2003): tag only word sequences
            seen, as whole entities, in the training data, taking the longest match from left to right.
  generate, regress  none: `baseline` returns None.

Choices, and why:
  - presence, not counts: sentences are short, so a repeated word is rare and says little; Pang, Lee &
    Vaithyanathan (2002) found presence better than frequency for sentiment.
  - min_count=1 (every feature of the training texts): the L2 penalty already holds a feature seen once near 0,
    and SST-2's training rows are phrases cut from its sentences, so a rare n-gram is often a real one.
  - loss = sum_i CE_i + l2/2 * ||W||^2 with l2=1, scikit-learn's default C=1; the bias is not penalised (as in
    scikit-learn's lbfgs), so a text with no known feature gets the class its bias prefers. It is minimised
    divided by n, the same minimiser, so L-BFGS's tolerances do not depend on the data size.
  - both are textbook defaults, not tuned on a dev set: a baseline tuned on the split it is scored on is not
    honest. On SST-2 dev (872 sentences, a standard error of ~1.3 points) min_count 1-3 and l2 0.5-4 all score
    81.7-82.7% accuracy; the defaults score 81.9%.
  - the gradient X^T (P - Y) / n + l2 W / n is written out and computed with a sparse copy of X^T: no autograd
    through sparse ops, and the same weights on every run. SST-2 (67k texts, 86k features, 1.3M non-zeros):
    200 L-BFGS iterations, the fixed budget, take ~2.5 s on two idle cores; more change no dev prediction.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch

from model.config import TASKS
from train.errors import CgptError
from train.finetune.metrics import accuracy, classification_report, entity_scores, entity_spans
from train.finetune.readers import Example, LabelSet, TaggedExample, TextExample, label_set

CLASSIFY_NAME = "bag-of-words + bigram logistic regression"
TAG_NAME = "entity spans seen in training, longest match (CoNLL-2003 shared-task baseline)"
_TOKEN = re.compile(r"[\w']+|[^\w\s]")  # words (apostrophes kept: "n't", "it's") or one punctuation mark


# --- classification: features --------------------------------------------------------------------------------


def features(text: str) -> list[str]:
    """The text's lower-cased word unigrams and bigrams ("not good"), each once: presence, not counts."""
    words = _TOKEN.findall(text.lower())
    return list(dict.fromkeys(words + [f"{a} {b}" for a, b in pairwise(words)]))


def _sparse(rows: Sequence[Sequence[int]], width: int, transpose: bool = False) -> torch.Tensor:
    """(len(rows), width) float64 COO with a 1 at each listed column of each row; (width, len(rows)) transposed.

    COO, not CSR: as fast here, and CSR warns that it is a beta on every construction."""
    row = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor([len(r) for r in rows], dtype=torch.int64))
    col = torch.tensor([c for r in rows for c in r], dtype=torch.int64)
    index = torch.stack([col, row] if transpose else [row, col])
    shape = (width, len(rows)) if transpose else (len(rows), width)
    ones = torch.ones(len(col), dtype=torch.float64)
    return torch.sparse_coo_tensor(index, ones, shape, check_invariants=True).coalesce()


@dataclass(frozen=True, eq=False)  # eq=False: tensors do not compare to one bool
class BowModel:
    vocab: dict[str, int]  # feature -> its row in weight
    weight: torch.Tensor  # (V, K) float64
    bias: torch.Tensor  # (K,) float64

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, K) class scores; features never seen in training are ignored."""
        rows = [[self.vocab[f] for f in features(t) if f in self.vocab] for t in texts]
        return _sparse(rows, len(self.vocab)) @ self.weight + self.bias

    def predict(self, texts: Sequence[str]) -> list[int]:
        return self.logits(texts).argmax(dim=1).tolist()  # a tie goes to the lower label index


def _fit_softmax(x: torch.Tensor, xt: torch.Tensor, y: torch.Tensor, k: int, l2: float, steps: int) -> torch.Tensor:
    """argmin over theta (D, K) of mean CE(softmax(x @ theta), y) + l2/(2n) ||theta[:-1]||^2; row D-1 is the bias."""
    n, d = x.shape
    onehot = torch.nn.functional.one_hot(y, k).to(torch.float64)  # (N, K)
    penalised = torch.ones(d, 1, dtype=torch.float64)
    penalised[-1] = 0.0  # the bias row
    theta = torch.zeros(d, k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [theta],
        max_iter=steps,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        with torch.no_grad():
            logp = torch.log_softmax(x @ theta, dim=1)  # (N, K)
            w = theta * penalised
            loss = (-(logp * onehot).sum() + 0.5 * l2 * (w * w).sum()) / n
            theta.grad = (xt @ (logp.exp() - onehot) + l2 * w) / n  # (D, K)
        return loss

    opt.step(closure)
    return theta.detach()


def fit_bow(
    texts: Sequence[str],
    labels: Sequence[int],
    num_labels: int,
    *,
    min_count: int = 1,
    l2: float = 1.0,
    steps: int = 200,
) -> BowModel:
    """Logistic regression on the unigrams and bigrams seen at least min_count times in `texts`."""
    if len(texts) != len(labels) or not texts:
        raise ValueError(f"{len(texts)} texts and {len(labels)} labels: need as many, and at least one")
    if not all(0 <= y < num_labels for y in labels):
        raise ValueError(f"labels should be in [0, {num_labels})")
    feats = [features(t) for t in texts]
    counts = Counter(f for fs in feats for f in fs)  # documents holding each feature
    vocab = {f: i for i, f in enumerate(sorted(f for f, c in counts.items() if c >= min_count))}
    rows = [[vocab[f] for f in fs if f in vocab] + [len(vocab)] for fs in feats]  # + the bias column
    x, xt = _sparse(rows, len(vocab) + 1), _sparse(rows, len(vocab) + 1, transpose=True)
    theta = _fit_softmax(x, xt, torch.tensor(labels, dtype=torch.int64), num_labels, l2, steps)
    return BowModel(vocab, theta[:-1], theta[-1])


def classify_baseline(
    train: Sequence[TextExample], evals: dict[str, Sequence[TextExample]], labels: LabelSet, *, l2: float = 1.0
) -> dict[str, Any]:
    """Fit on `train`, score `train` and each split; unlabelled examples in a split are not scored."""
    unlabelled = next((ex for ex in train if ex.label is None), None)
    if unlabelled is not None:
        raise CgptError(f"{unlabelled.where}: a training example has no label")
    y = [labels.encode(ex.label, ex.where) for ex in train]  # type: ignore[arg-type]  # checked above
    model = fit_bow([ex.text for ex in train], y, len(labels), l2=l2)
    report: dict[str, Any] = {"name": CLASSIFY_NAME, "features": len(model.vocab), "l2": l2}
    report["train"] = {"accuracy": accuracy(y, model.predict([ex.text for ex in train])), "examples": len(y)}
    for split, examples in evals.items():
        scored = [ex for ex in examples if ex.label is not None]
        if scored:  # a file of texts alone (SST-2's test) has nothing to score
            y_true = [labels.encode(ex.label, ex.where) for ex in scored]  # type: ignore[arg-type]
            rep = classification_report(y_true, model.predict([ex.text for ex in scored]), range(len(labels)))
            report[split] = {"accuracy": rep["accuracy"], "macro_f1": rep["macro"]["f1"], "examples": len(scored)}
    return report


# --- token classification: the shared task's span memory ----------------------------------------------------


@dataclass(frozen=True)
class SpanMemory:
    entities: dict[tuple[str, ...], str]  # a word sequence seen as a whole entity -> its type
    longest: int  # words in the longest one

    def longest_at(self, tokens: Sequence[str], i: int) -> int:
        """Words in the longest known entity that starts at tokens[i]; 0 when none does."""
        for n in range(min(self.longest, len(tokens) - i), 0, -1):
            if tuple(tokens[i : i + n]) in self.entities:
                return n
        return 0

    def tag(self, tokens: Sequence[str]) -> list[str]:
        """BIO tags, left to right: the longest known entity starting at each word, else O."""
        tags: list[str] = []
        i = 0
        while i < len(tokens):
            n = self.longest_at(tokens, i)
            if n:
                kind = self.entities[tuple(tokens[i : i + n])]
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
            else:
                tags.append("O")
            i += max(n, 1)
        return tags


def _most_frequent(kinds: Counter[str]) -> str:
    # a tie goes to the alphabetically first type, so the answer never depends on the order of the file
    return min(kinds.items(), key=lambda item: (-item[1], item[0]))[0]


def fit_span_memory(train: Sequence[TaggedExample]) -> SpanMemory:
    """Every entity of the training tags as its exact, case-sensitive words, with its most frequent type.

    This reproduces the paper's English scores to the hundredth: P/R/F1 78.33/65.23/71.18 (dev, eng.testa) and
    71.91/50.90/59.61 (test, eng.testb). Keeping only the phrases with a single type in training, as the paper's
    wording might also be read, drops to 56.73 test F1.
    """
    seen: dict[tuple[str, ...], Counter[str]] = {}
    for ex in train:
        if ex.tags is None:
            raise CgptError(f"{ex.where}: a training sentence has no tags")
        for kind, start, end in entity_spans(ex.tags):
            seen.setdefault(ex.tokens[start:end], Counter())[kind] += 1
    entities = {words: _most_frequent(kinds) for words, kinds in seen.items()}
    return SpanMemory(entities, max(map(len, entities), default=0))


def tag_baseline(train: Sequence[TaggedExample], evals: dict[str, Sequence[TaggedExample]]) -> dict[str, Any]:
    """Memorise the training entities and score each split with conlleval's entity P/R/F1."""
    memory = fit_span_memory(train)
    report: dict[str, Any] = {"name": TAG_NAME, "spans": len(memory.entities)}
    for split, examples in evals.items():
        scored = [ex for ex in examples if ex.tags is not None]
        if scored:
            s = entity_scores([ex.tags for ex in scored], [memory.tag(ex.tokens) for ex in scored])  # type: ignore[misc]
            report[split] = {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"], "examples": len(scored)}
    return report


# --- one entry point --------------------------------------------------------------------------------------------


def baseline(
    task: str, train: Sequence[Example], evals: dict[str, Sequence[Example]], labels: LabelSet | None = None
) -> dict[str, Any] | None:
    """The task's baseline report; None for generate and regress, which have no baseline here.

    `labels` (classify) defaults to those of `train`; pass the fine-tune's own so both index labels alike.
    """
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not allowed: expected one of {TASKS}")
    if task == "classify":
        return classify_baseline(train, evals, labels if labels is not None else label_set(train))  # type: ignore[arg-type]
    if task == "tag":
        return tag_baseline(train, evals)  # type: ignore[arg-type]
    return None

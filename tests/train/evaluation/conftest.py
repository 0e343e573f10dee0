"""A language model that has learned a sentiment pattern, for the prompting tests: a corpus of documents made of
"Review: <text>\\nSentiment: positive|negative" records separated by blank lines, the label fixed by the review's
adjective; a tiny BPE (300 tokens: whole frame words, spelled-out adjectives, " positive" and " negative" one
token each) and the `debug` model pretrained on it for 150 steps (a few seconds on one thread); and a labelled
file of new reviews drawn from the same pattern."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from model import preset
from train.data.prepare import prepare
from train.data.tokenizer import Tokenizer
from train.pretrain import pretrain
from train.recipe import TrainConfig

GOOD = ("wonderful", "superb", "lovely", "charming")
BAD = ("awful", "boring", "terrible", "dull")
FRAMES = ("the film was {w}", "a {w} story")
WORDS = {"0": "negative", "1": "positive"}


def review(rng: random.Random, label: int) -> str:
    return rng.choice(FRAMES).format(w=rng.choice(GOOD if label else BAD))


def record(text: str, label: str) -> str:
    """One record as the corpus writes it: the `sentiment` template, then " " and the label word."""
    return f"Review: {text}\nSentiment: {WORDS[label]}"


@dataclass(frozen=True)
class Sentiment:
    run: Path
    dev: str  # 40 reviews, labels alternating 0, 1
    train: str  # 30 more, a demonstration pool
    tokenizer: Tokenizer


def _tsv(rows: list[tuple[str, int]]) -> str:
    return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


@pytest.fixture(scope="session")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> Sentiment:
    root = tmp_path_factory.mktemp("sentiment")
    rng = random.Random(0)
    docs = []
    for _ in range(200):
        labels = [rng.randrange(2) for _ in range(6)]
        docs.append("\n\n".join(record(review(rng, y), str(y)) for y in labels))
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    prepare([str(root / "corpus.jsonl")], "train:300", root / "data")
    tokenizer = Tokenizer.load(root / "data")
    train = TrainConfig(
        max_steps=150, batch_size=16, lr=1e-2, warmup_steps=10, eval_every=150, eval_batches=1, checkpoint_every=150
    )
    config = preset("debug", vocab_size=tokenizer.vocab_size, block_size=64)
    pretrain(root / "data", root / "run", config, train, allow_repeat=True, progress=False, log=lambda *_: None)
    (root / "dev.tsv").write_text(_tsv([(review(rng, i % 2), i % 2) for i in range(40)]))
    (root / "train.tsv").write_text(_tsv([(review(rng, i % 3 % 2), i % 3 % 2) for i in range(30)]))
    return Sentiment(root / "run", str(root / "dev.tsv"), str(root / "train.tsv"), tokenizer)

"""Fixtures for the fine-tuning tests: one tiny pretrained run (char-level, the `debug` architecture) and
small labelled files for each task, made once per session; and `tune`, a few-step `finetune` call."""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model import preset
from train.data.prepare import prepare
from train.data.tokenizer import Tokenizer
from train.finetune.config import DataFiles, FinetuneConfig, Source
from train.finetune.recipe import finetune
from train.pretrain import pretrain
from train.recipe import TrainConfig

# Every printable character, so the char tokenizer covers the labelled files and the typos (a-z inserts).
CORPUS = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(60))
CORPUS += string.printable

# A few optimizer steps, evaluated at the end: enough to exercise every path, not to learn.
FEW_STEPS = {"max_steps": 2, "batch_size": 4, "eval_every": 2, "checkpoint_every": 2, "log_every": 1}


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining run directory: checkpoints (with model_config, tokenizer_hash) and tokenizer/."""
    root = tmp_path_factory.mktemp("pretrained")
    (root / "corpus.txt").write_text(CORPUS)
    prepare([str(root / "corpus.txt")], "char", root / "data")
    vocab = Tokenizer.load(root / "data").vocab_size
    train = TrainConfig(max_steps=2, batch_size=4, eval_every=2, eval_batches=1, checkpoint_every=2, seed=3)
    pretrain(
        root / "data",
        root / "run",
        preset("debug", vocab_size=vocab, block_size=32),
        train,
        progress=False,
        log=lambda *_: None,
    )
    return root / "run"


def _tsv(rows: list[tuple[str, str]]) -> str:
    return "sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows)


def _sentiment(n: int, offset: int) -> list[tuple[str, str]]:
    good, bad = ["a fun, warm film", "great acting", "loved it"], ["a dull mess", "boring plot", "hated it"]
    return [((good if i % 2 else bad)[i % 3] + f" {i + offset}", str(i % 2)) for i in range(n)]


def _conll(sentences: list[list[tuple[str, str]]]) -> str:
    """CoNLL-2003 columns (word POS chunk tag) with a -DOCSTART- line, tags in IOB1 as in eng.train."""
    blocks = ["-DOCSTART- -X- O O\n"]
    for sentence in sentences:
        blocks.append("".join(f"{w} NNP I-NP {t}\n" for w, t in sentence))
    return "\n".join(blocks)


PEOPLE, PLACES = ["Alice", "Bob Smith", "Carol"], ["Paris", "New York", "Rome"]


def _tagged(n: int) -> list[list[tuple[str, str]]]:
    sentences = []
    for i in range(n):
        person, place = PEOPLE[i % 3].split(), PLACES[(i + 1) % 3].split()
        words = [(w, "I-PER") for w in person] + [("lives", "O"), ("in", "O")] + [(w, "I-LOC") for w in place]
        sentences.append(words + [(".", "O")])
    return sentences


@dataclass(frozen=True)
class Files:
    classify: DataFiles
    tag: DataFiles
    generate: DataFiles
    regress: DataFiles


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("labelled")

    def write(name: str, text: str) -> str:
        (root / name).write_text(text)
        return str(root / name)

    pairs = [{"prompt": f"say {w}", "response": f" {w} {w}"} for w in ("hi", "yes", "no", "ok", "go", "up")]
    numbers = [(f"{'very ' * (i % 4)}good", f"{i % 4 * 0.5:.1f}") for i in range(12)]
    return Files(
        classify=DataFiles(
            write("train.tsv", _tsv(_sentiment(24, 0))),
            write("dev.tsv", _tsv(_sentiment(8, 100))),
            write("test.tsv", _tsv(_sentiment(6, 200))),
        ),
        tag=DataFiles(
            write("ner.train", _conll(_tagged(12))),
            write("ner.testa", _conll(_tagged(5))),
            write("ner.testb", _conll(_tagged(4))),
        ),
        generate=DataFiles(
            write("gen.jsonl", "".join(json.dumps(p) + "\n" for p in pairs)),
            write("gen_dev.jsonl", "".join(json.dumps(p) + "\n" for p in pairs[:3])),
        ),
        regress=DataFiles(write("reg.tsv", _tsv(numbers)), write("reg_dev.tsv", _tsv(numbers[:6]))),
    )


@pytest.fixture(scope="session")
def tune(pretrained: Path) -> Any:
    """tune(out, files, **FinetuneConfig fields, train={...}): a few-step fine-tune of `pretrained`."""

    def run(
        out: Path,
        data: DataFiles,
        train: dict[str, Any] | None = None,
        source: Source | None = None,
        **ft: Any,
    ) -> dict[str, Any]:
        return finetune(
            out,
            source or Source(str(pretrained)),
            data,
            FinetuneConfig(**ft),
            {**FEW_STEPS, **(train or {})},
            progress=False,
            log=lambda *_: None,
        )

    return run


@pytest.fixture(scope="session")
def classify_run(tune: Any, files: Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "classify"
    tune(out, files.classify, train={"max_steps": 3, "lr": 1e-2})
    return out


@pytest.fixture(scope="session")
def tag_run(tune: Any, files: Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tag"
    tune(out, files.tag, task="tag", train={"lr": 1e-2})
    return out


@pytest.fixture(scope="session")
def generate_run(tune: Any, files: Files, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "generate"
    tune(out, files.generate, task="generate")
    return out

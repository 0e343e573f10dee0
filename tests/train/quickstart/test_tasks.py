"""The quickstart's tasks derived from the standard library: real labels, balanced classes, splits by file,
and files that `cgpt finetune` reads."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from train.finetune.readers import read_classification, read_tagging
from train.quickstart.tasks import PACKAGES, _tagged_line, package_task, split_of, token_task


def test_a_line_is_tagged_by_pythons_tokenizer() -> None:
    words, tags = _tagged_line('if x > 0.5: return "hi there"  # why')
    assert words == ["if", "x", ">", "0.5", ":", "return", '"hi there"', "# why"]
    assert tags == ["B-KW", "B-NAME", "B-OP", "B-NUM", "B-OP", "B-KW", "B-STR", "B-COMMENT"]
    assert _tagged_line("x = (1,") is None  # a statement continued on the next line: not alone


def test_splits_are_by_file_and_stable() -> None:
    a, b = Path("asyncio/events.py"), Path("email/parser.py")
    assert split_of(a) == split_of(Path("asyncio/events.py")) and {split_of(a), split_of(b)} <= {"train", "val", "test"}
    shares = Counter(split_of(Path(f"pkg/file{i}.py")) for i in range(2000))
    assert 0.75 < shares["train"] / 2000 < 0.85 and shares["val"] > 150 and shares["test"] > 150


def test_the_package_task_is_balanced_and_readable(tmp_path: Path) -> None:
    files = package_task(tmp_path, per_class=40)
    assert len(files.labels) == PACKAGES
    train = read_classification(files.train, "text", "label")
    assert Counter(e.label for e in train) == dict.fromkeys(files.labels, 40)
    texts = {split: {json.loads(line)["text"] for line in open(path)} for split, path in
             (("train", files.train), ("test", files.test))}  # fmt: skip
    assert not texts["train"] & texts["test"]
    assert {e.label for e in read_classification(files.test, "text", "label")} <= set(files.labels)


def test_the_token_task_reads_as_tagging_data(tmp_path: Path) -> None:
    files = token_task(tmp_path, sentences=80)
    train = read_tagging(files.train)
    assert len(train) == 80 and files.counts == {"train": 80, "val": 10, "test": 10}
    assert {"B-NAME", "B-OP"} <= set(files.labels) and all(len(e.tokens) == len(e.tags) for e in train)

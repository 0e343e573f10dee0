"""Labelled data: readers and their one-line errors, IOB1 -> BIO, labels from training, and the real
SST-2 and CoNLL-2003 files against the counts in their README (encoding and batching: test_encode.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.paths import SHARED_DATA, needs_shared
from train.errors import CgptError
from train.finetune.metrics import entity_spans
from train.finetune.readers import (
    GenerationExample,
    LabelSet,
    TaggedExample,
    TextExample,
    label_set,
    read_classification,
    read_generation,
    read_tagging,
    to_bio,
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- classification files --------------------------------------------------------------------------------


def test_tsv_with_a_header_reads_stripped_texts_labels_and_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "train.tsv", 'sentence\tlabel\nit \'s "fine" \t1\n\na dud \t0\n')
    examples = read_classification(path)
    assert examples == [
        TextExample('it \'s "fine"', "1", f"{path}:2"),
        TextExample("a dud", "0", f"{path}:4"),
    ]


def test_fields_are_autodetected_or_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.tsv", "id\tstars\ttext\n7\t5\tgreat\n")
    assert read_classification(path, label_field="stars") == [TextExample("great", "5", f"{path}:2")]
    assert read_classification(path, text_field="id", label_field=None)[0].text == "7"


def test_csv_honours_quotes(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", 'text,label\n"yes, really",pos\nno,neg\n')
    assert [(e.text, e.label) for e in read_classification(path)] == [("yes, really", "pos"), ("no", "neg")]


def test_jsonl_classification(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.jsonl", '{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n')
    assert read_classification(path) == [
        TextExample("good", "1", f"{path}:1"),
        TextExample("bad", "0", f"{path}:3"),
    ]


@pytest.mark.parametrize(
    "name, text, message",
    [
        (
            "train.tsv",
            "sentence\tlabel\nok\t1\na\tb\t1\n",
            r"train.tsv:3: expected 2 tab-separated columns \(sentence, label\), got 3",
        ),
        ("train.tsv", "sentence\tlabel\nok\n", r"train.tsv:2: expected 2 tab-separated columns"),
        (
            "train.tsv",
            "text\tstars\nok\t1\n",
            r"train.tsv:1: missing column 'label' \(header has: text, stars\)",
        ),
        ("train.tsv", "\nsentence\n", r"train.tsv:2: missing column 'label'"),
        ("train.tsv", "", r"train.tsv: empty file"),
        ("train.tsv", "\n \n", r"train.tsv: empty file"),
        ("train.tsv", "sentence\tlabel\n", r"train.tsv: no examples after the header"),
        ("train.tsv", "sentence\tlabel\nok\t \n", r"train.tsv:2: empty label"),
        ("train.csv", "text,label\na,b,c\n", r"train.csv:2: expected 2 comma-separated columns"),
        ("d.jsonl", '{"text": "a", "label": 1}\n{"text": "b"\n', r"d.jsonl:2: invalid JSON"),
        ("d.jsonl", '{"text": "a"}\n', r"d.jsonl:1: missing field 'label'"),
        ("d.jsonl", '{"text": 3, "label": 1}\n', r"d.jsonl:1: field 'text' should be str"),
        ("d.jsonl", "[1, 2]\n", r"d.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_classification_files_name_the_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(CgptError, match=message):
        read_classification(_write(tmp_path, name, text))


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(CgptError, match="no such file"):
        read_classification(tmp_path / "absent.tsv")


# --- tagging files -----------------------------------------------------------------------------------------


def test_iob1_becomes_bio() -> None:
    iob1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-MISC", "O", "B-PER"]
    assert to_bio(iob1) == ("B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG", "B-MISC", "O", "B-PER")
    bio = ("B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC")
    assert to_bio(bio) == bio
    with pytest.raises(CgptError, match=r"f.txt:3: tag 'NNP' \(word 2\) is not O, B-TYPE or I-TYPE"):
        to_bio(["O", "NNP"], "f.txt:3")


CONLL = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC

-DOCSTART- -X- -X- O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Paris NNP I-NP B-PER"""


def test_conll_columns_skip_docstart_and_normalise_tags(tmp_path: Path) -> None:
    path = _write(tmp_path, "eng.train", CONLL)  # no blank line at the end: the last sentence still counts
    examples = read_tagging(path)
    assert examples == [
        TaggedExample(("EU", "rejects", "German"), ("B-ORG", "O", "B-MISC"), f"{path}:3"),
        TaggedExample(("Peter", "Blackburn", "Paris"), ("B-PER", "I-PER", "B-PER"), f"{path}:9"),
    ]
    assert read_tagging(path, with_tags=False)[1].tags is None


def test_conll_with_a_wrong_number_of_columns_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "eng.train", "EU NNP I-NP I-ORG\nrejects VBZ O\n")
    with pytest.raises(CgptError, match=r"eng.train:2: expected 4 space-separated columns .*as on line 1.*got 3"):
        read_tagging(path)
    with pytest.raises(CgptError, match=r"docs.txt: no sentences"):
        read_tagging(_write(tmp_path, "docs.txt", "-DOCSTART- -X- O O\n\n"))
    with pytest.raises(CgptError, match=r"one.txt:1: expected 2"):
        read_tagging(_write(tmp_path, "one.txt", "EU\n"))


def test_jsonl_tagging(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.jsonl", '{"tokens": ["New", "York"], "tags": ["I-LOC", "I-LOC"]}\n')
    assert read_tagging(path) == [TaggedExample(("New", "York"), ("B-LOC", "I-LOC"), f"{path}:1")]
    bad = _write(tmp_path, "bad.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n')
    with pytest.raises(CgptError, match=r"bad.jsonl:1: 2 tokens but 1 tags"):
        read_tagging(bad)


def test_generation_jsonl(tmp_path: Path) -> None:
    path = _write(tmp_path, "g.jsonl", '{"prompt": "2+2=", "response": "4"}\n')
    assert read_generation(path) == [GenerationExample("2+2=", "4", f"{path}:1")]
    with pytest.raises(CgptError, match=r"g2.jsonl:1: missing field 'response'"):
        read_generation(_write(tmp_path, "g2.jsonl", '{"prompt": "hi"}\n'))


# --- labels ----------------------------------------------------------------------------------------------


def test_label_set_is_sorted_saved_and_strict(tmp_path: Path) -> None:
    labels = LabelSet.from_labels(["10", "2", "neg", "2", "1"])
    assert labels.names == ("1", "2", "10", "neg")  # numbers by value, then text
    labels.save(tmp_path / "labels.json")
    assert LabelSet.load(tmp_path / "labels.json") == labels
    assert labels.encode("10", "x") == 2 and labels.decode(2) == "10"
    with pytest.raises(CgptError, match=r"dev.tsv:9: label 'pos' never appears in the training data"):
        labels.encode("pos", "dev.tsv:9")
    tagged = [TaggedExample(("a", "b"), ("B-PER", "O"), "f:1"), TaggedExample(("c",), ("B-LOC",), "f:4")]
    assert label_set(tagged).names == ("B-LOC", "B-PER", "O")


# --- the real files --------------------------------------------------------------------------------------

DATA = SHARED_DATA


@needs_shared
def test_real_sst2_dev_matches_its_readme() -> None:
    examples = read_classification(DATA / "sst2" / "dev.tsv")
    assert len(examples) == 872
    assert Counter(e.label for e in examples) == {"0": 428, "1": 444}
    assert label_set(examples).names == ("0", "1")
    assert examples[0].text == "it 's a charming and often affecting journey ."


@needs_shared
def test_real_sst2_train_matches_its_readme() -> None:
    examples = read_classification(DATA / "sst2" / "train.tsv")
    assert Counter(e.label for e in examples) == {"0": 29780, "1": 37569}
    assert [e.text for e in examples if e.where.endswith(":17690")] == ["10"]  # a restored number-only row


@needs_shared
def test_real_conll_testb_skips_its_odd_docstart_lines() -> None:
    examples = read_tagging(DATA / "conll2003" / "eng.testb")
    assert len(examples) == 3453 and sum(len(e.tokens) for e in examples) == 46435
    types = Counter(kind for e in examples for kind, _, _ in entity_spans(e.tags))
    assert types == {"PER": 1617, "ORG": 1661, "LOC": 1668, "MISC": 702}


@needs_shared
def test_real_conll_testa_matches_its_readme_and_the_bio_copy() -> None:
    examples = read_tagging(DATA / "conll2003" / "eng.testa")
    assert len(examples) == 3250
    assert sum(len(e.tokens) for e in examples) == 51362
    types = Counter(kind for e in examples for kind, _, _ in entity_spans(e.tags))
    assert types == {"PER": 1842, "ORG": 1341, "LOC": 1837, "MISC": 922}
    assert label_set(examples).names == (
        "B-LOC",
        "B-MISC",
        "B-ORG",
        "B-PER",
        "I-LOC",
        "I-MISC",
        "I-ORG",
        "I-PER",
        "O",
    )
    bio = read_tagging(DATA / "conll2003-bio" / "eng.testa")
    assert [(e.tokens, e.tags) for e in bio] == [(e.tokens, e.tags) for e in examples]

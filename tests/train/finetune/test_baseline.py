"""Baselines on toy data with known answers: bag-of-words + bigram logistic regression, the CoNLL-2003 span
memory (and its published score on the real data), and the task dispatcher."""

from __future__ import annotations

import pytest
import torch

from tests.paths import SHARED_DATA, needs_shared
from train.errors import CgptError
from train.finetune.baseline import (
    CLASSIFY_NAME,
    TAG_NAME,
    BowModel,
    baseline,
    classify_baseline,
    features,
    fit_bow,
    fit_span_memory,
    tag_baseline,
)
from train.finetune.metrics import entity_scores
from train.finetune.readers import LabelSet, TaggedExample, TextExample, read_tagging

# --- classification -------------------------------------------------------------------------------------------

SENTIMENT = [  # 1 = positive, 0 = negative; 4 positive to 2 negative, so the majority class is 1
    ("a good film", 1),
    ("good acting and a good plot", 1),
    ("the cast is good", 1),
    ("good , really", 1),
    ("a bad film", 0),
    ("bad acting", 0),
]


def _texts(pairs: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [t for t, _ in pairs], [y for _, y in pairs]


def test_features_are_lower_cased_unigrams_and_bigrams_once_each() -> None:
    assert features("Not GOOD, not good!") == ["not", "good", ",", "!", "not good", "good ,", ", not", "good !"]
    assert features("") == []


def test_separable_words_classify_unseen_sentences() -> None:
    model = fit_bow(*_texts(SENTIMENT), num_labels=2)
    held_out = ["what a good story", "such a bad story", "GOOD", "terribly bad ."]
    assert model.predict(held_out) == [1, 0, 1, 0]


def test_bigrams_solve_what_unigrams_cannot() -> None:
    # XOR: with unigrams, the positive-minus-negative scores of "good" and "not bad" must be > 0 and those of
    # "bad" and "not good" < 0, yet both pairs sum to 2b + w_not + w_good + w_bad. The bigrams break the tie.
    pairs = [("good", 1), ("not good", 0), ("bad", 0), ("not bad", 1)] * 5
    model = fit_bow(*_texts(pairs), num_labels=2)
    assert model.predict(["it was good", "it was not good", "it was bad", "it was not bad"]) == [1, 0, 0, 1]
    w = model.weight
    assert w[model.vocab["not good"], 0] > w[model.vocab["not good"], 1]
    assert w[model.vocab["not bad"], 1] > w[model.vocab["not bad"], 0]
    unigrams = {f: i for f, i in model.vocab.items() if " " not in f}
    rows = torch.tensor(list(unigrams.values()))
    unigram_only = BowModel({f: n for n, f in enumerate(unigrams)}, w[rows], model.bias)  # fails, as argued
    assert unigram_only.predict(["good", "not good", "bad", "not bad"]) != [1, 0, 0, 1]


def test_unseen_words_are_ignored_and_the_bias_decides() -> None:
    model = fit_bow(*_texts(SENTIMENT), num_labels=2)
    assert torch.equal(model.logits(["zebra xylophone", ""]), model.bias.expand(2, 2))
    assert model.predict(["zebra xylophone", ""]) == [1, 1]  # the majority class
    assert int(model.bias.argmax()) == 1


def test_with_no_features_the_unpenalised_bias_learns_the_class_prior() -> None:
    model = fit_bow(["", "", "", "!"], [1, 1, 1, 0], num_labels=2, min_count=2)
    assert model.vocab == {}
    # an L2 penalty on the bias would pull this toward (1/2, 1/2)
    assert torch.softmax(model.bias, 0).tolist() == pytest.approx([0.25, 0.75], abs=1e-6)
    assert model.predict(["anything"]) == [1]


def test_fit_is_deterministic() -> None:
    a, b = fit_bow(*_texts(SENTIMENT), num_labels=2), fit_bow(*_texts(SENTIMENT), num_labels=2)
    assert a.vocab == b.vocab
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert a.weight.abs().max() > 0.1  # it did train


def test_three_classes() -> None:
    pairs = [("good film", 2), ("great good fun", 2), ("bad film", 0), ("awful bad mess", 0)]
    pairs += [("okay film", 1), ("fine okay watch", 1)]
    model = fit_bow(*_texts(pairs), num_labels=3)
    assert model.weight.shape == (len(model.vocab), 3)
    assert model.predict(["a good day", "an okay day", "a bad day"]) == [2, 1, 0]


def test_min_count_drops_rare_features() -> None:
    model = fit_bow(*_texts(SENTIMENT), num_labels=2, min_count=2)
    assert set(model.vocab) == {"a", "good", "bad", "film", "acting", "a good"}  # in 2+ texts; "plot" in one


def test_fit_bow_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="2 texts and 1 labels"):
        fit_bow(["a", "b"], [0], num_labels=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_bow(["a", "b"], [0, 2], num_labels=2)


def _examples(pairs: list[tuple[str, str | None]]) -> list[TextExample]:
    return [TextExample(text, label, f"toy:{n}") for n, (text, label) in enumerate(pairs, start=1)]


def test_classify_baseline_report() -> None:
    names = {0: "neg", 1: "pos"}
    train = _examples([(t, names[y]) for t, y in SENTIMENT])
    labels = LabelSet.from_labels(["pos", "neg"])
    dev = _examples([("good", "pos"), ("bad", "neg"), ("bad", "pos"), ("plain", None)])
    unlabelled = _examples([("good", None)])
    report = classify_baseline(train, {"dev": dev, "test": unlabelled}, labels)
    assert report["name"] == CLASSIFY_NAME and report["l2"] == 1.0
    assert report["features"] == len(fit_bow(*_texts(SENTIMENT), num_labels=2).vocab)
    assert report["train"] == {"accuracy": 1.0, "examples": 6}
    # predicted pos, neg, neg: neg P 1/2 R 1 F1 2/3, pos P 1 R 1/2 F1 2/3; the unlabelled "plain" is not scored
    assert report["dev"] == {"accuracy": pytest.approx(2 / 3), "macro_f1": pytest.approx(2 / 3), "examples": 3}
    assert "test" not in report  # nothing labelled to score


def test_classify_baseline_rejects_an_unlabelled_training_example() -> None:
    train = _examples([("good", "pos"), ("bad", None)])
    with pytest.raises(CgptError, match="toy:2: a training example has no label"):
        classify_baseline(train, {}, LabelSet(("pos",)))


# --- token classification --------------------------------------------------------------------------------------


def _sentence(words: str, tags: str) -> TaggedExample:
    return TaggedExample(tuple(words.split()), tuple(tags.split()), "toy")


NER_TRAIN = [
    _sentence("John Smith visited Paris .", "B-PER I-PER O B-LOC O"),
    _sentence("He lives in New York .", "O O O B-LOC I-LOC O"),
    _sentence("New York City is big", "B-LOC I-LOC I-LOC O O"),
    _sentence("The New York Times wrote", "O B-ORG I-ORG I-ORG O"),
    _sentence("Jordan met Jordan in Jordan", "B-PER O B-PER O B-LOC"),  # Jordan: PER twice, LOC once
    _sentence("Washington and Washington", "B-PER O B-LOC"),  # a tie: LOC before PER
]


def _valid_bio(tags: list[str]) -> bool:
    return all(
        t == "O" or t.startswith("B-") or (t.startswith("I-") and i > 0 and tags[i - 1][2:] == t[2:])
        for i, t in enumerate(tags)
    )


def test_memorised_span_is_tagged_in_a_new_sentence() -> None:
    memory = fit_span_memory(NER_TRAIN)
    assert memory.tag("Yesterday John Smith flew to Paris".split()) == ["O", "B-PER", "I-PER", "O", "O", "B-LOC"]
    assert memory.tag("Paris Paris".split()) == ["B-LOC", "B-LOC"]  # two entities, not one


def test_longest_match_wins() -> None:
    memory = fit_span_memory(NER_TRAIN)
    assert memory.longest == 3  # "New York Times"; "The" was outside it
    assert memory.tag("in New York City now".split()) == ["O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert memory.tag("in New York now".split()) == ["O", "B-LOC", "I-LOC", "O"]
    assert memory.tag("read New York Times".split()) == ["O", "B-ORG", "I-ORG", "I-ORG"]
    assert memory.tag("New York Times New York".split()) == ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "I-LOC"]


def test_most_frequent_type_wins_and_ties_go_alphabetically() -> None:
    for train in (NER_TRAIN, NER_TRAIN[::-1]):
        memory = fit_span_memory(train)
        assert memory.entities[("Jordan",)] == "PER"
        assert memory.entities[("Washington",)] == "LOC"


def test_unseen_entities_and_other_cases_stay_outside() -> None:
    memory = fit_span_memory(NER_TRAIN)
    assert memory.tag("Mary Jones visited paris and York".split()) == ["O"] * 6  # case-sensitive, whole spans only
    assert memory.tag([]) == []


def test_output_is_valid_bio_of_the_right_length() -> None:
    memory = fit_span_memory(NER_TRAIN)
    for sentence in ["New York City New York Times Paris", "Smith John Smith John", "York City", "x"]:
        tags = memory.tag(sentence.split())
        assert len(tags) == len(sentence.split()) and _valid_bio(tags)


def test_training_data_scores_perfectly_when_no_span_conflicts() -> None:
    train = [ex for ex in NER_TRAIN if "Jordan" not in ex.tokens and "Washington" not in ex.tokens]
    report = tag_baseline(train, {"train": train})
    assert report["name"] == TAG_NAME
    assert report["spans"] == 5  # John Smith, Paris, New York, New York City, New York Times
    assert report["train"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "examples": 4}


def test_tag_baseline_scores_splits_and_skips_untagged_ones() -> None:
    test = [_sentence("John Smith and Mary Jones", "B-PER I-PER O B-PER I-PER")]
    untagged = [TaggedExample(("Paris",), None, "toy")]
    report = tag_baseline(NER_TRAIN, {"test": test, "predict": untagged})
    # John Smith found (1 of 1 predicted), Mary Jones missed (1 of 2 true)
    assert report["test"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "examples": 1}
    assert "predict" not in report
    with pytest.raises(CgptError, match="no tags"):
        fit_span_memory(untagged)


@needs_shared
def test_conll2003_reproduces_the_shared_task_baseline() -> None:
    """Tjong Kim Sang & De Meulder (2003), table: English baseline 78.33/65.23/71.18 dev, 71.91/50.90/59.61 test."""
    folder = SHARED_DATA / "conll2003"
    train, dev, test = (read_tagging(folder / name) for name in ("eng.train", "eng.testa", "eng.testb"))
    memory = fit_span_memory(train)
    for split, (p, r, f) in ((dev, (78.33, 65.23, 71.18)), (test, (71.91, 50.90, 59.61))):
        scores = entity_scores([ex.tags for ex in split], [memory.tag(ex.tokens) for ex in split])  # type: ignore[misc]
        assert [round(100 * scores[m], 2) for m in ("precision", "recall", "f1")] == [p, r, f]
    assert all(_valid_bio(memory.tag(ex.tokens)) for ex in test)


# --- dispatcher -----------------------------------------------------------------------------------------------


def test_baseline_dispatches_by_task() -> None:
    train = _examples([(t, str(y)) for t, y in SENTIMENT])
    dev = _examples([("good", "1"), ("bad", "0")])
    report = baseline("classify", train, {"dev": dev})  # labels default to the training set's
    assert report == classify_baseline(train, {"dev": dev}, LabelSet(("0", "1")))
    assert report is not None and report["dev"]["accuracy"] == 1.0
    tagged = baseline("tag", NER_TRAIN, {"dev": NER_TRAIN[:1]})
    assert tagged is not None and tagged["name"] == TAG_NAME and tagged["dev"]["f1"] == 1.0
    assert baseline("generate", [], {}) is None
    assert baseline("regress", [], {}) is None
    with pytest.raises(ValueError, match="task='translate'.*'classify', 'tag'"):
        baseline("translate", [], {})

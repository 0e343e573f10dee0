"""Metrics against hand-worked examples, including conlleval's edge cases for entity spans."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from train.finetune.metrics import (
    accuracy,
    classification_report,
    confusion_matrix,
    entity_scores,
    entity_spans,
    format_report,
    plot_confusion_matrix,
    save_report,
)

Y_TRUE = [0, 0, 1, 1, 2, 2, 2]
Y_PRED = [0, 1, 1, 1, 2, 0, 2]
# class 0: tp 1, predicted 2, true 2 -> P 1/2, R 1/2, F1 1/2
# class 1: tp 2, predicted 3, true 2 -> P 2/3, R 1,   F1 4/5
# class 2: tp 2, predicted 2, true 3 -> P 1,   R 2/3, F1 4/5


def test_accuracy_and_macro_f1() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 7)
    macro_f1 = classification_report(Y_TRUE, Y_PRED)["macro"]["f1"]
    assert macro_f1 == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    unseen = classification_report(Y_TRUE, Y_PRED, labels=[0, 1, 2, 3])["macro"]["f1"]
    assert unseen == pytest.approx(2.1 / 4)  # an unseen class scores 0
    with pytest.raises(ValueError, match="7 true labels but 6"):
        accuracy(Y_TRUE, Y_PRED[:-1])
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])


def test_classification_report_per_class_and_macro() -> None:
    report = classification_report(Y_TRUE, Y_PRED, labels=[0, 1, 2])
    assert report["per_class"]["0"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert report["per_class"]["1"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert report["per_class"]["2"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert report["macro"] == pytest.approx({"precision": 13 / 18, "recall": 13 / 18, "f1": 0.7, "support": 7})
    assert report["accuracy"] == pytest.approx(5 / 7)
    assert json.loads(json.dumps(report)) == report


def test_report_text_and_json(tmp_path: Path) -> None:
    report = classification_report(["neg", "pos", "pos"], ["neg", "neg", "pos"])
    text = format_report(report)
    assert "neg" in text and "macro avg" in text
    assert "   0.5000  1.0000 0.6667        1" in text.splitlines()[1]  # neg: P 1/2, R 1, F1 2/3, 1 true
    save_report(report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text()) == report


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["B-PER", "I-PER", "O"], {("PER", 0, 2)}),
        (["I-PER", "I-PER"], {("PER", 0, 2)}),  # an I- after nothing starts an entity (IOB1)
        (["O", "I-LOC"], {("LOC", 1, 2)}),  # ... and so does an I- after O
        (
            ["B-PER", "I-LOC", "I-LOC"],
            {("PER", 0, 1), ("LOC", 1, 3)},
        ),  # a type change mid-span starts another
        (["B-PER", "B-PER"], {("PER", 0, 1), ("PER", 1, 2)}),
        (["I-PER", "B-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 3)}),  # IOB1's B- between neighbours
        (["B-PER", "O", "I-PER"], {("PER", 0, 1), ("PER", 2, 3)}),
        (["O", "O", "B-MISC", "I-MISC"], {("MISC", 2, 4)}),  # a trailing entity is closed at the end
        (["O", "O"], set()),
    ],
)
def test_entity_spans_follow_conlleval(tags: list[str], spans: set[tuple[str, int, int]]) -> None:
    assert entity_spans(tags) == spans


def test_entity_scores_are_micro_averaged_exact_matches() -> None:
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"], ["O", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "I-ORG", "B-ORG"], ["O", "B-MISC"]]
    # true entities 4, predicted 4 (the ORG split in two), exact matches 2 (PER, MISC)
    scores = entity_scores(true, pred)
    assert (scores["precision"], scores["recall"], scores["f1"], scores["support"]) == (0.5, 0.5, 0.5, 4)
    per = scores["per_type"]
    assert per["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert per["MISC"]["f1"] == 1.0
    assert per["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert "overall" in format_report(scores) and "MISC" in format_report(scores)
    with pytest.raises(ValueError, match="sentence 1: 3 true tags but 2"):
        entity_scores(true, [pred[0], pred[1][:2], pred[2]])


def test_confusion_matrix_rows_are_true_columns_predicted() -> None:
    matrix = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert matrix.sum() == len(Y_TRUE)


def test_confusion_matrix_png_only_with_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = np.array([[3, 1], [0, 4]])
    pytest.importorskip("matplotlib")
    assert plot_confusion_matrix(matrix, ["neg", "pos"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if it were not installed
    assert not plot_confusion_matrix(matrix, ["neg", "pos"], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()

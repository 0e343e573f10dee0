"""`cgpt evaluate` and `cgpt predict` on fine-tuned runs: the JSON contract per task, the embedding and typo
attacks reported next to the clean metrics, and predictions from --text and --input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.train.conftest import Files
from train.cli import main
from train.errors import CgptError
from train.evaluation.evaluate import evaluate, load_finetuned
from train.evaluation.predict import examples_from_texts, predict


def _json(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_classification_json_has_accuracy_macro_f1_and_per_class(
    classify_run: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _json(capsys, ["evaluate", "--run", str(classify_run), "--data", files.classify.val, "--json"])
    assert {"accuracy", "macro_f1", "per_class", "macro", "loss", "examples", "truncated"} <= set(result)
    assert set(result["per_class"]["1"]) == {"precision", "recall", "f1", "support"}
    assert result["examples"] == 8 and "attacked" not in result
    assert main(["evaluate", "--run", str(classify_run), "--data", files.classify.val]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "macro avg" in text


def test_tagging_json_is_entity_level(tag_run: Path, files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    result = _json(capsys, ["evaluate", "--run", str(tag_run), "--data", files.tag.test, "--json"])
    assert {"precision", "recall", "f1", "per_type"} <= set(result) and set(result["per_type"]) <= {
        "PER",
        "LOC",
    }
    assert result["support"] == 8


def test_attacks_are_reported_next_to_the_clean_metric(
    classify_run: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "evaluate",
        "--run",
        str(classify_run),
        "--data",
        files.classify.val,
        "--json",
        "--attack",
        "embedding",
    ]
    result = _json(capsys, [*args, "--attack", "typo", "--epsilon", "2.0", "--typo-rate", "0.5"])
    clean, attacked = result, result["attacked"]
    assert attacked["embedding"]["epsilon"] == 2.0 and attacked["typo"]["rate"] == 0.5
    assert attacked["embedding"]["loss"] > clean["loss"]  # the loss gradient's direction raises the loss
    assert {"accuracy", "macro_f1"} <= set(attacked["embedding"]) & set(attacked["typo"])
    again = evaluate(classify_run, files.classify.val, ("typo",), typo_rate=0.5)
    assert again["attacked"]["typo"] == attacked["typo"]  # seeded typos
    text = ["evaluate", "--run", str(classify_run), "--data", files.classify.val, "--attack", "typo"]
    assert main([*text, "--typo-rate", "0.5"]) == 0
    assert "under typo attack (rate 0.5)" in capsys.readouterr().out


def test_predict_text_and_input_for_classification(
    classify_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--run", str(classify_run), "--text", "loved it"]) == 0
    label, text = capsys.readouterr().out.strip().split("\t")
    assert label in ("0", "1") and text == "loved it"
    (tmp_path / "in.txt").write_text("great acting\n\nboring plot\n" + "long " * 20 + "\n")
    assert main(["predict", "--run", str(classify_run), "--input", str(tmp_path / "in.txt")]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 3 and "1 of 3 inputs cut to the context of 32 tokens" in err
    assert main(["predict", "--run", str(classify_run), "--input", str(tmp_path / "in.txt"), "--strict"]) == 1
    assert "in.txt:4: 100 tokens exceed the context of 32" in capsys.readouterr().err


def test_predict_tags_each_word(
    tag_run: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--run", str(tag_run), "--text", "Bob Smith lives in Rome ."]) == 0
    pairs = [item.rsplit("/", 1) for item in capsys.readouterr().out.split()]
    assert [w for w, _ in pairs] == ["Bob", "Smith", "lives", "in", "Rome", "."]
    assert {t for _, t in pairs} <= {"B-PER", "I-PER", "B-LOC", "I-LOC", "O"}
    shutil.copy(files.tag.test, tmp_path / "test.conll")  # CoNLL columns: the words are the first column
    assert main(["predict", "--run", str(tag_run), "--input", str(tmp_path / "test.conll")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and [item.rsplit("/", 1)[0] for item in lines[0].split()][:2] == ["Alice", "lives"]


def test_predict_generates_a_response(generate_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["predict", "--run", str(generate_run), "--text", "say hi", "--max-new-tokens", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0 and capsys.readouterr().out == first  # greedy
    fin = load_finetuned(generate_run)
    (line,), _ = predict(fin, examples_from_texts("generate", ["say hi"], "t"), max_new_tokens=5)
    assert first == line + "\n" and len(line) <= 5  # char-level: one character a token, eot not shown


def test_a_pretraining_run_is_not_a_fine_tuned_one(pretrained: Path, files: Files) -> None:
    with pytest.raises(CgptError, match="not a fine-tuned checkpoint"):
        evaluate(pretrained, files.classify.val)
    with pytest.raises(CgptError, match="attack='noise'"):
        evaluate(pretrained, files.classify.val, ("noise",))


def test_sample_streams_from_a_generate_finetune_run(generate_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from train.cli import main

    assert (
        main(["sample", "--run", str(generate_run), "--prompt", "ab", "--max-new-tokens", "5", "--temperature", "0"])
        == 0
    )
    assert capsys.readouterr().out.startswith("ab")

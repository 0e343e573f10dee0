"""`cgpt prompt`: a model pretrained on a sentiment pattern classifies by prompting far above chance; K-shot
demonstrations are drawn as specified; calibration undoes a planted label bias; the run is never modified; every
bad input is a one-line error naming the flag or file:line, with nothing written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.train.conftest import Files
from tests.train.evaluation.conftest import Sentiment
from train.cli import main
from train.evaluation.fewshot import DemoPool, PromptFormat, build
from train.evaluation.prompt import PromptConfig, calibrated, evaluate_prompts, label_scores, read_prompt_data
from train.evaluation.templates import Verbaliser
from train.finetune.readers import TextExample, read_classification
from train.runs import load_language_model

LABELS = "0=negative,1=positive"


def _prompt(capsys: pytest.CaptureFixture[str], run: Path, data: str, *extra: str) -> dict:
    args = ["prompt", "--run", str(run), "--data", data, "--template", "sentiment", "--labels", LABELS]
    assert main([*args, "--json", "--no-progress", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _digest(directory: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_zero_shot_is_far_above_chance_and_leaves_the_run_as_it_was(
    sentiment: Sentiment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    before = _digest(sentiment.run)
    result = _prompt(capsys, sentiment.run, sentiment.dev, "--out", str(tmp_path / "out"))
    assert _digest(sentiment.run) == before
    keys = {"accuracy", "macro_f1", "n", "shots", "calibrated", "per_class", "majority_baseline", "seeds"}
    assert keys | {"accuracy_std", "truncated", "chance"} <= set(result)
    assert result["n"] == 40 and result["shots"] == 0 and result["calibrated"] is False
    assert result["chance"] == 0.5 and result["majority_baseline"] == 0.5  # dev labels alternate
    assert result["accuracy"] >= 0.9 and result["macro_f1"] >= 0.9
    assert set(result["per_class"]) == {"0", "1"} and result["per_class"]["1"]["support"] == 20
    rows = [json.loads(line) for line in (tmp_path / "out" / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and rows[0]["prompt"].startswith("Review: ") and rows[0]["prompt"].endswith("Sentiment:")
    assert {"prompt", "scores", "prediction", "label"} <= set(rows[0]) and set(rows[0]["scores"]) == {"0", "1"}
    assert np.mean([r["correct"] for r in rows]) == result["accuracy"]
    assert json.loads((tmp_path / "out" / "result.json").read_text()) == result
    pytest.importorskip("matplotlib")
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 0


def test_table_output_names_the_baselines(sentiment: Sentiment, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["prompt", "--run", str(sentiment.run), "--data", sentiment.dev, "--template", "Review: {text}\\nSentiment:"]
    assert main([*args, "--labels", LABELS, "--limit", "6", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 examples, 0-shot" in out and "chance 0.5000" in out and "majority" in out and "macro avg" in out


def test_few_shot_over_seeds_reports_mean_spread_and_truncation(
    sentiment: Sentiment, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--shots", "4", "--demos", sentiment.train, "--balanced", "--seeds", "1,2,3", "--limit", "12"]
    result = _prompt(capsys, sentiment.run, sentiment.dev, *extra)
    assert [s["seed"] for s in result["seeds"]] == [1, 2, 3] and result["shots"] == 4
    accuracies = [s["accuracy"] for s in result["seeds"]]
    assert result["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert result["accuracy"] >= 0.9
    # four ~17-token demonstrations and the prompt overflow the context of 64: demonstrations go first
    assert result["truncated"] == sum(s["truncated"] for s in result["seeds"]) > 0
    assert all(s["demos_dropped"] > 0 for s in result["seeds"])
    again = _prompt(capsys, sentiment.run, sentiment.dev, *extra)
    assert again["seeds"] == result["seeds"]  # seeded draws


def test_a_trailing_space_in_the_template_scores_as_the_delimiter_does(sentiment: Sentiment, tmp_path: Path) -> None:
    """ "Sentiment: " + "positive" and "Sentiment:" + " positive" are the same text, so the same tokens and scores
    (the harness moves the space onto the continuation); the escapes and --fewshot-delimiter reach the prompt."""
    rows = []
    for template, target, out in (("sentiment", " ", "a"), ("Review: {text}\\nSentiment: ", "", "b")):
        args = ["prompt", "--run", str(sentiment.run), "--data", sentiment.dev, "--labels", LABELS, "--limit", "5"]
        args += [
            "--template",
            template,
            "--target-delimiter",
            target,
            "--shots",
            "1",
            "--fewshot-delimiter",
            "\\n--\\n",
        ]
        assert main([*args, "--no-progress", "--json", "--out", str(tmp_path / out)]) == 0
        rows.append([json.loads(line) for line in (tmp_path / out / "examples.jsonl").read_text().splitlines()])
    assert [r["scores"] for r in rows[0]] == [r["scores"] for r in rows[1]]
    demo, prompt = rows[0][0]["prompt"].split("\n--\n")  # one demonstration, then the example's prompt
    assert demo.split("\nSentiment: ")[1] in ("negative", "positive") and prompt.endswith("\nSentiment:")


def test_demonstrations_are_drawn_per_example_never_the_example_and_balanced() -> None:
    pool_examples = [TextExample(f"text {i % 7}", str(i % 3 % 2), f"f:{i}") for i in range(30)]
    pool = DemoPool(pool_examples, "f", same_as_data=True)
    test = pool_examples[5]
    for seed in range(5):
        demos = pool.draw(test, 5, seed, 6, True, ("0", "1"))
        assert len(demos) == 6 and all(d.text != test.text for d in demos)
        assert [d.label for d in demos].count("0") == 3  # balanced: 6 shots over 2 labels
        assert len({d.where for d in demos}) == 6  # without replacement
    assert pool.draw(test, 5, 1, 6, False, ("0", "1")) == pool.draw(test, 5, 1, 6, False, ("0", "1"))
    assert pool.draw(test, 5, 1, 6, False, ("0", "1")) != pool.draw(test, 5, 2, 6, False, ("0", "1"))
    assert pool.draw(test, 5, 1, 6, False, ("0", "1")) != pool.draw(test, 6, 1, 6, False, ("0", "1"))


def test_prompts_are_cut_from_the_left_demonstrations_first(sentiment: Sentiment) -> None:
    fmt = PromptFormat("Review: {text}\nSentiment:", Verbaliser.parse(LABELS))
    example = TextExample("a superb story", "1", "f:2")
    demos = [TextExample(f"demo {i} was dull", "0", f"f:{i}") for i in range(3)]
    full = build(fmt, sentiment.tokenizer, example, demos, 1000)
    assert not full.truncated and full.prompt.startswith("Review: demo 0 was dull\nSentiment: negative\n\nReview:")
    cut = build(fmt, sentiment.tokenizer, example, demos, 40)
    assert (
        cut.truncated and 0 < cut.demos_dropped < 3 and cut.prompt == full.prompt.split("\n\n", cut.demos_dropped)[-1]
    )
    assert max(len(r.tokens) for r in cut.requests) <= 41
    tiny = build(fmt, sentiment.tokenizer, example, demos, 6)
    assert tiny.demos_dropped == 3 and tiny.truncated and tiny.prompt.endswith("Sentiment:")
    assert all(len(r.tokens) <= 7 and r.tokens[0] != sentiment.tokenizer.eot_id for r in tiny.requests)


def test_normalisation_and_several_words_per_label() -> None:
    fmt = PromptFormat("{text}", Verbaliser.parse("a=xx|y,b=zzzz"))
    requests = [type("R", (), {"scored": n})() for n in (2, 1, 4)]
    scores = [-2.0, -3.0, -4.0]  # words xx, y (label a) and zzzz (label b)
    assert label_scores(scores, requests, fmt, "none", "best").tolist() == [[-2.0, -4.0]]
    assert label_scores(scores, requests, fmt, "none", "sum")[0, 0] == pytest.approx(np.logaddexp(-2, -3))
    assert label_scores(scores, requests, fmt, "tokens", "best").tolist() == [[-1.0, -1.0]]
    assert label_scores(scores, requests, fmt, "chars", "best").tolist() == [[-1.0, -1.0]]  # 2 and 4 characters


def test_calibration_divides_out_the_content_free_probabilities() -> None:
    scores = np.log(np.array([[0.7, 0.3], [0.9, 0.1], [0.8, 0.2], [0.85, 0.15]]))  # input, then N/A, "", [MASK]
    p_cf = np.array([0.85, 0.15])
    assert calibrated(scores) == pytest.approx(np.log(np.array([0.7, 0.3]) / p_cf))
    assert int(np.argmax(calibrated(scores))) == 1  # 0.3 / 0.15 beats 0.7 / 0.85


def test_calibration_restores_accuracy_under_a_planted_label_bias(sentiment: Sentiment) -> None:
    """A model that prefers " positive" whatever the input (a bias on that token's logit) predicts it always;
    contextual calibration measures the preference on content-free inputs and divides it out."""
    model, tokenizer = load_language_model(sentiment.run, device="cpu")
    (positive,) = tokenizer.encode(" positive")
    biased = nn.Linear(model.config.n_embd, model.config.vocab_size)
    with torch.no_grad():
        biased.weight = model.lm_head.weight
        biased.bias.zero_()[positive] = 6.0
    accuracy = {}
    for name, calibrate in (("clean", False), ("biased", False), ("calibrated", True)):
        if name != "clean":
            model.lm_head = biased
        config = PromptConfig(str(sentiment.run), sentiment.dev, "sentiment", LABELS, calibrate=calibrate)
        data = read_prompt_data(config, config.format().verbaliser)
        accuracy[name] = evaluate_prompts(model, tokenizer, data, config, progress=False)[0]["accuracy"]
    assert accuracy["clean"] >= 0.9
    assert accuracy["biased"] <= 0.55  # "positive" every time: the majority baseline
    assert accuracy["calibrated"] >= accuracy["clean"] - 0.05


def test_generate_finetune_runs_can_be_prompted(
    generate_run: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["prompt", "--run", str(generate_run), "--data", files.classify.val, "--template", "qa"]
    assert main([*args, "--labels", "0=no,1=yes", "--shots", "2", "--calibrate", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 8 and result["calibrated"] and "uncalibrated" in result


def test_bench_prompt_times_both_paths_on_the_same_scores(
    sentiment: Sentiment, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["bench", "prompt", "--run", str(sentiment.run), "--data", sentiment.dev, "--template", "sentiment"]
    assert (
        main([*args, "--labels", LABELS, "--shots", "2", "--calibrate", "--limit", "6", "--rounds", "1", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["examples"] == 6 and result["requests"] == 6 * 4 * 2  # 4 inputs (calibration) x 2 words
    assert result["max_abs_diff"] < 1e-3 and result["cached_examples_per_s"] > 0 and result["speedup"] > 0


# --- bad input: one line naming the flag or file:line, exit 1, nothing written ---------------------------------


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "t.txt").write_text("Review: no placeholder\n")
    (tmp_path / "three.tsv").write_text("sentence\tlabel\nfine\t0\ngood\t1\nmeh\t2\n")
    (tmp_path / "skewed.tsv").write_text("sentence\tlabel\nfine\t0\ngood\t1\nok\t0\nnice\t0\n")
    return {
        "FILE": str(tmp_path / "t.txt"),
        "THREE": str(tmp_path / "three.tsv"),
        "SKEWED": str(tmp_path / "skewed.tsv"),
    }


BAD = {
    "no {text}": ({"--template": "Review: x"}, "--template: the template 'Review: x' has no {text}"),
    "no {text} in @file": ({"--template": "@FILE"}, "t.txt:1: the template"),
    "empty label set": ({"--labels": " "}, "--labels: no labels"),
    "same word": ({"--labels": "0=good,1=good"}, "--labels: labels '0' and '1' share the word 'good'"),
    "empty word": ({"--labels": "0=,1=positive"}, "--labels: label '0' has an empty word, which encodes to no tokens"),
    "unknown label": ({"--data": "THREE"}, "three.tsv:4: label '2' has no verbaliser in --labels"),
    "unknown label in the pool": ({"--shots": "1", "--demos": "THREE"}, "three.tsv:4: label '2' has no verbaliser"),
    "shots > pool": ({"--shots": "40"}, "--shots 40: the demonstration pool"),
    "balanced shots > a label's pool": (
        {"--shots": "4", "--demos": "SKEWED", "--balanced": None},
        "--shots 4 --balanced: needs up to 2 demonstrations of label '1'",
    ),
    "bad seeds": ({"--seeds": "1,x"}, "argument --seeds: expected comma-separated integers"),
    "repeated seed": ({"--seeds": "1,1"}, "--seeds='1,1': a seed is repeated"),
    "out in the run": ({"--out": "RUN/prompt"}, "--out"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_flag_or_the_line(
    case: str, sentiment: Sentiment, bad_files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, expected = BAD[case]
    names = {**bad_files, "RUN": str(sentiment.run)}
    args = {"--run": str(sentiment.run), "--data": sentiment.dev, "--template": "sentiment", "--labels": LABELS}
    args["--out"] = str(tmp_path / "out")
    for flag, value in changes.items():
        args[flag] = (
            value if value is None else next((value.replace(k, v) for k, v in names.items() if k in value), value)
        )
    argv = ["prompt", "--no-progress", *(x for flag, value in args.items() for x in (flag, value) if x is not None)]
    before = _digest(sentiment.run)
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists() and _digest(sentiment.run) == before


def test_a_classification_finetune_is_refused(
    classify_run: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["prompt", "--run", str(classify_run), "--data", files.classify.val, "--template", "sentiment"]
    assert main([*args, "--labels", "0=bad,1=good", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no language-model head" in err and "best.pt" in err


def test_a_word_the_char_tokenizer_cannot_spell_names_the_flag(
    pretrained: Path, files: Files, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["prompt", "--run", str(pretrained), "--data", files.classify.val, "--template", "{text}"]
    assert main([*args, "--labels", "0=bad,1=gööd", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--labels word 'gööd'" in err


def test_config_checks_name_the_flag(sentiment: Sentiment) -> None:
    for field, value, flag in [
        ("normalize", "bytes", "--normalize"),
        ("shots", -1, "--shots"),
        ("seeds", (), "--seeds"),
    ]:
        with pytest.raises(Exception, match=flag):
            PromptConfig(str(sentiment.run), sentiment.dev, "sentiment", LABELS, **{field: value})
    examples = read_classification(sentiment.dev)
    assert len(examples) == 40

"""Language-model evaluation on held-out text: every token scored once, sliding windows against a per-token
reference, bits per byte as summed loss / ln 2 / UTF-8 bytes, and the command's JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.cli import main
from train.evaluation.lm import encode_files, evaluate_text, score_tokens, windows
from train.runs import load_language_model


@pytest.mark.parametrize("n", [2, 5, 33, 64, 100])
@pytest.mark.parametrize("block, stride", [(8, 8), (8, 3), (8, 1), (16, 16), (4, 2)])
def test_windows_score_every_target_once(n: int, block: int, stride: int) -> None:
    scored = []
    for start, length, first in windows(n, block, stride):
        assert 1 <= length <= block and start >= 0 and start + length <= n - 1
        targets = range(start + 1 + first, start + length + 1)
        if scored:  # after the first window, each has at least block - stride tokens of context
            assert targets[0] - start >= min(block - stride + 1, targets[0])
        scored += targets
    assert scored == list(range(1, n))


def _per_token_reference(model: torch.nn.Module, tokens: np.ndarray, block: int) -> float:
    """Each target predicted from its whole context (the last `block` tokens before it): one forward per token."""
    total = 0.0
    for j in range(1, len(tokens)):
        context = torch.tensor(tokens[max(0, j - block) : j], dtype=torch.long)[None]
        logits, _ = model(context)
        total -= float(F.log_softmax(logits[0, -1].double(), -1)[int(tokens[j])])
    return total


@torch.no_grad()
def test_stride_one_equals_scoring_each_token_with_its_full_context(pretrained: Path) -> None:
    model, tokenizer = load_language_model(pretrained, device="cpu")
    tokens = np.asarray(tokenizer.encode("the quick brown fox jumps over the lazy dog, twice over. " * 2))
    block = model.config.block_size
    nll, count = score_tokens(model, tokens, block, 1, 7, torch.device("cpu"))
    assert count == len(tokens) - 1
    reference = _per_token_reference(model, tokens, block)
    assert nll == pytest.approx(reference, rel=1e-5)  # fp32 logits; the sums differ only in rounding


@torch.no_grad()
def test_stride_equal_to_the_context_is_the_non_overlapping_pass(pretrained: Path) -> None:
    """Non-overlapping windows from the start (the training loop's validation pass), then one last full-length
    window that scores only the tokens the others left."""
    model, tokenizer = load_language_model(pretrained, device="cpu")
    tokens = np.asarray(tokenizer.encode("lazy dogs and quick foxes. " * 5))
    T, n = model.config.block_size, len(tokens)
    nll, count = score_tokens(model, tokens, T, T, 4, torch.device("cpu"))
    reference, covered = 0.0, 0
    for s in range(0, (n - 1) // T * T, T):
        x, y = torch.tensor(tokens[s : s + T])[None], torch.tensor(tokens[s + 1 : s + T + 1])[None]
        reference += float(model(x, y)[1]) * T
        covered = s + T
    if covered < n - 1:  # the tail: a full-length window ending at the last token
        y = torch.tensor(tokens[n - T : n])[None].clone()
        y[0, : covered - (n - 1 - T)] = -100
        reference += float(model(torch.tensor(tokens[n - 1 - T : n - 1])[None], y)[1]) * (n - 1 - covered)
    assert count == n - 1 and nll == pytest.approx(reference, rel=1e-5)


def test_bits_per_byte_is_summed_loss_over_ln2_over_utf8_bytes(pretrained: Path, tmp_path: Path) -> None:
    text = "the quick brown fox, the lazy dog.\n" * 3
    (tmp_path / "held.txt").write_text(text, encoding="utf-8")
    result = evaluate_text(pretrained, [str(tmp_path / "held.txt")], device="cpu")
    assert result["bytes"] == len(text.encode("utf-8"))
    tokens, _ = encode_files([str(tmp_path / "held.txt")], load_language_model(pretrained, device="cpu")[1])
    assert result["tokens"] == len(tokens) - 1  # every token after the leading end-of-text
    nll = result["loss"] * result["tokens"]
    assert result["bits_per_byte"] == pytest.approx(nll / math.log(2) / result["bytes"], rel=1e-12)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))


def test_bytes_are_utf8_bytes_of_the_text_and_unknown_characters_name_the_line(
    pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from train.data.tokenizer import train_tokenizer

    text = "naïve café, déjà vu: the quick brown fox.\n" * 4  # multi-byte characters: bytes != characters
    (tmp_path / "held.txt").write_text(text, encoding="utf-8")
    bpe = train_tokenizer([text], 270)  # byte-level: any text encodes
    tokens, n_bytes = encode_files([str(tmp_path / "held.txt")], bpe)
    assert n_bytes == len(text.encode("utf-8")) != len(text)
    assert bpe.decode(tokens[1:-1]) == text and tokens[0] == tokens[-1] == bpe.eot_id
    (tmp_path / "odd.txt").write_text("plain\nnaïve\n", encoding="utf-8")
    assert main(["evaluate", "--run", str(pretrained), "--data", str(tmp_path / "odd.txt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "odd.txt:2: character 'ï' is not in the char tokenizer of" in err


def test_evaluate_command_on_a_pretraining_run(
    pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.txt").write_text("the quick brown fox\n")
    (tmp_path / "b.txt").write_text("jumps over the lazy dog\n")
    files = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert main(["evaluate", "--run", str(pretrained), "--data", *files, "--stride", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"loss", "perplexity", "bits_per_byte", "tokens", "bytes", "stride", "files"}
    assert result["stride"] == 8 and result["files"] == files and result["bytes"] == 20 + 24
    assert main(["evaluate", "--run", str(pretrained), "--data", *files, "--stride", "1000"]) == 1
    assert "--stride=1000" in capsys.readouterr().err


def test_pretraining_reports_bits_per_byte_of_the_whole_validation_split(pretrained: Path) -> None:
    summary = json.loads((pretrained / "summary.json").read_text())
    assert summary["val_bits_per_byte"] > 0 and summary["val_tokens_scored"] > 0
    # char tokenizer, ASCII text: one byte per token, except the end-of-text tokens, which spell nothing
    assert summary["val_bits_per_byte"] >= summary["val_loss_full"] / math.log(2)

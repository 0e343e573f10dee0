"""`cgpt prepare` and the tokenizer benchmark as commands; the stdlib corpus; the shared real-data checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.paths import SHARED_DATA, needs_shared
from train.bench.tokenizer import bench_tokenizer
from train.cli import main
from train.data.loader import TokenDataset


def test_prepare_json_summary(tmp_path, capsys) -> None:
    (tmp_path / "a.txt").write_text("hello world\n" * 20)
    (tmp_path / "b.md").write_text("# title\nbody text\n" * 20)
    code = main(
        [
            "prepare",
            "--input",
            str(tmp_path / "a.txt"),
            str(tmp_path / "b.md"),
            "--tokenizer",
            "char",
            "--out",
            str(tmp_path / "out"),
            "--val-fraction",
            "0.5",
            "--workers",
            "1",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary == {
        "train_tokens": 241,
        "val_tokens": 361,
        "vocab_size": 17,
        "bytes_per_token": 1.0,
        "documents": 2,
    }


def test_prepare_prints_config_and_summary(tmp_path, capsys) -> None:
    (tmp_path / "a.txt").write_text("some text\n")
    assert (
        main(
            [
                "prepare",
                "--input",
                str(tmp_path),
                "--tokenizer",
                "char",
                "--out",
                str(tmp_path / "o"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "PrepareConfig(" in out and "train_tokens" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "/nonexistent/x.txt", "--tokenizer", "char"], "/nonexistent/x.txt': no such file"),
        (["--input", "stdlib", "--tokenizer", "bogus"], "tokenizer 'bogus': expected"),
        (["--input", "stdlib", "--tokenizer", "char", "--val-fraction", "1.5"], "val_fraction=1.5"),
    ],
)
def test_prepare_errors_are_one_line_and_exit_1(tmp_path, capsys, args: list[str], message: str) -> None:
    assert main(["prepare", *args, "--out", str(tmp_path / "out"), "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cgpt prepare: error: ") and message in err and err.count("\n") == 1


def test_prepare_stdlib_is_real_local_and_deterministic(tmp_path, capsys) -> None:
    for name in ("a", "b"):
        assert (
            main(
                [
                    "prepare",
                    "--input",
                    "stdlib",
                    "--max-files",
                    "5",
                    "--tokenizer",
                    "char",
                    "--out",
                    str(tmp_path / name),
                    "--workers",
                    "1",
                    "--json",
                ]
            )
            == 0
        )
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first == second and first["documents"] == 5 and first["train_tokens"] > 1000
    assert (tmp_path / "a" / "train.bin").read_bytes() == (tmp_path / "b" / "train.bin").read_bytes()
    files = TokenDataset.open(tmp_path / "a").meta["input_files"]
    assert all(len(f["sha256"]) == 64 for f in files) and files[0]["path"].endswith(".py")


def test_bench_tokenizer_reports_speed_and_compression(tmp_path) -> None:
    words = [f"{a}{b}{c}" for a in "bcdfg" for b in "aeiou" for c in "lmnrst"]
    (tmp_path / "t.txt").write_text(" ".join(words[(i * 37) % len(words)] for i in range(3000)))
    result = bench_tokenizer([str(tmp_path / "t.txt")], size_mb=0.01, vocab=300)
    assert result["vocab_size"] == 300 and result["mb"] == 0.01
    assert result["train_mb_per_s"] > 0 and result["bytes_per_token"] > 2


@needs_shared
def test_tinyshakespeare_char_level_matches_nanogpt(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "prepare",
                "--input",
                "tinyshakespeare",
                "--cache-dir",
                str(SHARED_DATA),
                "--tokenizer",
                "char",
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "1",
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    # nanoGPT's shakespeare_char: 65 characters, 1,003,854 train and 111,540 val characters; our val also
    # holds the document's closing <|endoftext|>
    assert summary == {
        "train_tokens": 1_003_854,
        "val_tokens": 111_541,
        "vocab_size": 67,
        "bytes_per_token": 1.0,
        "documents": 1,
    }
    data = TokenDataset.open(tmp_path / "out")
    text = (SHARED_DATA / "tinyshakespeare" / "input.txt").read_text()
    assert len(data.tokenizer.chars) == 65 and data.tokenizer.chars == "".join(sorted(set(text)))
    assert data.tokenizer.decode(data.train[:1000]) == text[:1000]
    assert data.tokenizer.decode(data.val[-20:]) == text[-19:] + "<|endoftext|>"
    expected_train = np.array([data.tokenizer.chars.index(c) for c in text[1_003_854 - 50 : 1_003_854]])
    np.testing.assert_array_equal(data.train[-50:], expected_train)


@needs_shared
def test_gutenberg_books_with_a_trained_bpe(tmp_path) -> None:
    books = [
        str(SHARED_DATA / "gutenberg" / name)
        for name in ("11-alice-in-wonderland.txt", "35-the-time-machine.txt", "43-jekyll-and-hyde.txt")
    ]
    from train.data.prepare import prepare

    summary = prepare(books, "train:2048", tmp_path / "out", val_fraction=0.34)
    data = TokenDataset.open(tmp_path / "out")
    assert data.meta["gutenberg_stripped"] == 3 and summary["documents"] == 3
    assert data.meta["documents"] == {"total": 3, "train": 2, "val": 1}
    text = data.tokenizer.decode(data.train)
    assert "PROJECT GUTENBERG" not in text.upper().replace("PROJECT GUTENBERG-TM", "")[:2000]
    assert text.startswith("ALICE’S ADVENTURES IN WONDERLAND")
    assert 3.0 < summary["bytes_per_token"] < 5.0

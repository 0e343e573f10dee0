"""Bad input to `cgpt finetune`: each is one line on stderr naming the file:line, field or flag, exit code 1,
and nothing written to the output directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.train.conftest import Files
from train.cli import main


def _fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def _args(pretrained: Path, out: Path, train: str, val: str, *extra: str, task: str = "classify") -> list[str]:
    return [
        "finetune",
        "--from",
        str(pretrained),
        "--task",
        task,
        "--train",
        train,
        "--val",
        val,
        "--out",
        str(out),
        "--no-progress",
        "--max-steps",
        "1",
        *extra,
    ]


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_bad_files_name_the_file_and_line(
    pretrained: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, val = tmp_path / "out", files.classify.val
    no_label = _write(tmp_path / "a.tsv", "sentence\tstars\nfine\t1\n")
    assert "a.tsv:1: missing column 'label'" in _fails(capsys, _args(pretrained, out, no_label, val))
    assert "a.tsv:1: missing column 'review'" in _fails(
        capsys, _args(pretrained, out, no_label, val, "--text-field", "review")
    )
    empty = _write(tmp_path / "empty.tsv", "\n")
    assert "empty.tsv: empty file" in _fails(capsys, _args(pretrained, out, empty, val))
    unseen = _write(tmp_path / "dev.tsv", "sentence\tlabel\nfine\t0\nmeh\t2\n")
    assert "dev.tsv:3: label '2' never appears in the training data" in _fails(
        capsys, _args(pretrained, out, files.classify.train, unseen)
    )
    long = _write(tmp_path / "long.tsv", "sentence\tlabel\nshort\t0\n" + "word " * 10 + "\t1\n")
    assert "long.tsv:3: 50 tokens exceed the context of 32" in _fails(
        capsys, _args(pretrained, out, files.classify.train, long, "--strict")
    )
    conll = _write(tmp_path / "bad.conll", "Alice NNP I-NP I-PER\nlives VBZ O\n")
    assert "bad.conll:2: expected 4 space-separated columns" in _fails(
        capsys, _args(pretrained, out, conll, files.tag.val, task="tag")
    )
    one_class = _write(tmp_path / "one.tsv", "sentence\tlabel\nfine\t1\ngood\t1\n")
    assert "one.tsv: every example has label ('1',)" in _fails(capsys, _args(pretrained, out, one_class, val))
    assert not out.exists()


def test_bad_flags_name_the_flag(
    pretrained: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f, out = files.classify, tmp_path / "out"
    for spec in ("bottom:x", "top:1", "head"):
        assert f"freeze={spec!r}: expected one of none | embeddings | bottom:K | all-but-head" in _fails(
            capsys, _args(pretrained, out, f.train, f.val, "--freeze", spec)
        )
    assert "the model has only 2 blocks" in _fails(
        capsys, _args(pretrained, out, f.train, f.val, "--freeze", "bottom:3")
    )
    assert "head='nope' is not known" in _fails(capsys, _args(pretrained, out, f.train, f.val, "--head", "nope"))
    assert "head='tag' reads 'tag' data, but task='classify'" in _fails(
        capsys, _args(pretrained, out, f.train, f.val, "--head", "tag")
    )
    assert "metric='f1' is not allowed" in _fails(capsys, _args(pretrained, out, f.train, f.val, "--metric", "f1"))
    assert "nothing to train" in _fails(
        capsys,
        _args(
            pretrained,
            out,
            files.generate.train,
            files.generate.val,
            "--freeze",
            "all-but-head",
            task="generate",
        ),
    )
    scratch = [
        "finetune",
        "--from",
        "scratch",
        "--task",
        "classify",
        "--train",
        f.train,
        "--val",
        f.val,
        "--out",
        str(out),
    ]
    assert "--from scratch needs --like RUN" in _fails(capsys, scratch)
    assert "missing --train, --val" in _fails(
        capsys, ["finetune", "--from", str(pretrained), "--task", "classify", "--out", str(out)]
    )
    assert "no run to resume in" in _fails(capsys, ["finetune", "--out", str(out), "--resume"])
    assert "no run to resume in" in _fails(capsys, ["finetune", "--out", str(out), "--resume", "--task", "tag"])
    assert not out.exists()


def test_a_source_run_whose_tokenizer_does_not_match(
    pretrained: Path, files: Files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source"
    shutil.copytree(pretrained, source)
    spec_file = source / "tokenizer" / "tokenizer.json"
    spec = json.loads(spec_file.read_text())
    spec["chars"] = spec["chars"][::-1]  # the same characters, other ids
    spec_file.write_text(json.dumps(spec))
    err = _fails(capsys, _args(source, tmp_path / "out", files.classify.train, files.classify.val))
    assert "best.pt: trained with tokenizer" in err and "do not match its checkpoint" in err
    assert "run directory not found" in _fails(
        capsys, _args(tmp_path / "nowhere", tmp_path / "out", files.classify.train, files.classify.val)
    )

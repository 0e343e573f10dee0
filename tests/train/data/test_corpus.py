"""Reading a corpus: resolving inputs, file kinds, Gutenberg stripping, bad input, named datasets."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from train.data import datasets
from train.data.corpus import CorpusStats, ReadOptions, read_corpus, resolve_inputs, stdlib_files
from train.errors import CgptError

GUTENBERG = (
    "\ufeffThe Project Gutenberg EBook of Tiny Tales, by Someone\r\n\r\nLicence text here.\r\n\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK TINY\r\nTALES ***\r\n\r\n\r\nProduced by A. Volunteer\r\n"
    "and the Online Team\r\n\r\nTINY TALES\r\n\r\nOnce upon a time.\r\n\r\n\r\n"
    "End of the Project Gutenberg EBook of Tiny Tales, by\r\nSomeone\r\n\r\n"
    "    *** END OF THIS PROJECT GUTENBERG EBOOK TINY TALES ***\r\n\r\nMore licence text.\r\n"
)


def documents(files: list[Path], options: ReadOptions | None = None) -> tuple[list[str], CorpusStats]:
    stats = CorpusStats()
    texts: dict[int, str] = defaultdict(str)
    for piece in read_corpus(files, options or ReadOptions(), stats):
        texts[piece.doc] += piece.text
    return [texts[i] for i in sorted(texts)], stats


def test_directories_recurse_sorted_and_keep_only_text_kinds(tmp_path) -> None:
    for name in (
        "b/z.txt",
        "b/a.md",
        "a.py",
        "c/d/e.jsonl",
        "f.txt.gz",
        "skip.bin",
        ".hidden/x.txt",
        "g.csv",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = [p.relative_to(tmp_path).as_posix() for p in resolve_inputs([str(tmp_path)])]
    assert names == ["a.py", "b/a.md", "b/z.txt", "c/d/e.jsonl", "f.txt.gz"]


def test_globs_files_order_and_duplicates(tmp_path) -> None:
    for name in ("x1.txt", "x2.txt", "y.md"):
        (tmp_path / name).write_text("x")
    inputs = [str(tmp_path / "y.md"), str(tmp_path / "x*.txt"), str(tmp_path / "x1.txt")]
    assert [p.name for p in resolve_inputs(inputs)] == ["y.md", "x1.txt", "x2.txt"]
    assert [p.name for p in resolve_inputs(inputs, max_files=2)] == ["y.md", "x1.txt"]


def test_missing_inputs_are_errors(tmp_path) -> None:
    with pytest.raises(CgptError, match="no such file or directory"):
        resolve_inputs([str(tmp_path / "nope.txt")])
    with pytest.raises(CgptError, match="matches no"):
        resolve_inputs([str(tmp_path / "*.txt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CgptError, match="matches no"):
        resolve_inputs([str(tmp_path / "empty")])


def test_stdlib_is_sorted_sources_without_test_suites() -> None:
    files = stdlib_files()
    assert len(files) > 300
    assert all(p.suffix == ".py" for p in files)
    parts = {part for p in files for part in p.parts[-3:-1]}
    assert not parts & {"test", "tests", "idle_test", "site-packages"}
    assert any(p.name == "argparse.py" for p in files)


def test_file_kinds_jsonl_gz_and_documents(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("plain text\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two"}) + "\n")
    (tmp_path / "c.md.gz").write_bytes(gzip.compress(b"# zipped markdown\n"))
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(json.dumps({"body": "three"}).encode()))
    (tmp_path / "e.txt").write_text("")  # an empty document is no document
    texts, stats = documents(resolve_inputs([str(tmp_path / "[abce]*")]))
    assert texts == ["plain text\n", "one", "two", "# zipped markdown\n"]
    assert [f["documents"] for f in stats.files] == [1, 2, 1, 0]
    assert stats.files[0]["sha256"] == hashlib.sha256(b"plain text\n").hexdigest()
    texts, _ = documents([tmp_path / "d.jsonl.gz"], ReadOptions(jsonl_field="body"))
    assert texts == ["three"]
    with pytest.raises(CgptError, match="d.jsonl.gz:1: expected a JSON object with a 'text' field"):
        documents([tmp_path / "d.jsonl.gz"])


def test_large_documents_stream_in_pieces_that_join_to_the_text(tmp_path) -> None:
    text = "".join(f"line {i} with some words\n" + ("\n  \n" if i % 7 == 0 else "") for i in range(2000))
    (tmp_path / "big.txt").write_text(text)
    pieces = list(read_corpus([tmp_path / "big.txt"], ReadOptions(chunk_chars=4096), CorpusStats()))
    assert len(pieces) > 10 and all(len(p.text) <= 4096 for p in pieces)
    assert "".join(p.text for p in pieces) == text
    assert [p.last for p in pieces] == [False] * (len(pieces) - 1) + [True]
    # cut after a newline that starts a non-blank line: whitespace runs are never split
    assert all(p.text.endswith("\n") for p in pieces[:-1])
    assert all(not p.text[0].isspace() for p in pieces[1:])


def test_gutenberg_header_and_footer_are_stripped(tmp_path) -> None:
    (tmp_path / "book.txt").write_bytes(GUTENBERG.encode())
    (tmp_path / "plain.txt").write_text("*** not a marker ***\nkeep me\n")
    texts, stats = documents([tmp_path / "book.txt", tmp_path / "plain.txt"])
    assert texts == ["TINY TALES\r\n\r\nOnce upon a time.", "*** not a marker ***\nkeep me\n"]
    assert stats.gutenberg_stripped == 1


def test_binary_files_are_skipped_and_counted_or_refused(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("text")
    (tmp_path / "b.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    texts, stats = documents([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert texts == ["text"] and stats.skipped_binary == [str(tmp_path / "b.txt")]
    with pytest.raises(CgptError, match="b.txt: binary file"):
        documents([tmp_path / "b.txt"], ReadOptions(strict=True))


def test_invalid_utf8_is_replaced_and_counted_or_refused(tmp_path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 ok \xff\xfe end \xe2\x82")
    texts, stats = documents([tmp_path / "bad.txt"])
    assert texts == ["caf\ufffd ok \ufffd end \ufffd"]
    assert stats.invalid_utf8 == {str(tmp_path / "bad.txt"): 3}
    with pytest.raises(CgptError, match="bad.txt: invalid UTF-8"):
        documents([tmp_path / "bad.txt"], ReadOptions(strict=True))


def test_unreadable_gzip_is_an_error(tmp_path) -> None:
    (tmp_path / "x.txt.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(CgptError, match="x.txt.gz: could not be read"):
        documents([tmp_path / "x.txt.gz"])


# ----------------------------------------------------------------------------------------------------------
# named datasets: never the network in tests


def _no_network(url: str) -> bytes:
    raise OSError(f"offline: {url}")


def test_named_dataset_from_a_cache_dir(tmp_path, monkeypatch) -> None:
    data = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
    remote = datasets.RemoteFile(
        "tiny", "input.txt", "https://example.org/input.txt", (hashlib.sha256(data).hexdigest(),)
    )
    monkeypatch.setitem(datasets.DATASETS, "tiny", (remote,))
    monkeypatch.setattr(datasets, "DEFAULT_CACHE", tmp_path / "default")
    with pytest.raises(CgptError, match=r"https://example.org/input.txt .*put that file at .*tiny/input.txt"):
        datasets.dataset_files("tiny", tmp_path / "cache", fetch=_no_network)
    (tmp_path / "cache" / "tiny").mkdir(parents=True)
    (tmp_path / "cache" / "tiny" / "input.txt").write_bytes(data)
    assert resolve_inputs(["tiny"], tmp_path / "cache", fetch=_no_network) == [tmp_path / "cache/tiny/input.txt"]
    (tmp_path / "cache" / "tiny" / "input.txt").write_bytes(b"tampered")
    with pytest.raises(CgptError, match="sha256 .* does not match"):
        datasets.dataset_files("tiny", tmp_path / "cache", fetch=_no_network)


def test_named_dataset_download_goes_to_the_cache_and_is_verified(tmp_path, monkeypatch) -> None:
    data = b"downloaded text\n"
    remote = datasets.RemoteFile("tiny", "input.txt", "https://example.org/t.txt", (hashlib.sha256(data).hexdigest(),))
    monkeypatch.setitem(datasets.DATASETS, "tiny", (remote,))
    monkeypatch.setattr(datasets, "DEFAULT_CACHE", tmp_path / "default")
    fetched = []
    paths = datasets.dataset_files("tiny", None, fetch=lambda url: fetched.append(url) or data)
    assert fetched == ["https://example.org/t.txt"] and paths[0].read_bytes() == data
    assert paths[0] == tmp_path / "default" / "tiny" / "input.txt"
    assert datasets.dataset_files("tiny", tmp_path / "other", fetch=_no_network) == paths  # found in the cache
    monkeypatch.setattr(datasets, "DEFAULT_CACHE", tmp_path / "fresh")
    with pytest.raises(CgptError, match="does not match"):
        datasets.dataset_files("tiny", None, fetch=lambda url: b"wrong")
    assert not (tmp_path / "fresh" / "tiny" / "input.txt").exists()


def test_named_dataset_member_of_a_zip(tmp_path, monkeypatch) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("set/wiki.valid.raw", " = Title = \n text\n")
    member_sha = hashlib.sha256(b" = Title = \n text\n").hexdigest()
    remote = datasets.RemoteFile(
        "set",
        "wiki.valid.raw",
        "https://example.org/set.zip",
        (member_sha,),
        member="set/wiki.valid.raw",
        archive_sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
    )
    monkeypatch.setitem(datasets.DATASETS, "set:valid", (remote,))
    paths = datasets.dataset_files("set:valid", tmp_path, fetch=lambda url: buffer.getvalue())
    assert paths == [tmp_path / "set" / "wiki.valid.raw"] and (tmp_path / "set" / "set.zip").is_file()


def test_registry_names_the_documented_datasets() -> None:
    assert {"tinyshakespeare", "wikitext-2-raw"} <= set(datasets.DATASETS)
    shakespeare = datasets.DATASETS["tinyshakespeare"][0]
    assert shakespeare.url.endswith("karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
    assert shakespeare.sha256 == ("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",)


def test_blank_documents_are_skipped_and_counted(tmp_path) -> None:
    (tmp_path / "a.txt").write_text("  first\n")
    (tmp_path / "b.txt").write_text(" \n\t\n\n")  # whitespace only: not a document
    (tmp_path / "c.txt").write_text("")
    lines = [{"text": "one"}, {"text": "   "}, {"text": ""}, {"text": "\n two"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    files = [tmp_path / n for n in ("a.txt", "b.txt", "c.txt", "d.jsonl")]
    texts, stats = documents(files)
    assert texts == ["  first\n", "one", "\n two"]  # leading whitespace of a real document is kept
    assert stats.documents == 3 and stats.blank_documents == 4
    assert [f["documents"] for f in stats.files] == [1, 0, 0, 2]


def test_whitespace_chunks_before_the_text_are_dropped_not_the_text(tmp_path) -> None:
    (tmp_path / "a.txt").write_text(" " * 5000 + "\n" * 3000 + "words here" + " " * 40)
    texts, stats = documents([tmp_path / "a.txt"], ReadOptions(chunk_chars=1024))
    assert texts[0].endswith("words here" + " " * 40) and len(texts[0]) < 8000 + 50
    assert stats.documents == 1 and stats.blank_documents == 0

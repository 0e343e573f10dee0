"""Named public datasets: where each file comes from, its sha256, and where it is cached.

`dataset_files(name, cache_dir)` returns local paths, in this order of preference: a copy in `cache_dir` (laid
out as `<cache_dir>/<folder>/<file>`, the layout of a shared data folder), a copy in the default cache
(`~/.cache/cgpt/datasets`), or a download into the cache. Every file is checked against its known sha256
values before use. Offline with no copy, the error names the URL and the path to put the file at.

Provenance of the hashes:
- tinyshakespeare `input.txt` (karpathy/char-rnn): sha256 checked against a byte-identical local copy.
- WikiText-2 raw (Merity et al. 2016), distributed as one zip. The LF `wiki.valid.raw` and `wiki.test.raw`
  hashes were checked here against local copies with CR removed (committed copies carry CRLF line endings, and
  their own hashes are accepted too). The zip's hash (4,721,645 bytes) and `wiki.train.raw`'s were not
  checked here (offline): they are the values that several independent public projects pin, which agree with
  the valid/test hashes checked here.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from train.errors import CgptError

DEFAULT_CACHE = Path.home() / ".cache" / "cgpt" / "datasets"
Fetch = Callable[[str], bytes]


@dataclass(frozen=True)
class RemoteFile:
    folder: str  # the dataset's folder in a cache
    name: str  # the file's name in that folder
    url: str
    sha256: tuple[str, ...]  # accepted hashes of the file (empty: not verified)
    member: str = ""  # when set, `url` is a zip archive and the file is this member of it
    archive_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.url.startswith("https://"):
            raise ValueError(f"url={self.url!r}: expected an https:// URL")


WIKITEXT2_ZIP = "https://wikitext.smerity.com/wikitext-2-raw-v1.zip"
WIKITEXT2_ZIP_SHA256 = "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11"


def _wikitext(split: str, *sha256: str) -> RemoteFile:
    return RemoteFile(
        "wikitext-2-raw",
        f"wiki.{split}.raw",
        WIKITEXT2_ZIP,
        sha256,
        member=f"wikitext-2-raw/wiki.{split}.raw",
        archive_sha256=WIKITEXT2_ZIP_SHA256,
    )


DATASETS: dict[str, tuple[RemoteFile, ...]] = {
    "tinyshakespeare": (
        RemoteFile(
            "tinyshakespeare",
            "input.txt",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            ("86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",),
        ),
    ),
    "wikitext-2-raw": (_wikitext("train", "6707892fa3788b5ab9ed78ab5ff37d9fe825f6011a2ad4fcd6a6d467f0e7da57"),),
    "wikitext-2-raw:valid": (
        _wikitext(
            "valid",
            "4cd0f6876d07a413aa911261ff6d363c72d757d47f0fdd6015702014c89cb9c7",  # LF, as in the zip
            "f117e548b59c18638ecfdc5db1b457927434551c185d7f59c7882cb2110a551a",  # CRLF copy
        ),
    ),
    "wikitext-2-raw:test": (
        _wikitext(
            "test",
            "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08",  # LF, as in the zip
            "e4fbb284c0a4dbd0c912e35ad507efa55d0831f54bc761a23363a4b3ff3e3e90",  # CRLF copy
        ),
    ),
}


def download(url: str) -> bytes:
    """The bytes at `url` (raises OSError, e.g. `urllib.error.URLError`, when offline)."""
    request = urllib.request.Request(url, headers={"User-Agent": "chinchilla-gpt"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(data_or_path: bytes | Path, accepted: tuple[str, ...], what: str) -> None:
    if not accepted:
        return
    if isinstance(data_or_path, Path):
        actual = sha256_file(data_or_path)
    else:
        actual = hashlib.sha256(data_or_path).hexdigest()
    if actual not in accepted:
        raise CgptError(f"{what}: sha256 {actual} does not match the expected {' or '.join(accepted)}")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _fetch_file(remote: RemoteFile, target: Path, fetch: Fetch) -> None:
    """Download `remote` (or the archive holding it) into `target`'s folder, checking every hash."""
    if not remote.member:
        data = fetch(remote.url)
        _check(data, remote.sha256, remote.url)
        _write(target, data)
        return
    archive = target.parent / remote.url.rsplit("/", 1)[-1]
    if not archive.is_file():
        data = fetch(remote.url)
        _check(data, (remote.archive_sha256,) if remote.archive_sha256 else (), remote.url)
        _write(archive, data)
    try:
        with zipfile.ZipFile(io.BytesIO(archive.read_bytes())) as zipped:
            data = zipped.read(remote.member)
    except (zipfile.BadZipFile, KeyError) as err:
        raise CgptError(f"{archive}: expected a zip archive holding {remote.member} ({err})") from err
    _check(data, remote.sha256, f"{archive}:{remote.member}")
    _write(target, data)


def dataset_files(name: str, cache_dir: str | Path | None = None, fetch: Fetch = download) -> list[Path]:
    """Local, verified paths of the named dataset's files, downloading them into the cache if needed."""
    if name not in DATASETS:
        raise CgptError(f"dataset {name!r}: expected one of {', '.join(DATASETS)}")
    caches = [Path(cache_dir)] if cache_dir is not None else []
    caches.append(DEFAULT_CACHE)
    paths = []
    for remote in DATASETS[name]:
        candidates = [cache / remote.folder / remote.name for cache in caches]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            found = candidates[0]
            try:
                _fetch_file(remote, found, fetch)
            except OSError as err:
                raise CgptError(
                    f"dataset {name!r}: {remote.name} is not cached and could not be downloaded from "
                    f"{remote.url} ({err}); put that file at {found} (or pass --cache-dir DIR holding "
                    f"{remote.folder}/{remote.name})"
                ) from err
        _check(found, remote.sha256, str(found))
        paths.append(found)
    return paths

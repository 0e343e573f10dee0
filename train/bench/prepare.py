"""`cgpt bench prepare`: peak resident memory and throughput of `cgpt prepare` on a large synthetic corpus.

Writes `--size-mb` MB of deterministic pseudo-English (Zipf-distributed made-up words, sentences, paragraphs)
as 8 MB files, then runs `cgpt prepare` on them in a child process while sampling the resident memory of that
process and its workers from /proc. The figure to watch is the peak of their sum: streaming keeps it flat as
the corpus grows (the target is under 2 GB for 1 GB of text).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FILE_MB = 8
REPO = Path(__file__).resolve().parents[2]  # the repository root, so the child imports this tree


def synthetic_corpus(directory: Path, size_mb: int, seed: int) -> list[Path]:
    """`size_mb` MB of made-up words in FILE_MB files, the same for the same seed."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lengths = rng.integers(1, 11, size=30_000)
    words = np.array(["".join(rng.choice(letters, n)) for n in lengths] + [".\n", ",", ".\n\n"], dtype=object)
    weights = 1.0 / (np.arange(len(words)) + 2.7)  # Zipf-like: a few words are most of the text
    weights[-3:] = [0.06, 0.05, 0.01]
    weights /= weights.sum()
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(max(1, size_mb // FILE_MB)):
        chosen = words[rng.choice(len(words), size=FILE_MB * 1_000_000 // 6, p=weights)]
        path = directory / f"part-{i:05d}.txt"
        path.write_text(" ".join(chosen.tolist()), encoding="utf-8")
        files.append(path)
    return files


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, ppid in parents.items() if ppid in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    total = 0
    for pid in tree:
        try:
            total += int((Path(f"/proc/{pid}/statm")).read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def _watch(process: subprocess.Popen, peak: list[int]) -> None:
    while process.poll() is None:
        peak[0] = max(peak[0], _tree_rss(process.pid))
        time.sleep(0.05)


def bench_prepare(work: Path, size_mb: int, tokenizer: str, workers: int, seed: int) -> dict:
    start = time.perf_counter()
    files = synthetic_corpus(work / "corpus", size_mb, seed)
    generate_s = time.perf_counter() - start
    command = [
        sys.executable,
        "-m",
        "train.cli",
        "prepare",
        "--input",
        str(work / "corpus"),
        "--tokenizer",
        tokenizer,
        "--out",
        str(work / "out"),
        "--workers",
        str(workers),
        "--json",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    peak = [0]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    watcher = threading.Thread(target=_watch, args=(process, peak), daemon=True)
    watcher.start()
    stdout, _ = process.communicate()
    prepare_s = time.perf_counter() - start
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"cgpt prepare failed with exit code {process.returncode}")
    n_bytes = sum(path.stat().st_size for path in files)
    return {
        "mb": round(n_bytes / 1e6, 1),
        "files": len(files),
        "tokenizer": tokenizer,
        "workers": workers,
        "generate_s": round(generate_s, 1),
        "prepare_s": round(prepare_s, 1),
        "mb_per_s": round(n_bytes / 1e6 / prepare_s, 2),
        "peak_rss_mb": round(peak[0] / 2**20, 1),
        "peak_single_process_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "summary": json.loads(stdout.strip().splitlines()[-1]),
    }


def run_bench_prepare(size_mb: int, tokenizer: str, workers: int, seed: int = 0, work: str | None = None) -> dict:
    """`bench_prepare` in `work`, or in a temporary directory that is removed afterwards."""
    if work:
        return bench_prepare(Path(work), size_mb, tokenizer, workers, seed)
    with tempfile.TemporaryDirectory(prefix="cgpt-bench-prepare-") as tmp:
        return bench_prepare(Path(tmp), size_mb, tokenizer, workers, seed)


def report(result: dict, tokenizer: str, workers: int) -> str:
    """The benchmark's result as the lines `cgpt bench prepare` prints."""
    return "\n".join(
        [
            f"cgpt prepare on {result['mb']} MB of synthetic text ({result['files']} files), tokenizer "
            f"{tokenizer}, {workers} worker(s)",
            f"  time       {result['prepare_s']:8.1f} s   ({result['mb_per_s']} MB/s; generating took "
            f"{result['generate_s']} s)",
            f"  peak RSS   {result['peak_rss_mb']:8.1f} MB  (process + workers, sampled every 50 ms)",
            f"  peak RSS   {result['peak_single_process_rss_mb']:8.1f} MB  (largest single process)",
            f"  tokens     {result['summary']}",
        ]
    )

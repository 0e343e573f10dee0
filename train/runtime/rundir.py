"""A run directory: self-describing, append-only while training, never overwritten silently.

RUN/config.json         the resolved model, training and task configuration (and the plan, if any)
RUN/metrics.jsonl       one JSON object per logged step or evaluation
RUN/summary.json        the final figures
RUN/checkpoints/        step-00000500.pt ... (the last K) and best.pt
RUN/tokenizer/          the tokenizer files, so the run can be sampled and fine-tuned on its own
RUN/loss.png            the loss curves (when matplotlib is installed)
RUN/.lock               held (flock) by the process training the run: a second one is refused

Faults a killed run can leave are repaired on the next start: temporary files of an interrupted atomic write
(`.NAME.*.tmp`) are removed, and a torn last line of metrics.jsonl is dropped with a warning.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from train.errors import CgptError
from train.runtime.files import atomic_write_text

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


# The plotted training loss is a running mean over 1/SMOOTHING_POINTS of the logged points. A logged loss is one
# batch's: at the quickstart's 768-token batches it jumps by ~0.4 nats (std) from log to log. A bigger batch
# would be smoother but worse at the same tokens - measured at the quickstart's budget (8.44M tokens, 257k
# parameters): batches of 768 / 2048 / 6144 tokens reached validation loss 2.965 / 3.078 / 3.288 with a jitter
# of 0.43 / 0.26 / 0.14 nats - so the planner keeps the small batch and the plot averages instead.
SMOOTHING_POINTS = 50


def running_mean(values: Sequence[float], window: int) -> list[float]:
    """The mean of each value and the window - 1 before it (fewer at the start): a trailing moving average."""
    if window < 1:
        raise ValueError(f"window={window}: expected a positive integer")
    sums = [0.0, *itertools.accumulate(values)]
    return [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(values))]


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.tokenizer = self.path / "tokenizer"
        self.plot = self.path / "loss.png"
        self.lock_file = self.path / ".lock"
        self._lock_fd: int | None = None

    def holds_run(self) -> bool:
        return self.config.exists() or self.latest_checkpoint() is not None

    def prepare(self, resume: bool, force: bool) -> None:
        """Refuse to clobber an existing run unless asked; `force` clears its outputs, `resume` keeps them."""
        if self.path.exists() and not self.path.is_dir():
            raise CgptError(f"{self.path}: exists and is not a directory")
        if self.holds_run() and not (resume or force):
            raise CgptError(
                f"{self.path}: already holds a run; pass --resume to continue it or --force to overwrite it"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if force and not resume:
            for p in (self.metrics, self.summary, self.plot, self.config):
                p.unlink(missing_ok=True)
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        for tmp in [*self.path.glob(".*.tmp"), *self.checkpoints.glob(".*.tmp")]:  # a write killed half-way
            tmp.unlink(missing_ok=True)

    def lock(self) -> None:
        """Hold an exclusive lock on the run for the life of this process (released when it exits, however it
        exits); a second process training the same run is refused, naming the holder."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CgptError(f"{self.path}: in use by pid {holder} (another process is training this run)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise CgptError(f"{path}: not found (is {self.path} a run directory?)") from None
        except json.JSONDecodeError as err:
            raise CgptError(f"{path}: not valid JSON ({err})") from None

    def saved_config(self, command: str) -> dict[str, Any]:
        """The config.json of the run to resume here: a one-line error when there is none, or another kind."""
        if not self.config.is_file():
            raise CgptError(f"no run to resume in {self.path} (no config.json); start one without --resume")
        saved = self.read_json(self.config)
        if saved.get("command") != command:
            raise CgptError(f"{self.config}: not a {command} run (command {saved.get('command')!r})")
        return saved

    # --- checkpoints -----------------------------------------------------------------------------------

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / f"step-{step:08d}.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.checkpoints.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(found)

    def latest_checkpoint(self) -> Path | None:
        found = self.step_checkpoints()
        return found[-1][1] if found else None

    def prune(self, keep_last: int) -> None:
        for _, path in self.step_checkpoints()[:-keep_last]:
            path.unlink(missing_ok=True)

    def final_checkpoint(self, which: str = "best") -> Path:
        """The checkpoint to use from a finished run: best.pt if it exists (or asked for), else the latest."""
        latest = self.latest_checkpoint()
        if which == "best" and self.best_checkpoint.exists():
            return self.best_checkpoint
        if latest is None:
            raise CgptError(f"{self.path}: no checkpoint found in {self.checkpoints}")
        return latest

    # --- metrics ---------------------------------------------------------------------------------------

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl. A torn last line (a kill during an append) is dropped with a warning;
        a bad line anywhere else is an error naming it."""
        if not self.metrics.exists():
            return []
        lines = [(n, line) for n, line in enumerate(self.metrics.read_text().splitlines(), 1) if line.strip()]
        records = []
        for i, (n, line) in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if i < len(lines) - 1:
                    raise CgptError(f"{self.metrics}:{n}: not a JSON record ({err})") from None
                print(
                    f"warning: {self.metrics}:{n}: dropped a torn last line (a run killed mid-write)", file=sys.stderr
                )
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """On resume: drop records a killed run wrote after its last checkpoint (they will be redone)."""
        kept = [r for r in self.read_metrics() if r["step"] <= after_step]
        atomic_write_text(self.metrics, "".join(json.dumps(r) + "\n" for r in kept))

    def plot_losses(self) -> Path | None:
        """loss.png: training and validation loss against tokens. None when matplotlib is not installed."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        records = self.read_metrics()
        fig, ax = plt.subplots(figsize=(7, 4))
        train = [(r["tokens"], r["loss"]) for r in records if r.get("loss") is not None]
        if train:
            tokens, loss = zip(*train, strict=True)
            ax.plot(tokens, loss, "-", color="tab:blue", alpha=0.25, linewidth=0.8, label="loss (one batch)")
            window = max(1, len(loss) // SMOOTHING_POINTS)
            ax.plot(tokens, running_mean(loss, window), "-", color="tab:blue", label=f"loss, mean of {window} logs")
        val = [(r["tokens"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if val:
            ax.plot(*zip(*val, strict=True), "o-", color="tab:orange", label="val_loss", markersize=3)
        ax.set_xlabel("tokens")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(self.path.name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.plot, dpi=120)
        plt.close(fig)
        return self.plot

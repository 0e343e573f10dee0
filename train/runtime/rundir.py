"""A run directory: self-describing, append-only while training, never overwritten silently.

RUN/config.json         the resolved model, training and task configuration (and the plan, if any)
RUN/metrics.jsonl       one JSON object per logged step or evaluation
RUN/summary.json        the final figures
RUN/checkpoints/        step-00000500.pt ... (the last K) and best.pt
RUN/tokenizer/          the tokenizer files, so the run can be sampled and fine-tuned on its own
RUN/loss.png            the loss curves (when matplotlib is installed)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from train.errors import CgptError
from train.runtime.files import atomic_write_text

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.tokenizer = self.path / "tokenizer"
        self.plot = self.path / "loss.png"

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
        if force and not resume:
            for p in (self.metrics, self.summary, self.plot, self.config):
                p.unlink(missing_ok=True)
            shutil.rmtree(self.checkpoints, ignore_errors=True)
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise CgptError(f"{path}: not found (is {self.path} a run directory?)") from None
        except json.JSONDecodeError as err:
            raise CgptError(f"{path}: not valid JSON ({err})") from None

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
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]

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
        for key, style in (("loss", "-"), ("val_loss", "o-")):
            pts = [(r["tokens"], r[key]) for r in records if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, label=key, markersize=3)
        ax.set_xlabel("tokens")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(self.path.name)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(self.plot, dpi=120)
        plt.close(fig)
        return self.plot

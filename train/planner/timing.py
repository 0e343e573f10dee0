"""What a run spends besides its training steps, and the machine profile that makes `--minutes` plans repeatable.

`cgpt pretrain --minutes M` promises that the whole command finishes in about M minutes, not only its training
steps. A planned run also spends time on

- its periodic evaluations (train.pretrain.train_config_from_plan: about ten, each `eval_batches` batches) and
  the final pass over the whole validation split (or its first `eval_tokens`), at the measured forward-only speed;
- a checkpoint after each improving evaluation and every `checkpoint_every` steps, at the measured save time;
- a fixed tail: the summary, the loss plot (matplotlib's import is most of it);
- and, before any of that, starting up and probing: the caller passes what it has already spent.

`Speed` is what a probe (train/planner/probe.py) measures for one shape; `overhead_seconds` turns it into the
seconds a plan adds to its training steps.

Repeatable plans. Timing noise of a few percent moves the budget C the planner solves for, and near a boundary
between two shapes that flips the shape from one command to the next (seen here: 4 x 64 and 2 x 80 for the same
`--minutes 5`). Two remedies, both here: `stable_budget` rounds C down onto a fixed grid (`GRID_PER_DECADE`
points per decade) before a shape is chosen, so noise moves the shape only when C sits right at a grid point; and
a `Profile` - the probe's measurements saved per shape in a JSON file keyed by this machine (CPU or GPU name,
threads, torch version) - is reused by later commands, so the same budget on the same machine gives the same
plan without probing again. `--reprobe` measures afresh. The plan records where its speed came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.errors import CgptError
from train.runtime.files import atomic_write_text

GRID_PER_DECADE = 24  # C is rounded down to 10^(k/24): steps of 10%
STARTUP_S = 2.0  # a later command's start (importing torch, opening the data), when a plan is made ahead of it
# after the last step: summary.json, the loss plot (importing matplotlib: ~0.9 s with the plot) and the
# interpreter's exit with torch loaded (~1.2 s): measured on this project's 2-core CPU
TAIL_S = 2.5
EVALS_PER_RUN = 10  # train.pretrain.train_config_from_plan evaluates every steps // 10 steps


@dataclass(frozen=True)
class Speed:
    """One shape's measured speeds on this machine."""

    flops_per_s: float  # training (model.flops.flops_per_token x tokens per second), at `dtype`
    dtype: str = "auto"  # the autocast dtype that trained fastest (float32 | bfloat16); auto: not measured
    eval_tokens_per_s: float = math.inf  # forward only, no gradients (evaluation)
    checkpoint_s: float = 0.0  # one atomic checkpoint save: weights and optimizer state
    by_dtype: dict[str, float] = dataclasses.field(default_factory=dict)  # training FLOP/s of each dtype probed
    run_flops_per_s: float = 0.0  # what whole planned runs of this shape sustained (Profile.record_run); 0: none

    @classmethod
    def of(cls, value: Speed | float) -> Speed:
        """A throughput function may return a bare FLOP/s (tests, simple callers): no overhead known."""
        return value if isinstance(value, Speed) else cls(flops_per_s=float(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Speed:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


def process_age() -> float:
    """Seconds since this process started (Linux: /proc/self/stat), 0.0 where unknown: a `cgpt` command's clock
    then includes the interpreter's start and the imports before `main`."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name: field 3 (state) onwards
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: start time, in ticks
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def stable_budget(flops: float) -> float:
    """C rounded down onto the grid 10^(k / GRID_PER_DECADE): nearby C (timing noise) give the same plan."""
    k = math.floor(math.log10(flops) * GRID_PER_DECADE + 1e-9)
    return 10.0 ** (k / GRID_PER_DECADE)


def eval_every(steps: int) -> int:
    """A planned run evaluates every this many steps: ~EVALS_PER_RUN times, at least every 250 steps."""
    return max(1, min(250, steps // EVALS_PER_RUN))


def checkpoint_every(steps: int) -> int:
    """... and saves a checkpoint every this many: at an evaluation, at least every 500 steps."""
    return max(eval_every(steps), min(500, steps))


def eval_tokens(steps: int, batch_size: int, block_size: int, eval_batches: int, final_tokens: int) -> int:
    """Tokens a planned run scores: ~EVALS_PER_RUN periodic evaluations of `eval_batches` batches, then the
    final pass over `final_tokens` tokens of the validation split."""
    every = eval_every(steps)
    evals = steps // every + (steps % every != 0)
    return evals * eval_batches * batch_size * block_size + final_tokens


def overhead_seconds(
    speed: Speed, steps: int, batch_size: int, block_size: int, eval_batches: int, final_tokens: int
) -> float:
    """Seconds a plan's run spends outside its training steps: evaluation, checkpoints, the fixed tail."""
    saves = steps // eval_every(steps) + steps // checkpoint_every(steps) + 1  # best-so-far + periodic + last
    scored = eval_tokens(steps, batch_size, block_size, eval_batches, final_tokens)
    return scored / speed.eval_tokens_per_s + saves * speed.checkpoint_s + TAIL_S


# --- the machine profile ----------------------------------------------------------------------------------


def default_profile_path() -> Path:
    """$CGPT_PROFILE, else $XDG_CACHE_HOME/cgpt/machine-profile.json (~/.cache/... when unset)."""
    if os.environ.get("CGPT_PROFILE"):
        return Path(os.environ["CGPT_PROFILE"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "cgpt" / "machine-profile.json"


class Profile:
    """Measured speeds per shape for one machine, in a JSON file: {"machine": ..., "shapes": {key: Speed}}.

    A file written on another machine (its `machine` differs) is ignored and replaced on the next save, never
    trusted; a file that is not a profile is an error naming it, so nothing is overwritten that was not ours."""

    def __init__(self, path: str | os.PathLike[str], machine: str) -> None:
        self.path, self.machine = Path(path), machine
        self.shapes: dict[str, Speed] = {}
        self.calibration = 1.0  # sustained speed of planned runs / the probe's (see record_run)
        self.loaded = 0  # shapes read from the file
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            d = json.loads(self.path.read_text())
            ok = isinstance(d, dict) and isinstance(d.get("shapes"), dict) and isinstance(d.get("machine"), str)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CgptError(f"machine profile {self.path}: not JSON ({err}); delete it or --reprobe") from None
        if not ok:
            raise CgptError(f"machine profile {self.path}: expected {{'machine': str, 'shapes': {{...}}}}")
        if d["machine"] != self.machine:
            return  # another machine's (or torch version's) figures: measure here instead
        try:
            self.shapes = {k: Speed.from_dict(v) for k, v in d["shapes"].items()}
            self.calibration = float(d.get("calibration", 1.0))
        except (TypeError, KeyError) as err:
            raise CgptError(f"machine profile {self.path}: a malformed entry ({err}); delete it or --reprobe") from None
        self.loaded = len(self.shapes)

    def get(self, key: str) -> Speed | None:
        return self.shapes.get(key)

    def put(self, key: str, speed: Speed) -> None:
        self.shapes[key] = speed
        self._save()

    def calibrated(self, speed: Speed) -> Speed:
        """`speed` as a whole run sustains it: what runs of this very shape sustained, where one has run; else
        the probe's figure times the calibration - a probe of a second or two sees boost clocks and warm caches
        that a run of minutes does not (measured here: a 2 x 80 model probed at 42k tokens/s trained at 30k)."""
        c = self.calibration
        return dataclasses.replace(
            speed,
            flops_per_s=speed.run_flops_per_s or speed.flops_per_s * c,
            eval_tokens_per_s=speed.eval_tokens_per_s * c,
            by_dtype={k: v * c for k, v in speed.by_dtype.items()},
        )

    def record_run(self, key: str, run_flops_per_s: float) -> None:
        """A planned run of shape `key` sustained `run_flops_per_s` while training. Two things are learnt, each
        moved halfway (in log) towards the new figure so one odd run (a busy machine) does not swing the next plan:
        the shape's own sustained speed, which later plans use instead of its probe's; and the calibration, the
        ratio of sustained to probed speed, which scales the probes of shapes that have not run yet. An
        over-measured shape (a lucky probe) that wins a plan is so corrected by its first run."""
        speed = self.shapes.get(key)
        if speed is None or not 0 < run_flops_per_s < math.inf or not speed.flops_per_s > 0:
            return
        ratio = run_flops_per_s / speed.flops_per_s
        self.calibration = min(1.5, max(0.25, math.sqrt(self.calibration * ratio)))
        run = math.sqrt(speed.run_flops_per_s * run_flops_per_s) if speed.run_flops_per_s else run_flops_per_s
        self.shapes[key] = dataclasses.replace(speed, run_flops_per_s=run)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "machine": self.machine,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "calibration": self.calibration,
            "shapes": {k: v.to_dict() for k, v in sorted(self.shapes.items())},
        }
        atomic_write_text(self.path, json.dumps(body, indent=1) + "\n")

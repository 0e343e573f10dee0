"""The model: pure tensor programs (no I/O, no optimizers, no printing).

Reading order: config.py -> layers.py -> attention.py -> gpt.py -> cache.py / generate.py -> heads.py ->
adversarial.py -> flops.py.

`from model import GPT, GPTConfig, ...` works as a shortcut; the names are imported on first use, so that
`model.config` and `model.flops` (pure Python, what the planner needs) can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GPT": "model.gpt",
    "GPTConfig": "model.config",
    "PRESETS": "model.config",
    "ConfigError": "model.config",
    "preset": "model.config",
    "param_counts": "model.flops",
    "flops_per_token": "model.flops",
    "chinchilla_flops_per_token": "model.flops",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

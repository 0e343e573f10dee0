"""The model: pure tensor programs (no I/O, no optimizers, no printing).

Reading order: config.py -> layers.py -> attention.py -> gpt.py -> cache.py / generate.py -> flops.py.
"""

from model.config import PRESETS, ConfigError, GPTConfig, preset
from model.flops import chinchilla_flops_per_token, flops_per_token, param_counts
from model.gpt import GPT

__all__ = ["GPT", "GPTConfig", "PRESETS", "ConfigError", "preset", "param_counts", "flops_per_token",
           "chinchilla_flops_per_token"]

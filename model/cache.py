"""The key/value cache for generation: each layer's past keys and values, so a new token costs O(T), not O(T^2).

Grouped-query aware: it stores n_kv_head heads, not n_head, which is where GQA's memory saving comes from.
"""

from __future__ import annotations

import torch

from model.config import GPTConfig


class KVCache:
    """Preallocated (B, Hkv, max_len, D) key and value buffers per layer, filled left to right."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int | None = None) -> None:
        self.max_len = config.block_size if max_len is None else max_len
        self.shape = (batch_size, config.n_kv_head, self.max_len, config.head_size)
        # Allocated on first use, in the dtype and on the device of the keys (bf16 under autocast, say).
        self.k: list[torch.Tensor | None] = [None] * config.n_layer
        self.v: list[torch.Tensor | None] = [None] * config.n_layer
        self.pos = 0  # how many positions are filled

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, Hkv, T, D) keys/values for `layer`; return all keys/values so far."""
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} positions > max_len={self.max_len}")
        if self.k[layer] is None:
            self.k[layer] = k.new_zeros(self.shape)
            self.v[layer] = v.new_zeros(self.shape)
        self.k[layer][:, :, self.pos : end] = k
        self.v[layer][:, :, self.pos : end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Called once per forward pass, after every layer has appended its n new positions."""
        self.pos += n

    def reset(self) -> None:
        self.pos = 0

    def rewind(self, pos: int) -> None:
        """Forget every position from `pos` on; the next update writes there. Scoring several continuations of
        one prompt keeps the prompt's keys/values and rewinds to its end before each continuation."""
        if not 0 <= pos <= self.pos:
            raise ValueError(f"cannot rewind to {pos}: the cache holds {self.pos} positions")
        self.pos = pos

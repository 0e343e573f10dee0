"""Autoregressive sampling: temperature, top-k, nucleus (top-p), stop token, streaming, and the KV cache.

With the cache, the prompt is run once (prefill) and each later step feeds only the newest token, attending to
the cached keys/values. Without it, every step reruns the whole context; the two give the same tokens.
Past block_size tokens the context is cropped to its last block_size tokens, as nanoGPT does; the cached path
then has to refill its cache each step (positions shift), so it stays exactly equal to the uncached one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from model.cache import KVCache

if TYPE_CHECKING:
    from model.gpt import GPT


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top k and outside the smallest set with probability >= top_p."""
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be >= 1")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        outside = probs.cumsum(-1) - probs > top_p  # mass before this token already reaches top_p
        sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def sample_next(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    """(B, V) logits of the last position -> (B, 1) next tokens. temperature 0 means greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


@torch.no_grad()
def stream_tokens(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield (B, 1) tokens one step at a time. Rows that emitted `stop_token` keep emitting it; the stream
    ends when every row has stopped or after max_new_tokens."""
    block = model.config.block_size
    was_training = model.training
    model.eval()
    cache = KVCache(model.config, idx.shape[0]) if use_cache else None
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    ctx = idx
    try:
        for _ in range(max_new_tokens):
            if cache is None:
                feed = ctx[:, -block:]
            elif cache.pos == 0 or ctx.shape[1] > block:  # prefill, or refill after the window slid
                cache.reset()
                feed = ctx[:, -block:]
            else:
                feed = ctx[:, -1:]  # (B, 1): only the newest token; the rest is in the cache
            logits, _ = model(feed, cache=cache)
            token = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)  # (B, 1)
            if stop_token is not None:
                token = token.masked_fill(done[:, None], stop_token)
                done |= token[:, 0] == stop_token
            ctx = torch.cat([ctx, token], dim=1)
            yield token
            if stop_token is not None and bool(done.all()):
                break
    finally:
        model.train(was_training)
